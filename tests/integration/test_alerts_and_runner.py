"""The one alert path (lib.ops.alerts) against a fake Bot API on loopback, and the runner's failure handling."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import pytest
from loguru import logger

from lib.core.errors import DataError
from lib.ops import alerts
from lib.ops.config import AlertsSection, Secrets
from lib.ops.runner import RunContext, run_script
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project

SECRETS = Secrets(telegram_bot_token="123:secret-token", telegram_chat_id="42", exchange_api_key="AKIA-do-not-leak")


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink)


def section(telegram: FakeTelegram) -> AlertsSection:
    return AlertsSection(telegram_base_url=telegram.base_url, timeout_ms=2000)


def test_message_and_photo_are_delivered(telegram: FakeTelegram) -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    assert alerts.send("hello", section=section(telegram), secrets=SECRETS)
    assert alerts.send("with chart", section=section(telegram), secrets=SECRETS, image=png)
    messages = telegram.wait_for_messages(2)
    assert [m.method for m in messages] == ["sendMessage", "sendPhoto"]
    assert messages[0].text == "hello" and messages[0].chat_id == "42"
    assert messages[1].photo == png and messages[1].text == "with chart"


def test_secret_values_are_redacted_from_alerts(telegram: FakeTelegram) -> None:
    assert alerts.send("key AKIA-do-not-leak failed", section=section(telegram), secrets=SECRETS)
    assert telegram.wait_for_messages(1)[0].text == "key *** failed"


def test_long_caption_is_followed_by_the_full_text(telegram: FakeTelegram) -> None:
    text = "x" * 3000
    assert alerts.send(text, section=section(telegram), secrets=SECRETS, image=b"png")
    messages = telegram.wait_for_messages(2)
    assert len(messages[0].text or "") == alerts.CAPTION_LIMIT and messages[1].text == text


def test_rate_limit_is_retried_after_the_requested_wait(telegram: FakeTelegram) -> None:
    waits: list[float] = []
    telegram.fail_next(429, retry_after_s=2, times=1)
    assert alerts.send("after 429", section=section(telegram), secrets=SECRETS, sleep=waits.append)
    assert waits == [2.0]
    assert [m.text for m in telegram.messages] == ["after 429"]


def test_undeliverable_alert_is_logged_and_never_raises(telegram: FakeTelegram, log_lines: list[str]) -> None:
    telegram.fail_next(401, times=None)
    assert not alerts.send("lost", section=section(telegram), secrets=SECRETS, sleep=lambda s: None)
    unreachable = AlertsSection(telegram_base_url="http://127.0.0.1:9", timeout_ms=500)
    assert not alerts.send("lost", section=unreachable, secrets=SECRETS, sleep=lambda s: None)
    joined = "\n".join(log_lines)
    assert "alert could not be delivered" in joined and "secret-token" not in joined


def test_without_telegram_settings_alerts_go_to_the_log(log_lines: list[str]) -> None:
    assert not alerts.send("only logged", section=AlertsSection(), secrets=Secrets())
    assert any("Telegram not configured" in line and "only logged" in line for line in log_lines)


def run_in_process(project: Project, telegram: FakeTelegram, body: object) -> int:
    project.write_config(f'[alerts]\ntelegram_base_url = "{telegram.base_url}"\n')
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:secret-token", COINBOT_TELEGRAM_CHAT_ID="42")
    args = argparse.Namespace(config=str(project.config), as_of="2026-01-01T00:00:00Z")
    return run_script("unit_job", args, body)  # type: ignore[arg-type]


def test_runner_turns_a_domain_error_into_one_alert_a_record_and_an_exit_code(
    project: Project, telegram: FakeTelegram
) -> None:
    def body(ctx: RunContext) -> None:
        raise DataError("prices are stale (token 123:secret-token)")

    assert run_in_process(project, telegram, body) == 1
    texts = [m.text or "" for m in telegram.wait_for_messages(1)]
    assert len(texts) == 1 and "unit_job FAILED" in texts[0] and "DataError: prices are stale" in texts[0]
    assert "secret-token" not in texts[0]
    records = project.runs()
    assert [(r["event"], r["status"], r["exit_code"]) for r in records] == [("start", "running", None),
                                                                            ("finish", "failed", 1)]
    assert "secret-token" not in records[-1]["error"]
    assert records[0]["now_ms"] == 1_767_225_600_000


def test_runner_catches_unexpected_exceptions(project: Project, telegram: FakeTelegram) -> None:
    def body(ctx: RunContext) -> None:
        raise ZeroDivisionError("boom")

    assert run_in_process(project, telegram, body) == 1
    assert "ZeroDivisionError: boom" in (telegram.wait_for_messages(1)[0].text or "")


def test_runner_success_records_ok(project: Project, telegram: FakeTelegram) -> None:
    seen: list[int] = []
    assert run_in_process(project, telegram, lambda ctx: seen.append(ctx.now_ms)) == 0
    assert seen == [1_767_225_600_000]
    assert project.runs()[-1]["status"] == "ok" and telegram.messages == []


def test_a_run_that_never_finished_is_told_to_the_next_run_of_that_script(project: Project,
                                                                          telegram: FakeTelegram) -> None:
    seen: list[str] = []
    assert run_in_process(project, telegram, lambda ctx: seen.append(ctx.interrupted)) == 0
    assert seen == [""]  # the last run finished: nothing to tell
    records = project.runs()
    runs = project.state / "runs.jsonl"  # as if SIGKILLed: the finish record was never written
    runs.write_text("".join(json.dumps(record) + "\n" for record in records[:-1]))
    assert run_in_process(project, telegram, lambda ctx: seen.append(ctx.interrupted)) == 0
    assert "never finished" in seen[-1] and records[-1]["run_id"] in seen[-1] and "2026-01-01" in seen[-1]
    assert run_in_process(project, telegram, lambda ctx: seen.append(ctx.interrupted)) == 0
    assert seen[-1] == ""  # told once: that run finished
    assert telegram.messages == []  # the runner only tells the body; a script decides what to alert (carry: once)


def test_config_error_exits_2_and_alerts(project: Project, telegram: FakeTelegram) -> None:
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:secret-token", COINBOT_TELEGRAM_CHAT_ID="42")
    project.write_config("[exchange]\nmode = 'nonsense'\n")
    result = project.run("fetch_prices", env={"COINBOT__ALERTS__TELEGRAM_BASE_URL": telegram.base_url})
    assert result.returncode == 2
    assert "exchange.mode" in result.stderr
    assert "exchange.mode" in (telegram.wait_for_messages(1)[0].text or "")
    assert not (project.state / "runs.jsonl").exists()  # nothing touched


def test_unwritable_run_records_still_alert_exactly_once(project: Project, telegram: FakeTelegram) -> None:
    (project.state / "runs.jsonl").mkdir(parents=True)  # any append fails, like a full disk
    ran: list[int] = []
    assert run_in_process(project, telegram, lambda ctx: ran.append(1)) == 1
    assert ran == []  # the start record could not be written, so the body never ran
    texts = telegram.texts  # the run was in-process and synchronous: every alert has arrived
    assert len(texts) == 1 and "unit_job FAILED" in texts[0]


def test_a_lock_that_cannot_be_created_alerts(project: Project, telegram: FakeTelegram) -> None:
    project.state.mkdir()
    (project.state / "locks").write_text("not a directory")
    assert run_in_process(project, telegram, lambda ctx: None) == 1
    texts = telegram.texts
    assert len(texts) == 1 and "unit_job FAILED" in texts[0]


def test_an_unreadable_env_file_is_a_config_error_naming_it_and_touches_nothing(project: Project) -> None:
    project.write_config("")
    env_file = project.root / ".env"  # a secret saved in Latin-1 by an editor: not UTF-8
    env_file.write_bytes(b"COINBOT_EXCHANGE_API_KEY=key-do-not-leak\n"
                         b"COINBOT_EXCHANGE_API_SECRET=s\xe9cret-do-not-leak\n")
    env_file.chmod(0o600)
    result = project.run("fetch_prices")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and ".env" in result.stderr and "UTF-8" in result.stderr
    assert "do-not-leak" not in result.stderr
    assert not (project.state / "runs.jsonl").exists()  # nothing touched


@pytest.mark.parametrize("cut", range(1, 16))
def test_a_secret_where_the_alert_cuts_a_long_error_leaks_no_part_of_it(project: Project, telegram: FakeTelegram,
                                                                         cut: int) -> None:
    token = "123:secret-token"  # the bot token run_in_process writes to .env: the alert's cut falls inside it

    def body(ctx: RunContext) -> None:
        raise DataError("x" * (1500 - cut) + token + " and the rest")

    assert run_in_process(project, telegram, body) == 1
    text = telegram.wait_for_messages(1)[0].text or ""
    after_filler = text.split("x" * (1500 - cut), 1)[1]
    assert after_filler.startswith(("*", "\n")), after_filler[:40]  # redacted (then cut), never the token's head


def test_a_hung_stage_is_interrupted_by_run_pipeline_recorded_alerted_and_stops_the_chain(
        project: Project, telegram: FakeTelegram) -> None:
    from tests.fakes.exchange_server import FakeBinance

    with FakeBinance(now_ms=1_767_227_400_000) as fake:  # 2026-01-01T00:30Z
        project.write_config(f"""
[exchange]
id = "binance"
rest_base_url = "{fake.base_url}"
enable_rate_limit = false
timeout_ms = 60000
[data]
symbols = ["BTC/USDT"]
timeframes = ["1d"]
backfill_start = "2025-12-20"
[alerts]
telegram_base_url = "{telegram.base_url}"
""")
        project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:test-token", COINBOT_TELEGRAM_CHAT_ID="42")
        fake.delay_next("/api/v3/klines", seconds=50, times=None)  # the exchange never answers in time
        started = time.monotonic()
        result = project.run("run_pipeline", "--as-of", "2026-01-01T00:30:00Z", "--stage-timeout-min", "0.2")
        assert time.monotonic() - started < 45  # not the 50 s the request hangs
    assert result.returncode == 130, result.stderr[-2000:]
    assert "run_pipeline: fetch_prices still running after 12 s: interrupting it" in result.stderr
    assert "── compute_signals ──" not in result.stderr  # nothing ran on the broken input
    finish = project.runs()[-1]
    assert (finish["script"], finish["event"], finish["status"], finish["exit_code"]) == (
        "fetch_prices", "finish", "failed", 130)
    texts = telegram.wait_for_messages(1)
    assert len(texts) == 1 and "fetch_prices FAILED" in (texts[0].text or "") and "KeyboardInterrupt" in (
        texts[0].text or "")


def test_a_misspelt_name_in_the_env_file_stops_the_run_and_is_alerted(project: Project,
                                                                     telegram: FakeTelegram) -> None:
    project.write_config(f'[alerts]\ntelegram_base_url = "{telegram.base_url}"\n')
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:secret-token", COINBOT_TELEGRAM_CHAT_ID="42",
                      COINBOT_EXCHANGE_APISECRET="s3cret-do-not-leak")
    result = project.run("fetch_prices")
    assert result.returncode == 2 and "COINBOT_EXCHANGE_APISECRET" in result.stderr
    text = telegram.wait_for_messages(1)[0].text or ""
    assert "fetch_prices FAILED" in text and "COINBOT_EXCHANGE_APISECRET" in text
    assert "do-not-leak" not in text + result.stderr and "secret-token" not in text + result.stderr
    assert not (project.state / "runs.jsonl").exists()  # nothing touched

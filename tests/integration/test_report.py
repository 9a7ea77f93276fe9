"""report as a subprocess in a temp project: hand-written positions.json, candle files and runs.jsonl, a
fake Telegram; the clock is set with --as-of (paper mode)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lib.core.paths import ProjectPaths
from lib.core.state import Positions, RunRecord
from lib.core.storage import append_jsonl, write_json_atomic, write_parquet_atomic
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.ops.charts import PNG_SIGNATURE
from lib.ops.equity_csv import to_equity_csv_header
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project

D0 = 1_767_225_600_000  # 2026-01-01T00:00Z
D = [D0 + i * MS_PER_DAY for i in range(6)]
NOW_MS = D[5] + 30 * 60_000  # 2026-01-06T00:30Z: the D4 daily candle is the last closed one
CLOSES = {"BTC/USDT": [100.0, 110.0, 120.0, 150.0, 160.0], "ETH/USDT": [10.0, 8.0, 12.0, 14.0, 15.0]}
# cash 200 + 5 BTC x 160 + 10 ETH x 15 = 1150; gross 950
EQUITY_QUOTE, GROSS_QUOTE = 1150.0, 950.0
# inception 2026-01-02T01:00Z buys at D0's closes: BTC 1000 x 160/100; basket 5 BTC + 50 ETH
BTC_BENCHMARK_QUOTE, BASKET_BENCHMARK_QUOTE = 1600.0, 5 * 160.0 + 50 * 15.0


@pytest.fixture
def report_project(project: Project, telegram: FakeTelegram) -> Project:
    project.write_config(f"""
[data]
symbols = ["BTC/USDT", "ETH/USDT"]
timeframes = ["1d"]
[alerts]
telegram_base_url = "{telegram.base_url}"
""")
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:test-token", COINBOT_TELEGRAM_CHAT_ID="42")
    paths = project_paths(project)
    for symbol, closes in CLOSES.items():
        close = np.asarray(closes)
        write_parquet_atomic(paths.ohlcv("1d", symbol), pd.DataFrame({
            "timestamp": np.asarray(D[:5], dtype="int64"), "open": close, "high": close, "low": close,
            "close": close, "volume": np.full(len(close), 10.0)}))
    write_positions(project)
    write_runs(project, fetch_prices_ok_ms=NOW_MS - MS_PER_HOUR)
    return project


def project_paths(project: Project) -> ProjectPaths:
    return ProjectPaths(project.data, project.state, "simulated")


def write_positions(project: Project) -> None:
    positions = Positions(
        mode="paper", venue="simulated", updated_ms=D[4] + MS_PER_HOUR, cash_quote=200.0,
        amounts_base={"BTC/USDT": 5.0, "ETH/USDT": 10.0}, marks={"BTC/USDT": 150.0, "ETH/USDT": 14.0},
        equity_quote=1140.0, high_water_mark_quote=1200.0, day_start_ms=D[5], day_start_equity_quote=1100.0,
        inception_ms=D[1] + MS_PER_HOUR, inception_equity_quote=1000.0, fees_paid_quote=2.5,
    )
    write_json_atomic(project_paths(project).positions, positions.to_dict())


def write_runs(project: Project, *, fetch_prices_ok_ms: int) -> None:
    for script, at_ms in (("fetch_prices", fetch_prices_ok_ms), ("compute_signals", NOW_MS - 3 * MS_PER_HOUR),
                          ("rebalance", NOW_MS - 3 * MS_PER_HOUR)):
        for event, status in (("start", "running"), ("finish", "ok")):
            record = RunRecord(script=script, run_id=f"{script}-1", event=event,  # type: ignore[arg-type]
                               now_ms=at_ms, wall_ms=at_ms, host="test", status=status,
                               exit_code=0 if event == "finish" else None)
            append_jsonl(project_paths(project).runs, record.to_dict())


def report(project: Project, *args: str, as_of_ms: int = NOW_MS):  # noqa: ANN201
    return project.run("report", "--as-of", str(as_of_ms), *args)


def equity_lines(project: Project) -> list[str]:
    return (project.state / "equity.csv").read_text().splitlines()


def test_report_sends_the_chart_with_the_summary_and_appends_one_row(report_project: Project,
                                                                     telegram: FakeTelegram) -> None:
    result = report(report_project)
    assert result.returncode == 0, result.stderr
    photos = telegram.wait_for_messages(1)
    assert [message.method for message in photos][:1] == ["sendPhoto"]
    assert photos[0].photo is not None and photos[0].photo.startswith(PNG_SIGNATURE)
    assert photos[0].photo == (report_project.state / "report.png").read_bytes()
    full_text = telegram.texts[-1]  # the caption, or the whole text sent after a truncated caption
    assert full_text.startswith("coinbot report 2026-01-06T00:30Z (paper, simulated spot)")
    assert "equity 1,150.00 USDT" in full_text and "health: ok" in full_text
    assert "buy & hold since 2026-01-02: BTC 1,600.00, basket 1,550.00" in full_text
    header, row = equity_lines(report_project)
    assert header == to_equity_csv_header()
    assert row.split(",") == [str(NOW_MS), "2026-01-06T00:30:00Z", repr(EQUITY_QUOTE),
                              repr(BTC_BENCHMARK_QUOTE), repr(BASKET_BENCHMARK_QUOTE), "2.5",
                              repr(GROSS_QUOTE / EQUITY_QUOTE)]
    assert report_project.runs()[-1]["status"] == "ok" and report_project.runs()[-1]["script"] == "report"


def test_rerun_at_the_same_time_appends_nothing_and_a_later_run_appends_one_row(
        report_project: Project) -> None:
    assert report(report_project).returncode == 0
    assert report(report_project).returncode == 0
    assert len(equity_lines(report_project)) == 2
    assert report(report_project, as_of_ms=NOW_MS + MS_PER_HOUR).returncode == 0
    lines = equity_lines(report_project)
    assert len(lines) == 3 and lines[-1].startswith(f"{NOW_MS + MS_PER_HOUR},")


def state_files(project: Project) -> dict[str, bytes]:
    """Every file under state/ (sub-directories too: locks/): relative name -> bytes."""
    return {str(path.relative_to(project.state)): path.read_bytes()
            for path in sorted(project.state.rglob("*")) if path.is_file()}


def test_dry_run_prints_the_summary_writes_nothing_and_sends_nothing(report_project: Project,
                                                                     telegram: FakeTelegram) -> None:
    before = state_files(report_project)
    result = report(report_project, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("coinbot report 2026-01-06T00:30Z")
    assert "equity 1,150.00 USDT" in result.stdout
    assert state_files(report_project) == before  # no report.png, equity.csv, run record or lock file
    assert not (report_project.state / "report.png").exists() and not (report_project.state / "locks").exists()
    assert telegram.request_count() == 0


def test_dry_run_after_real_reports_leaves_every_state_file_as_it_was(report_project: Project,
                                                                      telegram: FakeTelegram) -> None:
    assert report(report_project).returncode == 0  # report.png, equity.csv, runs.jsonl and locks/report.lock exist
    telegram.wait_for_messages(1)
    sent = telegram.request_count()
    before = state_files(report_project)
    assert {"report.png", "equity.csv", "runs.jsonl", "positions.json", "locks/report.lock"} <= set(before)
    later = report(report_project, "--dry-run", as_of_ms=NOW_MS + MS_PER_HOUR)  # a real run would append, redraw
    assert later.returncode == 0, later.stderr
    assert "equity 1,150.00 USDT" in later.stdout
    assert state_files(report_project) == before
    (report_project.state / "runs.jsonl").unlink()  # fetch_prices stale: the dry run fails ...
    write_runs(report_project, fetch_prices_ok_ms=NOW_MS - 5 * MS_PER_HOUR)
    before = state_files(report_project)
    failed = report(report_project, "--dry-run")
    assert failed.returncode == 1 and "health: STALE" in failed.stdout
    assert state_files(report_project) == before  # ... and records nothing either
    assert telegram.request_count() == sent + 1 and telegram.texts[-1].startswith("coinbot: report FAILED")


def test_stale_fetch_prices_alerts_and_fails_after_writing_the_row_and_chart(report_project: Project,
                                                                            telegram: FakeTelegram) -> None:
    (report_project.state / "runs.jsonl").unlink()
    write_runs(report_project, fetch_prices_ok_ms=NOW_MS - 5 * MS_PER_HOUR)
    result = report(report_project)
    assert result.returncode == 1, result.stderr
    assert len(equity_lines(report_project)) == 2
    assert (report_project.state / "report.png").exists()
    messages = telegram.wait_for_messages(2)
    assert messages[0].method == "sendPhoto" and "health: STALE" in telegram.texts[-2] + telegram.texts[0]
    alert = telegram.texts[-1]
    assert alert.startswith("coinbot: report FAILED")
    assert "fetch_prices last finished ok 2026-01-05T19:30Z, 5h ago (limit 2h)" in alert
    assert report_project.runs()[-1]["status"] == "failed"


def test_corrupt_positions_is_an_alerted_failure_and_nothing_is_written(report_project: Project,
                                                                        telegram: FakeTelegram) -> None:
    (report_project.state / "positions.json").write_text('{"schema_version": 1, "cash_quote": ')
    result = report(report_project)
    assert result.returncode == 1
    (alert,) = telegram.wait_for_messages(1)
    assert alert.method == "sendMessage" and "StateError" in (alert.text or "")
    assert not (report_project.state / "equity.csv").exists()
    assert not (report_project.state / "report.png").exists()


def test_invalid_positions_content_is_a_state_error(report_project: Project, telegram: FakeTelegram) -> None:
    path = report_project.state / "positions.json"
    document = json.loads(path.read_text())
    document["cash_quote"] = "lots"
    path.write_text(json.dumps(document))
    assert report(report_project).returncode == 1
    assert "cash_quote must be a finite number" in (telegram.wait_for_messages(1)[0].text or "")


def test_without_positions_the_report_says_so_and_checks_health(report_project: Project,
                                                                 telegram: FakeTelegram) -> None:
    (report_project.state / "positions.json").unlink()
    result = report(report_project)
    assert result.returncode == 0, result.stderr
    (message,) = telegram.wait_for_messages(1)
    assert message.method == "sendMessage"
    assert "no positions yet" in (message.text or "") and "health: ok" in (message.text or "")
    assert not (report_project.state / "equity.csv").exists()


def test_without_positions_and_never_rebalanced_fails(report_project: Project,
                                                      telegram: FakeTelegram) -> None:
    (report_project.state / "positions.json").unlink()
    runs = report_project.state / "runs.jsonl"
    kept = [line for line in runs.read_text().splitlines() if '"rebalance"' not in line]
    runs.write_text("".join(line + "\n" for line in kept))
    assert report(report_project).returncode == 1
    assert "rebalance has never finished ok" in telegram.wait_for_messages(2)[-1].text  # type: ignore[operator]


def test_a_torn_equity_line_is_dropped_before_the_next_row(report_project: Project) -> None:
    (report_project.state / "equity.csv").write_text(f"{to_equity_csv_header()}\n{NOW_MS - 1},2026-01-0")
    assert report(report_project).returncode == 0
    lines = equity_lines(report_project)
    assert len(lines) == 2 and lines[0] == to_equity_csv_header() and lines[1].startswith(f"{NOW_MS},")


def test_an_undelivered_summary_fails_the_run_but_keeps_the_row(report_project: Project,
                                                                telegram: FakeTelegram) -> None:
    telegram.fail_next(401, times=None)
    result = report(report_project)
    assert result.returncode == 1
    assert "could not be delivered" in report_project.runs()[-1]["error"]
    assert len(equity_lines(report_project)) == 2


def test_a_withdrawal_since_yesterdays_report_is_not_reported_as_the_days_loss(report_project: Project,
                                                                               telegram: FakeTelegram) -> None:
    # yesterday's report saw 1,450; 300 went out at 00:40 and the rebalance at 01:00 valued it: today's 1,150
    # is a day of +0.00, not -300.00 (scripts/cashflow.py appended the line)
    (report_project.state / "equity.csv").write_text(
        f"{to_equity_csv_header()}\n{D[4] + 30 * 60_000},2026-01-05T00:30:00Z,1450.0,1500.0,1500.0,2.5,0.6\n")
    append_jsonl(report_project.state / "cashflows.jsonl",
                 {"time_ms": D[4] + 40 * 60_000, "amount_quote": "-300", "source": "manual", "note": "to bank"})
    assert report(report_project).returncode == 0
    text = telegram.texts[-1]
    assert "day +0.00 USDT (+0.00%) vs report 2026-01-05T00:30:00Z, net of cash flows -300.00" in text, text


def test_a_halted_book_and_the_kill_switch_are_said_in_every_report(report_project: Project,
                                                                    telegram: FakeTelegram) -> None:
    (report_project.state / "halt.json").write_text("{}")  # its content is rebalance's business
    assert report(report_project).returncode == 0
    assert "note: TRADING STOPPED: halt.json exists (README Runbook)" in telegram.texts[-1]
    (report_project.state / "KILL").touch()
    assert report(report_project, as_of_ms=NOW_MS + MS_PER_HOUR).returncode == 0
    assert "TRADING STOPPED: halt.json" in telegram.texts[-1] and "TRADING STOPPED: KILL" in telegram.texts[-1]

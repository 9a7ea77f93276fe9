"""No secret leaks: known key/secret/password/bot-token values are planted in .env, every script runs (testnet
mode against FakeBinance, report and alerts into FakeTelegram, doctor, backtest), including failing runs (an
exchange outage, a refused API key, a lost order reply, a bad config, --as-of outside paper mode, a dead and a
revoking Telegram), with DEBUG logging into a log file; then every output is scanned for the values:
stdout/stderr, every file under the project (state/, data/ Parquet bytes and their decoded contents, logs,
charts, run records) except .env itself, and every message, caption, form field and photo Telegram received.
The bot token is legitimately part of the Bot API URL path Telegram receives; the API key legitimately goes
to the exchange in the X-MBX-APIKEY header. Nothing else may carry either, and the secret never travels.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest

from lib.execution.ccxt_client import MAX_NETWORK_RETRIES
from tests.fakes.exchange_server import FakeBinance, RecordedRequest
from tests.fakes.telegram_server import FakeTelegram, SentMessage
from tests.integration.conftest import Project

SECRETS = {
    "COINBOT_EXCHANGE_API_KEY": "leakKEY7c1e9a2f4b0d",
    "COINBOT_EXCHANGE_API_SECRET": "leakSECRET5d8e3b0a6c",
    "COINBOT_EXCHANGE_API_PASSWORD": "leakPASS4f2a9c7e1b",
    "COINBOT_TELEGRAM_BOT_TOKEN": "8675309:leakTOKENx2y4z6w8v0",
}
CHAT_ID = "42"  # an address, not a credential
ORDER_PATH = "/api/v3/order"


def forms(secret: str) -> tuple[str, ...]:
    """The value, URL-quoted, and its middle (a truncated or partly masked copy is still a leak)."""
    return secret, quote(secret, safe=""), secret[3:-3]


def leaks_in(blob: str | bytes) -> list[str]:
    """Names of the secrets any of whose forms occur in ``blob``."""
    text = blob.decode("latin-1") if isinstance(blob, bytes) else blob
    return [name for name, value in SECRETS.items() if any(form in text for form in forms(value))]


def config_text(fake_url: str, telegram_url: str, *, mode: str = "testnet", extra: str = "") -> str:
    backfill = (datetime.now(UTC) - timedelta(days=120)).date().isoformat()
    return f"""
[exchange]
id = "binance"
mode = "{mode}"
rest_base_url = "{fake_url}"
enable_rate_limit = false
retry_base_delay_ms = 1  # backoff without the real waits
timeout_ms = 2000
[data]
symbols = ["BTC/USDT", "ETH/USDT"]
timeframes = ["1d"]
backfill_start = "{backfill}"
[signals]
ema_fast_length = 5
ema_slow_length = 20
roc_lengths = [3, 10, 30]
norm_window_bars = 60
norm_min_bars = 15
[ensemble]
ic_window_bars = 60
ic_min_bars = 20
[universe]
min_history_bars = 60
min_dollar_volume_quote = 0
[spot]
regime_filter = false
[risk]
max_order_notional_quote = 2000
[paths]
log_file = "logs/coinbot.log"
[logging]
level = "DEBUG"
[alerts]
telegram_base_url = "{telegram_url}"
timeout_ms = 1000
{extra}"""


@dataclass
class Observed:
    """Everything the runs produced: process outputs, and what the fakes received."""

    project: Project
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (what, text)
    exit_codes: list[int] = field(default_factory=list)
    messages: list[SentMessage] = field(default_factory=list)
    exchange_requests: list[RecordedRequest] = field(default_factory=list)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    project = Project(tmp_path_factory.mktemp("secret-leak"))
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "crontab").write_text('#!/bin/sh\necho "no crontab for tester" >&2\nexit 1\n')
    (bin_dir / "crontab").chmod(0o755)
    seen = Observed(project)
    with FakeBinance(now_ms=None, spot_balances={"USDT": 1000}) as fake, FakeTelegram() as telegram:

        def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
            result = project.run(script, *args, env={"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"})
            seen.outputs += [(f"{script} {' '.join(args)} stdout", result.stdout),
                             (f"{script} {' '.join(args)} stderr", result.stderr)]
            seen.exit_codes.append(result.returncode)
            return result

        good = config_text(fake.base_url, telegram.base_url)
        project.write_config(good)
        project.write_env(**SECRETS, COINBOT_TELEGRAM_CHAT_ID=CHAT_ID)
        fake.spot_balances.update({"BTC": Decimal("0.002"), "ETH": Decimal("0.05")})  # whatever the targets: orders
        for script in ("fetch_prices", "compute_signals", "rebalance", "report"):  # the happy pipeline
            assert run(script).returncode == 0, seen.outputs[-1][1][-2000:]
        run("doctor")
        run("doctor", "--json")
        run("backtest", "--run-id", "leak")
        run("rebalance", "--dry-run")
        run("report", "--dry-run")

        fake.fail_next("/api/v3/exchangeInfo", status=503, times=None)  # an exchange outage
        run("fetch_prices", "--symbols", "BTC/USDT")  # (one symbol: each waits out the retries)
        run("doctor")
        fake.clear_faults()
        fake.api_keys = {"a-different-key"}  # the exchange refuses our key
        run("rebalance")
        project.write_config(config_text(fake.base_url, telegram.base_url, mode="live"))
        run("doctor", "--live")  # the key-permission lookup, refused
        fake.api_keys = None
        run("doctor", "--live", "--json")  # the key-permission lookup, answered
        project.write_config(good)
        for asset, amount in (("BTC", "0.003"), ("ETH", "0.07")):  # a deposit (not the first one: ids differ)
            fake.spot_balances[asset] = fake.spot_balances.get(asset, Decimal(0)) + Decimal(amount)
        fake.lose_next_order_response(how="http_502")
        fake.fail_next(ORDER_PATH, status=503, method="GET", times=MAX_NETWORK_RETRIES + 1)  # every lookup fails
        run("rebalance")  # unknown outcome ...
        run("rebalance")  # ... then reconciled
        run("rebalance", "--as-of", "2026-01-01")  # refused outside paper mode
        (project.state / "KILL").touch()
        run("rebalance")  # halted: an alert
        telegram.fail_next(401, times=None)  # the bot token revoked
        run("rebalance")
        telegram.clear_failures()
        project.write_config(config_text(fake.base_url, "http://127.0.0.1:9"))  # Telegram unreachable
        run("rebalance")
        project.write_config(good + "\n[nonsense]\nkey = 1\n")  # a bad config still alerts
        for script in ("fetch_prices", "compute_signals", "rebalance", "report", "backtest", "doctor"):
            run(script)
        project.write_config(good)
        (project.state / "KILL").unlink()
        seen.messages = telegram.messages
        seen.exchange_requests = fake.requests()
    yield seen


def test_the_runs_really_used_the_secrets_and_failed_in_many_ways(observed: Observed) -> None:
    """Guards against a vacuous scan: keys signed real orders, alerts and a chart went out, runs failed."""
    key = SECRETS["COINBOT_EXCHANGE_API_KEY"]
    assert any(r.path == ORDER_PATH and r.method == "POST" and r.api_key == key for r in observed.exchange_requests)
    assert sum(" FAILED on " in (m.text or "") for m in observed.messages) >= 8
    assert any(m.photo for m in observed.messages)
    assert {1, 2, 4} <= set(observed.exit_codes)
    assert any("unknown outcome" in text for _, text in observed.outputs)  # the lost order reply happened
    assert (observed.project.root / "logs" / "coinbot.log").stat().st_size > 0
    assert list(observed.project.data.rglob("*.parquet")) and list(observed.project.state.rglob("*.parquet"))


def test_no_output_of_any_script_holds_a_secret(observed: Observed) -> None:
    found = [(what, leaks_in(text)) for what, text in observed.outputs if leaks_in(text)]
    assert not found, f"secrets in script output: {found[:5]}"


def test_no_file_in_the_project_holds_a_secret(observed: Observed) -> None:
    root, found = observed.project.root, []
    files = [path for path in sorted(root.rglob("*")) if path.is_file() and path.name != ".env"]
    assert len(files) > 10
    for path in files:
        contents = [path.read_bytes()]
        if path.suffix == ".parquet":  # compressed on disk: scan the decoded values too
            contents.append(pq.read_table(path).to_pandas().to_csv())
        found += [(str(path.relative_to(root)), leaks_in(blob)) for blob in contents if leaks_in(blob)]
    assert not found, f"secrets in files: {found[:5]}"


def test_nothing_telegram_received_holds_a_secret(observed: Observed) -> None:
    found = []
    for message in observed.messages:  # message.token is the URL path: the one place the token belongs
        blobs = [message.text or "", *message.fields.values(), message.photo or b""]
        found += [(message.method, leaks_in(blob)) for blob in blobs if leaks_in(blob)]
    assert not found, f"secrets in Telegram messages: {found[:5]}"


def test_the_exchange_sees_only_the_key_and_only_in_its_header(observed: Observed) -> None:
    key = SECRETS["COINBOT_EXCHANGE_API_KEY"]
    found = [(r.method, r.path, leaks_in(" ".join(f"{k}={v}" for k, v in r.params.items())))
             for r in observed.exchange_requests]
    assert not [entry for entry in found if entry[2]], f"secrets in exchange request parameters: {found[:5]}"
    assert {r.api_key for r in observed.exchange_requests} <= {None, key}

"""doctor as a subprocess in a temp project: healthy, then each problem planted; plus the key-permission
lookup against the fake Binance server (real ccxt request path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import ccxt
import pytest

from lib.core.state import RunRecord
from lib.core.venue import KeyPermissions
from lib.execution.binance_keys import fetch_api_key_permissions
from lib.execution.ccxt_client import create_client
from lib.ops.config import ExchangeSection, Secrets
from tests.fakes.exchange_server import FakeBinance
from tests.integration.conftest import Project

NOW_MS = 1_767_225_600_000 + 30 * 60_000  # 2026-01-01T00:30Z
AS_OF = str(NOW_MS)
API_KEY, API_SECRET, BOT_TOKEN = "doctorKEY4f9a1c", "doctorSECRET77b2e0", "424242:doctorTOKENq8z"
PAPER_CONFIG = """
[exchange]
id = "simulated"
[data]
symbols = ["BTC/USDT", "ETH/USDT"]
timeframes = ["1d", "1h"]
backfill_start = "2025-12-01"
"""


def live_config(fake: FakeBinance, *, market_type: str = "spot", confirmed: bool = True) -> str:
    strategy = '[strategy]\nname = "perp_market_neutral"\n' if market_type == "swap" else ""
    return f"""
[exchange]
id = "{'binanceusdm' if market_type == 'swap' else 'binance'}"
market_type = "{market_type}"
mode = "live"
live_confirmed = {str(confirmed).lower()}
rest_base_url = "{fake.base_url}"
enable_rate_limit = false
retry_base_delay_ms = 1  # backoff without the real waits
timeout_ms = 2000
[data]
symbols = ["BTC/USDT", "ETH/USDT"]
timeframes = ["1d"]
{strategy}"""


@pytest.fixture(scope="module")
def healthy_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A paper project on the simulated exchange after one fetch_prices at AS_OF (built once, copied per test)."""
    project = Project(tmp_path_factory.mktemp("doctor-template"))
    project.write_config(PAPER_CONFIG)
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN=BOT_TOKEN, COINBOT_TELEGRAM_CHAT_ID="42")
    result = project.run("fetch_prices", "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    return project.root


@pytest.fixture
def healthy(project: Project, healthy_template: Path) -> Project:
    shutil.copytree(healthy_template, project.root, dirs_exist_ok=True)
    return project


@pytest.fixture
def fake_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``crontab`` on PATH that says the user has none (the real one may be absent or hold anything)."""
    directory = tmp_path_factory.mktemp("bin")
    write_fake_crontab(directory, 'echo "no crontab for tester" >&2; exit 1')
    return directory


def write_fake_crontab(directory: Path, body: str) -> None:
    script = directory / "crontab"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


def doctor(project: Project, fake_bin: Path, *args: str,
           table: bool = False) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run doctor ``--json``: the process and ``{check: status}``. ``table``: also run the table form, which
    must exit the same way; no planted secret may appear in any output."""
    env = {"PATH": f"{fake_bin}:{os.environ.get('PATH', '')}"}
    result = project.run("doctor", "--json", *args, env=env)
    rows = {finding["check"]: finding["status"] for finding in json.loads(result.stdout)["findings"]}
    outputs = result.stdout + result.stderr
    if table:
        table_run = project.run("doctor", *args, env=env)
        assert table_run.returncode == result.returncode, table_run.stdout + table_run.stderr
        assert table_run.stdout.splitlines()[0].split()[:3] == ["CHECK", "STATUS", "DETAIL"]
        assert table_run.stdout.count("\n") > len(rows)  # one line per row at least, plus header and verdict
        outputs += table_run.stdout + table_run.stderr
    for secret in (API_KEY, API_SECRET, BOT_TOKEN):
        assert secret not in outputs
    return result, rows


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(root.rglob("*")) if path.is_file()}


# -- paper project --------------------------------------------------------------------------------------
def test_healthy_paper_project_exits_0_and_changes_no_file(healthy: Project, fake_bin: Path) -> None:
    before = snapshot(healthy.root)
    result, rows = doctor(healthy, fake_bin, "--as-of", AS_OF, table=True)
    assert result.returncode == 0, result.stdout
    assert snapshot(healthy.root) == before  # no run record, no lock, nothing
    assert rows["config"] == rows["exchange"] == rows["data 1d (trading)"] == rows["data 1h"] == "ok"
    assert rows["last fetch_prices"] == "ok" and rows["last rebalance"] == "warn"  # never ran: a warning only
    assert rows["kill switch"] == rows["drawdown halt"] == rows["positions.json"] == "ok"
    assert rows["crontab"] == "warn" and "fail" not in rows.values()


def test_bad_config_still_prints_the_table_and_exits_2(healthy: Project, fake_bin: Path) -> None:
    healthy.write_config(PAPER_CONFIG + "\n[risk]\nno_such_key = 1\n")
    result, rows = doctor(healthy, fake_bin, "--as-of", AS_OF, table=True)
    assert result.returncode == 2
    assert rows["config"] == "fail" and "risk.no_such_key" in result.stdout
    assert ".env" in rows and "crontab" in rows  # the checks that need no config still ran


def test_missing_config_file_and_bad_as_of(healthy: Project, fake_bin: Path) -> None:
    result = healthy.run("doctor", "--as-of", "yesterday", env={"PATH": f"{fake_bin}:/usr/bin:/bin"})
    assert result.returncode == 2 and "--as-of" in result.stdout
    healthy.config.unlink()
    result, rows = doctor(healthy, fake_bin)
    assert result.returncode == 2 and rows["config"] == "fail" and "not found" in result.stdout


def test_stale_data_fails(healthy: Project, fake_bin: Path) -> None:
    five_days_later = str(NOW_MS + 5 * 86_400_000)
    result, rows = doctor(healthy, fake_bin, "--as-of", five_days_later)
    assert result.returncode == 1
    assert rows["data 1d (trading)"] == "fail" and rows["data 1h"] == "warn"
    assert rows["last fetch_prices"] == "warn"  # 5 days old, limit 2h


def test_corrupt_positions_fails(healthy: Project, fake_bin: Path) -> None:
    (healthy.state / "positions.json").write_text('{"schema_version": 1, "mode": "paper", "cash_')
    result, rows = doctor(healthy, fake_bin, "--as-of", AS_OF)
    assert result.returncode == 1 and rows["positions.json"] == "fail"
    assert "not valid JSON" in result.stdout


def test_halt_and_kill_switch_fail(healthy: Project, fake_bin: Path) -> None:
    (healthy.state / "halt.json").write_text('{"schema_version": 1}')
    (healthy.state / "KILL").write_text("")
    result, rows = doctor(healthy, fake_bin, "--as-of", AS_OF)
    assert result.returncode == 1 and rows["drawdown halt"] == rows["kill switch"] == "fail"
    assert "trading halted: see README to clear" in result.stdout and "kill switch on" in result.stdout


def test_failed_last_run_fails_and_torn_journal_warns(healthy: Project, fake_bin: Path) -> None:
    failed = RunRecord(script="compute_signals", run_id="cs-1", event="finish", now_ms=NOW_MS - 60_000,
                       wall_ms=NOW_MS, host="vps", status="failed", exit_code=1, error="DataError: stale benchmark")
    with (healthy.state / "runs.jsonl").open("a") as runs:
        runs.write(json.dumps(failed.to_dict()) + "\n")
    (healthy.state / "orders.jsonl").write_text('{"event": "planned"}\n{"event": "se')
    result, rows = doctor(healthy, fake_bin, "--as-of", AS_OF)
    assert result.returncode == 1
    assert rows["last compute_signals"] == "fail" and "stale benchmark" in result.stdout
    assert rows["orders.jsonl"] == "warn"


def test_torn_journal_alone_only_warns(healthy: Project, fake_bin: Path) -> None:
    (healthy.state / "orders.jsonl").write_text('{"event": "planned"}\n{"event": "se')
    result, rows = doctor(healthy, fake_bin, "--as-of", AS_OF)
    assert result.returncode == 0 and rows["orders.jsonl"] == "warn"


def test_env_readable_by_others_warns_and_crontab_is_found(healthy: Project, fake_bin: Path) -> None:
    (healthy.root / ".env").chmod(0o644)
    write_fake_crontab(fake_bin, 'echo "COINBOT_HOME=/srv/coinbot"; '
                                 'echo "3 * * * * [ \\"\\$(date -u +%H)\\" = 00 ] && run_pipeline"')
    result, rows = doctor(healthy, fake_bin, "--as-of", AS_OF, table=True)
    assert result.returncode == 0 and rows[".env"] == "warn" and rows["crontab"] == "ok"
    assert f"chmod 600 {healthy.root / '.env'}" in result.stdout


# -- live project against the fake exchange -----------------------------------------------------------------
@pytest.fixture
def risky_fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=NOW_MS, api_keys={API_KEY}, api_restrictions={"enableWithdrawals": True}) as fake:
        yield fake


@pytest.fixture
def safe_fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=NOW_MS, api_keys={API_KEY}, api_restrictions={"ipRestrict": True}) as fake:
        yield fake


def write_keys(project: Project) -> None:
    project.write_env(COINBOT_EXCHANGE_API_KEY=API_KEY, COINBOT_EXCHANGE_API_SECRET=API_SECRET,
                      COINBOT_TELEGRAM_BOT_TOKEN=BOT_TOKEN, COINBOT_TELEGRAM_CHAT_ID="42")


def test_live_without_keys_fails(project: Project, safe_fake: FakeBinance, fake_bin: Path) -> None:
    project.write_config(live_config(safe_fake, confirmed=False))
    result, rows = doctor(project, fake_bin, "--as-of", AS_OF)
    assert result.returncode == 1
    assert rows["exchange keys"] == "fail" and rows["live opt-in"] == "fail" and rows["exchange"] == "ok"
    assert "key withdrawals" not in rows  # nothing to ask about without a key


def test_live_key_that_can_withdraw_fails(project: Project, risky_fake: FakeBinance, fake_bin: Path) -> None:
    project.write_config(live_config(risky_fake))
    write_keys(project)
    result, rows = doctor(project, fake_bin, "--as-of", AS_OF, table=True)
    assert result.returncode == 1
    assert rows["exchange keys"] == rows["live opt-in"] == rows["key trading"] == "ok"
    assert rows["key withdrawals"] == "fail" and rows["key IP restriction"] == "warn"
    assert "create a key without withdrawal permission" in result.stdout


def test_testnet_key_that_can_withdraw_fails(project: Project, risky_fake: FakeBinance, fake_bin: Path) -> None:
    project.write_config(live_config(risky_fake).replace('mode = "live"', 'mode = "testnet"'))
    write_keys(project)
    result, rows = doctor(project, fake_bin, "--as-of", AS_OF)
    assert result.returncode == 1 and rows["key withdrawals"] == "fail"  # rebalance refuses it in testnet too


def test_live_safe_key_and_opt_in_by_flag(project: Project, safe_fake: FakeBinance, fake_bin: Path) -> None:
    project.write_config(live_config(safe_fake, confirmed=False))
    write_keys(project)
    result, rows = doctor(project, fake_bin, "--as-of", AS_OF, "--live")
    assert rows["live opt-in"] == rows["key withdrawals"] == rows["key trading"] == rows["key IP restriction"] == "ok"
    assert rows["data 1d (trading)"] == "fail" and result.returncode == 1  # no candles fetched in this project


def test_live_key_refused_by_the_exchange_fails(project: Project, safe_fake: FakeBinance, fake_bin: Path) -> None:
    project.write_config(live_config(safe_fake))
    project.write_env(COINBOT_EXCHANGE_API_KEY="someOtherKey123", COINBOT_EXCHANGE_API_SECRET=API_SECRET)
    result, rows = doctor(project, fake_bin, "--as-of", AS_OF)
    assert result.returncode == 1 and rows["key permissions"] == "fail"
    assert "someOtherKey123" not in result.stdout + result.stderr


def test_unreachable_exchange_fails(project: Project, fake_bin: Path) -> None:
    with FakeBinance(now_ms=NOW_MS) as fake:
        config = live_config(fake)
    project.write_config(config)  # the server is gone: connection refused
    write_keys(project)
    result, rows = doctor(project, fake_bin, "--as-of", AS_OF)
    assert result.returncode == 1 and rows["exchange"] == "fail" and rows["key permissions"] == "fail"


# -- fetch_api_key_permissions (in process, real ccxt against the fake) ------------------------------------
def client_for(fake: FakeBinance, *, market_type: Literal["spot", "swap"] = "spot") -> object:
    section = ExchangeSection(id="binanceusdm" if market_type == "swap" else "binance", market_type=market_type,
                              rest_base_url=fake.base_url, enable_rate_limit=False, timeout_ms=2000)
    return create_client(section, Secrets(exchange_api_key=API_KEY, exchange_api_secret=API_SECRET))


@pytest.mark.parametrize("restrictions, market_type, expected", [
    ({}, "spot", (True, False, False)),
    ({"enableWithdrawals": True, "ipRestrict": True}, "spot", (True, True, True)),
    ({"enableSpotAndMarginTrading": False}, "spot", (False, False, False)),
    ({"enableFutures": False}, "spot", (True, False, False)),
    ({"enableFutures": False}, "swap", (False, False, False)),
    ({"enableSpotAndMarginTrading": False}, "swap", (True, False, False)),
])
def test_fetch_api_key_permissions(restrictions: dict[str, bool], market_type: Literal["spot", "swap"],
                                   expected: tuple[bool, bool, bool]) -> None:
    with FakeBinance(now_ms=NOW_MS, api_restrictions=restrictions) as fake:
        permissions = fetch_api_key_permissions(client_for(fake, market_type=market_type))
        assert isinstance(permissions, KeyPermissions)
        assert (permissions.can_trade, permissions.can_withdraw, permissions.ip_restricted) == expected
        assert permissions.raw_source.endswith("GET /sapi/v1/account/apiRestrictions")
        assert [request.path for request in fake.requests()].count("/sapi/v1/account/apiRestrictions") == 1


def test_fetch_api_key_permissions_is_unknown_where_ccxt_cannot_ask() -> None:
    assert fetch_api_key_permissions(ccxt.okx()) is None  # no request is made


def test_an_unreadable_env_file_is_a_failed_row_not_a_traceback(healthy: Project, fake_bin: Path) -> None:
    (healthy.root / ".env").write_bytes(b"COINBOT_EXCHANGE_API_SECRET=s\xe9cret-do-not-leak\n")
    result, rows = doctor(healthy, fake_bin, "--as-of", AS_OF, table=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert rows["config"] == "fail" and "not UTF-8" in result.stdout and "do-not-leak" not in result.stdout

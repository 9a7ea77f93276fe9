"""lib/ops/doctor.py: each check, given facts, returns the expected status (tables), plus the renderings."""

from __future__ import annotations

import json

import pytest

from lib.core.errors import ConfigError
from lib.core.state import HaltRecord, Positions, RunRecord, Targets
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.core.venue import KeyPermissions
from lib.execution.risk_live_key import refuse_unsafe_key
from lib.ops import doctor
from lib.ops.doctor import FileFacts, Finding, SeriesFacts
from lib.ops.health import HealthParams

NOW_MS = 1_767_225_600_000 + 30 * 60_000  # 2026-01-01T00:30Z
LAST_CLOSED_1H_MS = 1_767_225_600_000 - MS_PER_HOUR  # 2025-12-31T23:00Z
LAST_CLOSED_1D_MS = 1_767_225_600_000 - MS_PER_DAY  # 2025-12-31T00:00Z


def statuses(findings: list[Finding]) -> list[str]:
    return [finding.status for finding in findings]


def perms(*, trade: bool = True, withdraw: bool = False, ip: bool | None = True) -> KeyPermissions:
    return KeyPermissions(can_trade=trade, can_withdraw=withdraw, ip_restricted=ip, raw_source="test GET /x")


# -- config, .env, keys -------------------------------------------------------------------------------
def test_config_error_is_a_fail_that_names_the_file() -> None:
    finding = doctor.check_config("unknown config key data.foo", config_path="c.toml")
    assert finding == Finding("config", "fail", "unknown config key data.foo", finding.what_to_do)
    assert "c.toml" in finding.what_to_do
    assert doctor.check_config("", config_path="c.toml", summary="simulated spot").status == "ok"


@pytest.mark.parametrize("mode_bits, expected", [
    (None, "ok"), (0o100600, "ok"), (0o100400, "ok"), (0o100700, "ok"),
    (0o100640, "warn"), (0o100604, "warn"), (0o100644, "warn"), (0o100666, "warn"),
])
def test_env_file_readable_by_others_warns_with_the_chmod_command(mode_bits: int | None, expected: str) -> None:
    finding = doctor.check_env_file(path="/srv/coinbot/.env", mode_bits=mode_bits)
    assert finding.status == expected
    if expected == "warn":
        assert finding.what_to_do == "chmod 600 /srv/coinbot/.env"


@pytest.mark.parametrize("mode, has_keys, opt_in, expected", [
    ("paper", False, False, {"exchange keys": "ok"}),
    ("paper", True, False, {"exchange keys": "ok"}),
    ("testnet", False, False, {"exchange keys": "fail"}),
    ("testnet", True, False, {"exchange keys": "ok"}),
    ("live", False, True, {"exchange keys": "fail", "live opt-in": "ok"}),
    ("live", True, False, {"exchange keys": "ok", "live opt-in": "fail"}),
    ("live", True, True, {"exchange keys": "ok", "live opt-in": "ok"}),
])
def test_keys_needed_by_the_mode(mode: str, has_keys: bool, opt_in: bool, expected: dict[str, str]) -> None:
    findings = doctor.check_keys(mode=mode, has_exchange_keys=has_keys, live_opt_in=opt_in)
    assert {finding.check: finding.status for finding in findings} == expected


@pytest.mark.parametrize("permissions, mode, expected", [
    (perms(), "live", ["ok", "ok", "ok"]),
    (perms(withdraw=True), "live", ["fail", "ok", "ok"]),
    (perms(trade=False), "live", ["ok", "fail", "ok"]),
    (perms(ip=False), "live", ["ok", "ok", "warn"]),
    (perms(ip=None), "live", ["ok", "ok", "warn"]),
    (perms(withdraw=True, trade=False, ip=False), "live", ["fail", "fail", "warn"]),
    (perms(withdraw=True), "testnet", ["fail", "ok", "ok"]),  # a key that can withdraw never trades anywhere
    (perms(trade=False), "testnet", ["ok", "warn", "ok"]),
    (None, "live", ["fail"]),  # the exchange cannot say: live fails closed
    (None, "testnet", ["warn"]),  # sandbox: say so, do not stop
    (None, "paper", ["ok"]),
    (perms(withdraw=True), "paper", ["ok"]),  # paper uses no key
])
def test_key_permissions(permissions: KeyPermissions | None, mode: str, expected: list[str]) -> None:
    assert statuses(doctor.check_key_permissions(permissions, mode=mode)) == expected


def test_withdrawal_permission_says_what_to_do() -> None:
    withdraw = doctor.check_key_permissions(perms(withdraw=True), mode="live")[0]
    assert withdraw.check == "key withdrawals" and "test GET /x" in withdraw.detail
    assert withdraw.what_to_do == "create a key without withdrawal permission and put it in .env"
    assert doctor.has_failure(doctor.check_key_permissions(perms(withdraw=True), mode="live"))
    assert not doctor.has_failure(doctor.check_key_permissions(perms(ip=False), mode="live"))


@pytest.mark.parametrize("mode, has_keys, error, refused, expected", [
    ("paper", False, "", False, ["ok"]),
    ("live", False, "", False, []),  # the keys row already fails
    ("live", True, "", False, ["ok", "ok", "ok"]),
    ("live", True, "AuthenticationError: -2015", True, ["fail"]),
    ("live", True, "exchange unreachable", False, ["fail"]),  # live fails closed
    ("testnet", True, "", False, ["ok", "ok", "ok"]),  # looked up in testnet too (rebalance checks it)
    ("testnet", True, "exchange unreachable", False, ["warn"]),
    ("testnet", False, "", False, []),
])
def test_key_access(mode: str, has_keys: bool, error: str, refused: bool, expected: list[str]) -> None:
    findings = doctor.check_key_access(perms(), mode=mode, has_exchange_keys=has_keys, error=error, refused=refused)
    assert statuses(findings) == expected


def test_refuse_unsafe_key_in_every_trading_mode() -> None:
    with pytest.raises(ConfigError, match="CAN withdraw"):
        refuse_unsafe_key(doctor.check_key_permissions(perms(withdraw=True), mode="testnet"))
    with pytest.raises(ConfigError, match="unknown"):
        refuse_unsafe_key(doctor.check_key_permissions(None, mode="live"))
    refuse_unsafe_key(doctor.check_key_permissions(None, mode="testnet"))  # warns only
    refuse_unsafe_key(doctor.check_key_permissions(perms(ip=False), mode="live"))


@pytest.mark.parametrize("mode, refused, expected", [
    ("live", True, "fail"), ("live", False, "fail"), ("testnet", True, "fail"), ("testnet", False, "warn"),
])
def test_key_permissions_unreadable(mode: str, refused: bool, expected: str) -> None:
    finding = doctor.check_key_permissions_unreadable("ExchangeError: 404", mode=mode, refused=refused)
    assert finding.status == expected and "ExchangeError: 404" in finding.detail


def test_alerts_without_telegram_warn() -> None:
    assert doctor.check_alerts(has_telegram=True).status == "ok"
    assert doctor.check_alerts(has_telegram=False).status == "warn"


# -- exchange and data --------------------------------------------------------------------------------
@pytest.mark.parametrize("listed, expected, fragment", [
    (None, "fail", "unreachable: timed out"),
    ({"BTC/USDT", "ETH/USDT", "SOL/USDT"}, "ok", "all 2 configured symbols listed"),
    ({"BTC/USDT"}, "warn", "not listed: ETH/USDT"),
])
def test_exchange(listed: set[str] | None, expected: str, fragment: str) -> None:
    finding = doctor.check_exchange(exchange_id="binance", listed=listed, wanted=["BTC/USDT", "ETH/USDT"],
                                    error="timed out")
    assert finding.status == expected and fragment in finding.detail


def series(timeframe: str, **newest: int | None | str) -> list[SeriesFacts]:
    """``BTC=ms`` fresh/stale candle time, ``None`` no closed candle, ``"missing"`` no file, ``"bad"`` unreadable."""
    facts = []
    for base, value in newest.items():
        symbol = f"{base}/USDT"
        if value == "missing":
            facts.append(SeriesFacts(symbol=symbol, timeframe=timeframe, exists=False, newest_closed_open_ms=None))
        elif value == "bad":
            facts.append(SeriesFacts(symbol=symbol, timeframe=timeframe, exists=True, newest_closed_open_ms=None,
                                     read_error="not parquet"))
        else:
            facts.append(SeriesFacts(symbol=symbol, timeframe=timeframe, exists=True,
                                     newest_closed_open_ms=value if isinstance(value, int) else None))
    return facts


FRESH_D, FRESH_H = LAST_CLOSED_1D_MS, LAST_CLOSED_1H_MS
AT_LIMIT_D = LAST_CLOSED_1D_MS - 2 * MS_PER_DAY  # exactly max_staleness_bars behind: still fresh
STALE_D = LAST_CLOSED_1D_MS - 3 * MS_PER_DAY


@pytest.mark.parametrize("facts, expected", [
    (series("1d", BTC=FRESH_D, ETH=FRESH_D, SOL=FRESH_D), ["ok"]),
    (series("1d", BTC=FRESH_D, ETH=AT_LIMIT_D, SOL=FRESH_D), ["ok"]),
    (series("1d", BTC=FRESH_D, ETH=STALE_D, SOL=FRESH_D), ["warn"]),  # weight 0 for ETH, trading goes on
    (series("1d", BTC=FRESH_D, ETH="missing", SOL=FRESH_D), ["warn"]),
    (series("1d", BTC=STALE_D, ETH=FRESH_D, SOL=FRESH_D), ["fail"]),  # the benchmark
    (series("1d", BTC="missing", ETH=FRESH_D, SOL=FRESH_D), ["fail"]),
    (series("1d", BTC=FRESH_D, ETH=STALE_D, SOL=None), ["fail"]),  # most symbols stale
    (series("1d", BTC=FRESH_D, ETH="bad", SOL=FRESH_D), ["fail"]),  # fetch_prices would fail
    (series("1h", BTC=FRESH_H, ETH=FRESH_H), ["ok"]),
    (series("1h", BTC="missing", ETH=FRESH_H - 10 * MS_PER_HOUR), ["warn"]),  # not the trading timeframe
    (series("1h", BTC=FRESH_H, ETH="bad"), ["fail"]),
    (series("1d", BTC=FRESH_D, ETH=FRESH_D) + series("1h", BTC=FRESH_H, ETH="missing"), ["ok", "warn"]),
])
def test_data_freshness(facts: list[SeriesFacts], expected: list[str]) -> None:
    findings = doctor.check_data_freshness(facts, now_ms=NOW_MS, max_staleness_bars=2, trading_timeframe="1d",
                                           benchmark="BTC/USDT")
    assert statuses(findings) == expected


def test_data_row_names_the_stale_series_and_the_limit() -> None:
    [finding] = doctor.check_data_freshness(series("1d", BTC=FRESH_D, ETH=STALE_D, SOL="missing", XRP=FRESH_D),
                                            now_ms=NOW_MS, max_staleness_bars=2, trading_timeframe="1d",
                                            benchmark="BTC/USDT")
    assert finding.check == "data 1d (trading)"
    assert finding.detail.startswith("2/4 series fresh (newest 2025-12-31T00:00Z, limit 2 bar(s) behind")
    assert "ETH/USDT (3 bars behind)" in finding.detail and "SOL/USDT (no file)" in finding.detail
    assert "fetch_prices" in finding.what_to_do


def test_data_row_lists_at_most_five_series() -> None:
    facts = series("1h", **{f"C{index}": "missing" for index in range(8)})
    [finding] = doctor.check_data_freshness(facts, now_ms=NOW_MS, max_staleness_bars=2, trading_timeframe="1d",
                                            benchmark="BTC/USDT")
    assert finding.detail.endswith("and 3 more") and "C5/USDT" not in finding.detail


# -- state files --------------------------------------------------------------------------------------
TARGETS = Targets(as_of_ms=LAST_CLOSED_1D_MS, created_ms=NOW_MS, strategy="spot_long_only", exchange="simulated",
                  market_type="spot", timeframe="1d", weights={"BTC/USDT": 0.5}).to_dict()
POSITIONS = Positions(mode="paper", venue="simulated", updated_ms=NOW_MS, cash_quote=500.0,
                      amounts_base={"BTC/USDT": 0.01}, marks={"BTC/USDT": 50_000.0}, equity_quote=1000.0,
                      high_water_mark_quote=1000.0, day_start_ms=NOW_MS, day_start_equity_quote=1000.0,
                      inception_ms=NOW_MS, inception_equity_quote=1000.0).to_dict()
HALT = HaltRecord(created_ms=NOW_MS, run_id="rebalance-1", reason="drawdown", detail="-30%", equity_quote=700.0,
                  high_water_mark_quote=1000.0).to_dict()


@pytest.mark.parametrize("facts, expected", [
    (FileFacts(exists=False), "warn"),
    (FileFacts(exists=True, document=TARGETS), "ok"),
    (FileFacts(exists=True, document={**TARGETS, "schema_version": 99}), "fail"),
    (FileFacts(exists=True, document={**TARGETS, "weights": {"BTC/USDT": "lots"}}), "fail"),
    (FileFacts(exists=True, read_error="targets.json is not valid JSON"), "fail"),
])
def test_targets(facts: FileFacts, expected: str) -> None:
    assert doctor.check_targets(facts, now_ms=NOW_MS).status == expected


@pytest.mark.parametrize("facts, expected", [
    (FileFacts(exists=False), "ok"),  # before the first rebalance
    (FileFacts(exists=True, document=POSITIONS), "ok"),
    (FileFacts(exists=True, document={**POSITIONS, "equity_quote": None}), "fail"),
    (FileFacts(exists=True, document=[1, 2]), "fail"),
    (FileFacts(exists=True, read_error="positions.json is not valid JSON"), "fail"),
])
def test_positions(facts: FileFacts, expected: str) -> None:
    assert doctor.check_positions(facts).status == expected


@pytest.mark.parametrize("exists, torn, read_error, expected", [
    (False, False, "", "ok"), (True, False, "", "ok"), (True, True, "", "warn"),
    (True, False, "orders.jsonl:3 is not valid JSON", "fail"),
])
def test_journal(exists: bool, torn: bool, read_error: str, expected: str) -> None:
    assert doctor.check_journal(exists=exists, event_count=3, torn=torn, read_error=read_error).status == expected


@pytest.mark.parametrize("facts, expected", [
    (FileFacts(exists=False), "ok"),
    (FileFacts(exists=True, document=HALT), "fail"),
    (FileFacts(exists=True, document={"what": "ever"}), "fail"),  # unreadable halts too (fail closed)
    (FileFacts(exists=True, read_error="halt.json is not valid JSON"), "fail"),
])
def test_halt(facts: FileFacts, expected: str) -> None:
    finding = doctor.check_halt(facts)
    assert finding.status == expected
    if expected == "fail":
        assert finding.what_to_do.startswith("trading halted: see README to clear")


def test_kill_switch() -> None:
    assert doctor.check_kill_switch(exists=False).status == "ok"
    on = doctor.check_kill_switch(exists=True)
    assert on.status == "fail" and "kill switch on" in on.detail


# -- cron ---------------------------------------------------------------------------------------------
def run(script: str, at_ms: int, status: str = "ok", event: str = "finish", error: str = "") -> RunRecord:
    return RunRecord(script=script, run_id=f"{script}-{at_ms}", event=event, now_ms=at_ms, wall_ms=at_ms,  # type: ignore[arg-type]
                     host="vps", status=status, exit_code=0 if status == "ok" else 1, error=error)


LIMITS = {"fetch_prices": 2 * MS_PER_HOUR, "compute_signals": 26 * MS_PER_HOUR, "rebalance": 26 * MS_PER_HOUR,
          "report": 0}


@pytest.mark.parametrize("records, expected", [
    ([], ["warn", "warn", "warn", "warn"]),
    ([run(job, NOW_MS - MS_PER_HOUR) for job in doctor.JOBS], ["ok", "ok", "ok", "ok"]),
    ([run("fetch_prices", NOW_MS - 3 * MS_PER_HOUR)], ["warn", "warn", "warn", "warn"]),  # older than its limit
    ([run("compute_signals", NOW_MS - 60_000, "failed", error="DataError: stale")], ["warn", "fail", "warn", "warn"]),
    ([run("report", NOW_MS - 60_000, "failed")], ["warn", "warn", "warn", "warn"]),  # report failing: no stop
    ([run("rebalance", NOW_MS - 2 * MS_PER_HOUR, "failed"), run("rebalance", NOW_MS - MS_PER_HOUR)],
     ["warn", "warn", "ok", "warn"]),  # recovered
    ([run("rebalance", NOW_MS - 60_000, "running", event="start")], ["warn", "warn", "warn", "warn"]),
    ([run("rebalance", NOW_MS + MS_PER_HOUR, "failed")], ["warn", "warn", "warn", "warn"]),  # after --as-of
    ([run("report", NOW_MS - 400 * MS_PER_DAY)], ["warn", "warn", "warn", "ok"]),  # limit 0: not checked
])
def test_job_runs(records: list[RunRecord], expected: list[str]) -> None:
    findings = doctor.check_job_runs(records, now_ms=NOW_MS, max_age_ms=LIMITS)
    assert [finding.check for finding in findings] == [f"last {job}" for job in doctor.JOBS]
    assert statuses(findings) == expected


def test_failed_run_row_shows_the_error_and_the_last_success() -> None:
    records = [run("rebalance", NOW_MS - MS_PER_DAY), run("rebalance", NOW_MS - 60_000, "failed", error="boom")]
    finding = doctor.check_job_runs(records, now_ms=NOW_MS, max_age_ms=LIMITS, jobs=("rebalance",))[0]
    assert finding.status == "fail"
    assert "exit 1" in finding.detail and "last ok 2025-12-31T00:30Z" in finding.detail and "boom" in finding.detail


def test_job_limits_come_from_health_and_doctor_params() -> None:
    limits = doctor.to_job_age_limits_ms(HealthParams(fetch_prices_max_age_ms=5), doctor.DoctorParams(
        report_max_age_ms=7))
    assert limits["fetch_prices"] == 5 and limits["report"] == 7 and set(limits) == set(doctor.JOBS)


@pytest.mark.parametrize("read_error, torn, expected", [
    ("", False, []), ("", True, ["warn"]), ("runs.jsonl:2 is not valid JSON", False, ["warn"]),
])
def test_runs_file(read_error: str, torn: bool, expected: list[str]) -> None:
    assert statuses(doctor.check_runs_file(read_error=read_error, torn=torn)) == expected


@pytest.mark.parametrize("listing, expected", [
    (None, "warn"),
    ("", "warn"),
    ("# coinbot schedule\n# 3 0 * * * run_pipeline\n", "warn"),  # only comments
    ("0 * * * * backup.sh\n", "warn"),
    ("COINBOT_HOME=CHANGE_ME_TO_THE_CLONE_DIRECTORY\n3 0 * * * cd $COINBOT_HOME && poetry run run_pipeline\n",
     "warn"),
    ("COINBOT_HOME=/srv/coinbot\n3 0 * * * cd $COINBOT_HOME && poetry run run_pipeline\n", "warn"),  # local 00
    ("40 0 * * * cd /srv/bot && .tools/bin/poetry run report\n", "warn"),  # CRON_TZ ignored by Debian cron
    ("COINBOT_HOME=/srv/coinbot\n3 * * * * [ \"$(date -u +\\%H)\" = 00 ] && cd $COINBOT_HOME && "
     "poetry run run_pipeline\n", "ok"),
])
def test_crontab(listing: str | None, expected: str) -> None:
    assert doctor.check_crontab(listing=listing, error="the crontab command is not installed").status == expected


# -- rendering and parameters -------------------------------------------------------------------------
FINDINGS = [
    Finding("config", "ok", "config.toml is valid"),
    Finding("key withdrawals", "fail", "the key CAN withdraw funds " + "x" * 100,
            "create a key without withdrawal permission and put it in .env"),
    Finding("alerts", "warn", "Telegram token or chat id missing", "put the token in .env"),
]


def test_table_has_one_row_per_finding_and_a_verdict() -> None:
    table = doctor.to_table(FINDINGS, now_ms=NOW_MS)
    lines = table.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL", "WHAT", "TO", "DO"]
    assert [line.split("  ")[0] for line in lines[1:] if line and not line.startswith(" ")][:3] == [
        "config", "key withdrawals", "alerts"]
    assert "FAIL" in table and "WARN" in table and "OK" in table
    assert lines[-1] == "doctor at 2026-01-01T00:30Z: 1 ok, 1 warn, 1 fail; trading would stop: fix the FAIL rows"
    assert all(len(line) <= 20 + 8 + 62 + 48 for line in lines[:-1])  # wrapped, not one long line


def test_verdict_without_failures() -> None:
    assert doctor.to_verdict(FINDINGS[::2], now_ms=NOW_MS).endswith("1 ok, 1 warn, 0 fail; nothing stops trading")


def test_json_document() -> None:
    document = json.loads(json.dumps(doctor.to_json_document(FINDINGS, now_ms=NOW_MS)))
    assert document["ok"] is False and document["counts"] == {"ok": 1, "warn": 1, "fail": 1}
    assert document["findings"][1] == {"check": "key withdrawals", "status": "fail", "detail": FINDINGS[1].detail,
                                       "what_to_do": FINDINGS[1].what_to_do}
    assert doctor.to_json_document(FINDINGS[:1], now_ms=NOW_MS)["ok"] is True


@pytest.mark.parametrize("as_of, expected", [
    (None, 123), ("1767227400000", 1_767_227_400_000), ("2026-01-01T00:30", 1_767_227_400_000),
    ("2026-01-01T01:30+01:00", 1_767_227_400_000), ("2026-01-01", 1_767_225_600_000),
])
def test_as_of(as_of: str | None, expected: int) -> None:
    assert doctor.to_now_ms(as_of, wall_ms=123) == expected


def test_bad_as_of_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--as-of"):
        doctor.to_now_ms("yesterday", wall_ms=0)


@pytest.mark.parametrize("kwargs", [{"report_max_age_ms": -1}, {"exchange_timeout_ms": 10}])
def test_doctor_params_are_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="doctor."):
        doctor.DoctorParams(**kwargs)


def test_a_flagged_dead_holding_is_a_warn_row_that_says_what_a_person_must_do() -> None:
    flagged = {**POSITIONS, "unpriced": {"LUNA/USDT": {"amount_base": 100.0, "last_close": 0.5, "since_ms": NOW_MS}}}
    [positions, row] = doctor.check_position_rows(FileFacts(exists=True, document=flagged))
    assert positions.status == "ok" and row.status == "warn" and row.check == "delisted holdings"
    assert "LUNA/USDT 100 (last close 0.5, no live price since" in row.detail
    assert "sell it by hand" in row.what_to_do and "book.ignored_assets" in row.what_to_do
    assert not doctor.has_failure([positions, row])  # the rest trades: doctor exits 0 on it alone
    assert statuses(doctor.check_position_rows(FileFacts(exists=True, document=POSITIONS))) == ["ok"]
    assert statuses(doctor.check_position_rows(FileFacts(exists=True, document=[1]))) == ["fail"]  # no second row


def test_the_positions_row_shows_the_bots_own_cash_in_a_shared_account() -> None:
    ledger = {"cash_quote": "500", "started_ms": NOW_MS, "start_quote": "1000", "flows_quote": "0",
              "booked_since_ms": NOW_MS, "booked": {}}
    shared = {**POSITIONS, "account_cash_quote": 4500.0, "ledger": ledger}
    row = doctor.check_positions(FileFacts(exists=True, document=shared))
    assert row.status == "ok" and "(the bot's own: cash 500.00 of the account's 4500.00)" in row.detail

"""lib.ops.health: stage staleness from run records, series freshness, the table and the problem lines."""

from __future__ import annotations

import pytest

from lib.core.errors import ConfigError, StateError
from lib.core.state import RunRecord
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE
from lib.ops.health import (
    HealthParams,
    check_health,
    check_series,
    check_stages,
    format_age,
    newest_closed_open_ms,
    to_health_table,
    to_run_records,
)

DAY_MS = 1_767_312_000_000  # 2026-01-02T00:00Z
NOW_MS = DAY_MS + 30 * MS_PER_MINUTE  # 00:30: the last closed candles are 23:00 (1h) and 2026-01-01 (1d)
H = MS_PER_HOUR


def record(script: str, status: str, at_ms: int, *, event: str = "finish", error: str = "") -> RunRecord:
    return RunRecord(script=script, run_id=f"{script}-{at_ms}", event=event,  # type: ignore[arg-type]
                     now_ms=at_ms, wall_ms=at_ms, host="vps", status=status,
                     exit_code=0 if status == "ok" else 1, error=error)


def fetch_stage(records: list[RunRecord], params: HealthParams | None = None):  # noqa: ANN201
    stages = check_stages(records, now_ms=NOW_MS, params=params or HealthParams(), stages=("fetch_prices",))
    return stages[0]


@pytest.mark.parametrize(
    ("records", "last_success_ms", "failures", "is_stale"),
    [
        ([record("fetch_prices", "ok", NOW_MS - H)], NOW_MS - H, 0, False),
        ([record("fetch_prices", "ok", NOW_MS - 2 * H)], NOW_MS - 2 * H, 0, False),  # exactly at the limit
        ([record("fetch_prices", "ok", NOW_MS - 2 * H - 1)], NOW_MS - 2 * H - 1, 0, True),
        ([], None, 0, True),  # never ran
        # a start is no success
        ([record("fetch_prices", "running", NOW_MS - H, event="start")], None, 0, True),
        ([record("fetch_prices", "ok", NOW_MS - 5 * H), record("fetch_prices", "failed", NOW_MS - 4 * H),
          record("fetch_prices", "failed", NOW_MS - 3 * H)], NOW_MS - 5 * H, 2, True),
        ([record("fetch_prices", "failed", NOW_MS - 3 * H), record("fetch_prices", "ok", NOW_MS - H)],
         NOW_MS - H, 0, False),
        ([record("fetch_prices", "failed", NOW_MS - 3 * H)], None, 1, True),
        # after now (an --as-of in the past): unseen
        ([record("fetch_prices", "ok", NOW_MS + H)], None, 0, True),
        ([record("rebalance", "ok", NOW_MS - H)], None, 0, True),  # another script's success does not count
        # file order is not time order: the later success wins
        ([record("fetch_prices", "ok", NOW_MS - H), record("fetch_prices", "failed", NOW_MS - 3 * H)],
         NOW_MS - H, 0, False),
    ],
)
def test_stage_staleness(records: list[RunRecord], last_success_ms: int | None, failures: int,
                         is_stale: bool) -> None:
    stage = fetch_stage(records)
    assert (stage.last_success_ms, stage.failures_since_success, stage.is_stale) == (
        last_success_ms, failures, is_stale)
    assert stage.max_age_ms == 2 * H


def test_last_error_is_the_newest_failure() -> None:
    stage = fetch_stage([record("fetch_prices", "failed", NOW_MS - 3 * H, error="DataError: old"),
                         record("fetch_prices", "failed", NOW_MS - 2 * H, error="ExchangeUnavailable: new")])
    assert (stage.last_failure_ms, stage.last_error) == (NOW_MS - 2 * H, "ExchangeUnavailable: new")


def test_a_zero_limit_turns_the_stage_check_off() -> None:
    assert not fetch_stage([], HealthParams(fetch_prices_max_age_ms=0)).is_stale


def test_default_limits_per_stage() -> None:
    params = HealthParams()
    assert [params.max_age_ms(s) for s in ("fetch_prices", "compute_signals", "rebalance")] == [
        2 * H, 26 * H, 26 * H]
    assert params.data_max_staleness_bars == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("fetch_prices_max_age_ms", -1), ("rebalance_max_age_ms", 401 * MS_PER_DAY),
     ("data_max_staleness_bars", -1), ("data_max_staleness_bars", 1001)],
)
def test_bad_params_name_the_key(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"health.{field}"):
        HealthParams(**{field: value})


@pytest.mark.parametrize(
    ("timeframe", "last_open_ms", "lag_bars", "is_stale"),
    [
        ("1h", DAY_MS - H, 0, False),  # the 23:00 candle: the last closed one
        ("1h", DAY_MS - 3 * H, 2, False),  # two bars behind: at the limit
        ("1h", DAY_MS - 4 * H, 3, True),
        ("1h", None, None, True),  # no file
        ("1d", DAY_MS - MS_PER_DAY, 0, False),
        ("1d", DAY_MS - 4 * MS_PER_DAY, 3, True),
    ],
)
def test_series_freshness(timeframe: str, last_open_ms: int | None, lag_bars: int | None,
                          is_stale: bool) -> None:
    (series,) = check_series({("BTC/USDT", timeframe): last_open_ms}, now_ms=NOW_MS, max_staleness_bars=2)
    assert (series.lag_bars, series.is_stale) == (lag_bars, is_stale)
    assert series.expected_open_ms == (DAY_MS - H if timeframe == "1h" else DAY_MS - MS_PER_DAY)


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [([DAY_MS - 2 * H, DAY_MS - H, DAY_MS], DAY_MS - H),  # the forming 00:00 candle is not closed at 00:30
     ([DAY_MS + 5 * H], None),  # only the future of an --as-of run
     ([], None), (None, None)],
)
def test_newest_closed_open_ms(stamps: list[int] | None, expected: int | None) -> None:
    assert newest_closed_open_ms(stamps, now_ms=NOW_MS, timeframe="1h") == expected


@pytest.mark.parametrize(
    ("age_ms", "text"),
    [(0, "0m"), (59 * MS_PER_MINUTE, "59m"), (2 * H, "2h"), (90 * MS_PER_MINUTE, "1h30m"), (26 * H, "1d2h"),
     (3 * MS_PER_DAY, "3d")],
)
def test_format_age(age_ms: int, text: str) -> None:
    assert format_age(age_ms) == text


def healthy_records() -> list[RunRecord]:
    return [record("fetch_prices", "ok", NOW_MS - H), record("compute_signals", "ok", NOW_MS - 2 * H),
            record("rebalance", "ok", NOW_MS - 2 * H)]


def test_all_fresh_is_healthy_and_the_table_lists_every_stage() -> None:
    health = check_health(healthy_records(), {("BTC/USDT", "1h"): DAY_MS - H}, now_ms=NOW_MS,
                          params=HealthParams())
    assert health.is_healthy and health.problems() == []
    table = to_health_table(health)
    assert table.splitlines() == [
        "health: ok",
        "  fetch_prices     ok 1h ago (limit 2h)",
        "  compute_signals  ok 2h ago (limit 1d2h)",
        "  rebalance        ok 2h ago (limit 1d2h)",
        "  data: 1/1 series fresh (limit 2 bar(s) behind)",
    ]


def test_a_stale_stage_and_a_stale_series_are_problems_that_say_what_to_do() -> None:
    records = [record("fetch_prices", "ok", NOW_MS - 5 * H),
               record("fetch_prices", "failed", NOW_MS - H, error="ExchangeUnavailable: timeout"),
               *healthy_records()[1:]]
    newest = {("BTC/USDT", "1h"): DAY_MS - 5 * H, ("ETH/USDT", "1h"): None}
    health = check_health(records, newest, now_ms=NOW_MS, params=HealthParams())
    assert not health.is_healthy
    problems = health.problems()
    assert len(problems) == 3
    assert problems[0] == ("fetch_prices last finished ok 2026-01-01T19:30Z, 5h ago (limit 2h); "
                           "1 failed run(s) since, last error: ExchangeUnavailable: timeout; "
                           "check its cron entry and log")
    assert problems[1].startswith("stale prices: BTC/USDT 1h last candle 2026-01-01T19:00Z, 4 bar(s) behind")
    assert "ETH/USDT 1h no closed candle stored" in problems[2] and "run fetch_prices" in problems[2]
    table = to_health_table(health)
    assert "health: STALE (3 problem(s))" in table
    assert "fetch_prices     STALE: ok 5h ago (limit 2h), 1 failure(s) since" in table
    assert "data: 0/2 series fresh" in table


def test_never_ran_is_said_so() -> None:
    health = check_health([], {}, now_ms=NOW_MS, params=HealthParams(compute_signals_max_age_ms=0))
    assert [p.split(";")[0] for p in health.problems()] == ["fetch_prices has never finished ok",
                                                             "rebalance has never finished ok"]
    assert "compute_signals  never ok (not checked)" in to_health_table(health)


def test_run_records_are_validated() -> None:
    good = record("fetch_prices", "ok", NOW_MS).to_dict()
    assert to_run_records([good]) == [record("fetch_prices", "ok", NOW_MS)]
    with pytest.raises(StateError):
        to_run_records([{**good, "schema_version": 99}])
    with pytest.raises(StateError):
        to_run_records([{key: value for key, value in good.items() if key != "script"}])

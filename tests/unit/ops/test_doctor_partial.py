"""doctor: a fetch_prices run that was only partly done (one dead symbol) is a WARN, not a FAIL: trading goes on."""

from __future__ import annotations

from lib.core.state import RunRecord
from lib.core.timeframes import MS_PER_HOUR
from lib.ops import doctor

NOW_MS = 1_767_225_600_000


def record(status: str, exit_code: int) -> RunRecord:
    return RunRecord(script="fetch_prices", run_id="fetch_prices-x-1", event="finish", now_ms=NOW_MS - MS_PER_HOUR,
                     wall_ms=NOW_MS, host="h", status=status, exit_code=exit_code,
                     error="PartialFailure: 1 of 7 symbol(s) failed: LUNA/USDT: 1d: ExchangeError" if exit_code else "")


def test_partial_fetch_warns_and_a_failed_one_fails() -> None:
    limits = {"fetch_prices": 2 * MS_PER_HOUR}
    [partial] = doctor.check_job_runs([record("partial", 5)], now_ms=NOW_MS, max_age_ms=limits, jobs=("fetch_prices",))
    assert partial.status == "warn" and "partly done" in partial.detail and "LUNA/USDT" in partial.detail
    [failed] = doctor.check_job_runs([record("failed", 1)], now_ms=NOW_MS, max_age_ms=limits, jobs=("fetch_prices",))
    assert failed.status == "fail"

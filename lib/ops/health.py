"""Pure: pipeline health: each stage's last success from the run records, failures since then, and the
freshness of every stored candle series, judged against limits at ``now_ms``.

The report script reads state/runs.jsonl and the candle files and passes them in; this module decides
what is stale. A stage that never succeeded is stale (a fresh install is not healthy until every checked
stage has run once), and a stage that cannot alert for itself (cron stopped calling it, the host was down)
is still caught here, because the check only needs the records it did NOT write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lib.core.errors import ConfigError
from lib.core.state import RunRecord
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, format_ms, last_closed_open_ms, timeframe_ms

STAGES = ("fetch_prices", "compute_signals", "rebalance")
SUCCESS_STATUSES = ("ok", "partial")
"""A "partial" fetch_prices (one dead symbol, the rest fetched) keeps the stage fresh; the dead series itself
goes stale and is reported per series."""
"""The cron stages whose last success the report checks, in pipeline order."""
MAX_AGE_LIMIT_MS = 400 * MS_PER_DAY  # upper bound of a stage limit (a typo guard)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthParams:
    """TOML section ``health``: how old a stage's last success and a candle series may be before it is an
    alert. A stage limit of 0 turns that stage's check off (e.g. a research box that never rebalances)."""

    fetch_prices_max_age_ms: int = 2 * MS_PER_HOUR  # hourly cron + one missed run
    compute_signals_max_age_ms: int = 26 * MS_PER_HOUR  # daily cron + 2h slack
    rebalance_max_age_ms: int = 26 * MS_PER_HOUR
    data_max_staleness_bars: int = 2  # a series may lag the last closed candle by this many bars

    def __post_init__(self) -> None:
        for script in STAGES:
            value = getattr(self, f"{script}_max_age_ms")
            if not 0 <= value <= MAX_AGE_LIMIT_MS:
                raise ConfigError(
                    f"health.{script}_max_age_ms must be in [0, {MAX_AGE_LIMIT_MS}], got {value}")
        bars = self.data_max_staleness_bars
        if not 0 <= bars <= 1000:
            raise ConfigError(f"health.data_max_staleness_bars must be in [0, 1000], got {bars}")

    def max_age_ms(self, script: str) -> int:
        return int(getattr(self, f"{script}_max_age_ms"))


@dataclass(frozen=True, slots=True, kw_only=True)
class StageHealth:
    """One cron stage as seen at ``now_ms``. Ages are ``now_ms - record.now_ms`` (None: never)."""

    script: str
    max_age_ms: int  # 0 = not checked
    last_success_ms: int | None
    last_failure_ms: int | None
    last_error: str
    failures_since_success: int
    is_stale: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesHealth:
    """One stored candle series: its newest closed candle vs the last candle closed at ``now_ms``."""

    symbol: str
    timeframe: str
    last_open_ms: int | None  # None: no file or no closed candle
    expected_open_ms: int
    lag_bars: int | None
    is_stale: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    now_ms: int
    stages: tuple[StageHealth, ...]
    series: tuple[SeriesHealth, ...]
    max_staleness_bars: int
    notes: tuple[str, ...] = ()
    known_failing: tuple[str, ...] = ()  # symbols fetch_prices already alerted as failing: shown, not failed

    @property
    def is_healthy(self) -> bool:
        return not any(stage.is_stale for stage in self.stages) and not any(
            s.is_stale and s.symbol not in self.known_failing for s in self.series)

    def problems(self) -> list[str]:
        """One line per stale thing: what, how old, the limit, and what to do."""
        lines = [_stage_problem(stage, self.now_ms) for stage in self.stages if stage.is_stale]
        lines += [_series_problem(series, self.now_ms, self.max_staleness_bars) for series in self.series
                  if series.is_stale and series.symbol not in self.known_failing]
        return lines


def to_run_records(raw_records: Iterable[Mapping[str, Any]]) -> list[RunRecord]:
    """Validate runs.jsonl lines into RunRecords.

    Raises:
        StateError: a line that is not a valid run record (runs.jsonl is never silently skipped).
    """
    return [RunRecord.from_dict(dict(raw)) for raw in raw_records]


def check_stages(records: Sequence[RunRecord], *, now_ms: int, params: HealthParams,
                 stages: Sequence[str] = STAGES) -> tuple[StageHealth, ...]:
    """Last success, last failure and failures since the last success of each stage.

    Only ``finish`` records at or before ``now_ms`` count (an ``--as-of`` report in the past sees the
    past); they are ordered by their ``now_ms``, ties in file order.
    """
    finished = sorted((record for record in records if record.event == "finish" and record.now_ms <= now_ms),
                      key=lambda record: record.now_ms)
    out: list[StageHealth] = []
    for script in stages:
        own = [record for record in finished if record.script == script]
        success_at = [index for index, record in enumerate(own) if record.status in SUCCESS_STATUSES]
        after = own[success_at[-1] + 1:] if success_at else own
        failures = [record for record in after if record.status not in SUCCESS_STATUSES]
        failed = [record for record in own if record.status not in SUCCESS_STATUSES]
        last_success_ms = own[success_at[-1]].now_ms if success_at else None
        limit_ms = params.max_age_ms(script)
        is_stale = limit_ms > 0 and (last_success_ms is None or now_ms - last_success_ms > limit_ms)
        out.append(StageHealth(
            script=script, max_age_ms=limit_ms, last_success_ms=last_success_ms,
            last_failure_ms=failed[-1].now_ms if failed else None,
            last_error=failed[-1].error if failed else "",
            failures_since_success=len(failures), is_stale=is_stale,
        ))
    return tuple(out)


def check_series(last_open_ms: Mapping[tuple[str, str], int | None], *, now_ms: int,
                 max_staleness_bars: int) -> tuple[SeriesHealth, ...]:
    """Freshness of each ``(symbol, timeframe) -> newest stored candle open (ms)``, the rule compute_signals
    applies: stale when older than ``max_staleness_bars`` bars before the last closed candle at ``now_ms``.
    Pass :func:`newest_closed_open_ms` values (candles after that one are not counted)."""
    out: list[SeriesHealth] = []
    for (symbol, timeframe), last in sorted(last_open_ms.items()):
        expected_ms, step_ms = last_closed_open_ms(now_ms, timeframe), timeframe_ms(timeframe)
        lag = None if last is None else max(0, (expected_ms - last) // step_ms)
        out.append(SeriesHealth(symbol=symbol, timeframe=timeframe, last_open_ms=last,
                                expected_open_ms=expected_ms, lag_bars=lag,
                                is_stale=lag is None or lag > max_staleness_bars))
    return tuple(out)


def newest_closed_open_ms(timestamps_ms: Sequence[int] | None, *, now_ms: int, timeframe: str) -> int | None:
    """The newest candle open time that had closed at ``now_ms`` (None: none stored); later candles are the
    forming one or, for an ``--as-of`` run, the future."""
    if timestamps_ms is None:
        return None
    last_closed = last_closed_open_ms(now_ms, timeframe)
    return max((int(stamp) for stamp in timestamps_ms if stamp <= last_closed), default=None)


def check_health(records: Sequence[RunRecord], last_open_ms: Mapping[tuple[str, str], int | None], *,
                 now_ms: int, params: HealthParams, notes: Sequence[str] = (),
                 known_failing: Iterable[str] = ()) -> HealthReport:
    """``known_failing``: symbols fetch_prices already alerted (state/symbol_failures.json); their stale series
    are listed every day but do not fail the report (one dead symbol must not fail every day's chain)."""
    return HealthReport(
        now_ms=now_ms, stages=check_stages(records, now_ms=now_ms, params=params),
        series=check_series(last_open_ms, now_ms=now_ms, max_staleness_bars=params.data_max_staleness_bars),
        max_staleness_bars=params.data_max_staleness_bars, notes=tuple(notes),
        known_failing=tuple(sorted(known_failing)),
    )


def format_age(age_ms: int) -> str:
    """``90 * 60_000 -> "1h30m"``; days and hours above a day, minutes below an hour."""
    if age_ms < MS_PER_HOUR:
        return f"{age_ms // MS_PER_MINUTE}m"
    if age_ms < MS_PER_DAY:
        hours, rest = divmod(age_ms, MS_PER_HOUR)
        return f"{hours}h{rest // MS_PER_MINUTE:02d}m" if rest >= MS_PER_MINUTE else f"{hours}h"
    days, rest = divmod(age_ms, MS_PER_DAY)
    return f"{days}d{rest // MS_PER_HOUR}h" if rest >= MS_PER_HOUR else f"{days}d"


def to_health_table(report: HealthReport) -> str:
    """Plain-text health block for the Telegram summary: one line per stage, stale series listed."""
    status = "ok" if report.is_healthy else f"STALE ({len(report.problems())} problem(s))"
    lines = [f"health: {status}"]
    for stage in report.stages:
        lines.append(f"  {stage.script:<16} {_stage_state(stage, report.now_ms)}")
    fresh = [series for series in report.series if not series.is_stale]
    lines.append(f"  data: {len(fresh)}/{len(report.series)} series fresh"
                 + (f" (limit {report.max_staleness_bars} bar(s) behind)" if report.series else ""))
    lines += [f"  STALE {s.symbol} {s.timeframe}: {_series_last(s)}"
              + (" (fetch_prices alerted it as failing; see doctor)" if s.symbol in report.known_failing else "")
              for s in report.series if s.is_stale]
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def _stage_state(stage: StageHealth, now_ms: int) -> str:
    last = ("never ok" if stage.last_success_ms is None
            else f"ok {format_age(now_ms - stage.last_success_ms)} ago")
    limit = "not checked" if stage.max_age_ms == 0 else f"limit {format_age(stage.max_age_ms)}"
    failures = f", {stage.failures_since_success} failure(s) since" if stage.failures_since_success else ""
    return f"{'STALE: ' if stage.is_stale else ''}{last} ({limit}){failures}"


def _stage_problem(stage: StageHealth, now_ms: int) -> str:
    if stage.last_success_ms is None:
        head = f"{stage.script} has never finished ok"
    else:
        head = (f"{stage.script} last finished ok {format_ms(stage.last_success_ms)}, "
                f"{format_age(now_ms - stage.last_success_ms)} ago (limit {format_age(stage.max_age_ms)})")
    failures = f"; {stage.failures_since_success} failed run(s) since" if stage.failures_since_success else ""
    has_error = stage.failures_since_success and stage.last_error
    error = f", last error: {stage.last_error[:200]}" if has_error else ""
    return f"{head}{failures}{error}; check its cron entry and log"


def _series_last(series: SeriesHealth) -> str:
    if series.last_open_ms is None:
        return "no closed candle stored"
    return f"last candle {format_ms(series.last_open_ms)}, {series.lag_bars} bar(s) behind"


def _series_problem(series: SeriesHealth, now_ms: int, max_staleness_bars: int) -> str:
    return (f"stale prices: {series.symbol} {series.timeframe} {_series_last(series)} at {format_ms(now_ms)} "
            f"(limit {max_staleness_bars} bar(s) behind); run fetch_prices or check the exchange")

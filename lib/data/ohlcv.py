"""Pure: the candle-frame schema and the rules that turn raw exchange rows into stored candles.

fetch_prices reads the stored frame, asks here what to request (`next_since_ms`), converts the page
(`to_frame`), drops the forming candle (`drop_forming`), checks it (`validate`, `find_gaps`) and
merges (`merge`); this module decides, the script does the I/O. A missing candle is never filled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Literal, get_args

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.core.timeframes import floor_ms, format_ms, timeframe_ms

OHLCV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
"""Candle frame columns: candle OPEN time (ms UTC), prices in quote, volume in base; sorted, unique."""
OHLCV_DTYPES: Mapping[str, str] = {
    "timestamp": "int64", "open": "float64", "high": "float64",
    "low": "float64", "close": "float64", "volume": "float64",
}  # fmt: skip
"""dtype of each candle column (the Parquet files carry the same)."""
PRICE_COLUMNS = ("open", "high", "low", "close")
KNOWN_GAP_COLUMNS = ("start_ms", "end_ms")
"""Known-gaps frame: inclusive open times of missing candles the exchange confirmed it does not have."""
KNOWN_GAP_DTYPES: Mapping[str, str] = {"start_ms": "int64", "end_ms": "int64"}

ProblemKind = Literal[
    "duplicate", "unsorted", "off_grid", "non_finite", "non_positive_price",
    "ohlc_inconsistent", "negative_volume", "jump",
]  # fmt: skip
PROBLEM_KINDS: tuple[ProblemKind, ...] = get_args(ProblemKind)
"""Every kind `validate` reports, in the order problems at one timestamp are listed."""
SUSPICIOUS_KINDS: frozenset[str] = frozenset({"jump"})
"""Kinds that may be real market moves: re-fetch once, keep if they persist, report. All others are fatal."""


@dataclass(frozen=True, slots=True)
class CandleProblem:
    """One thing wrong with one candle; ``timestamp_ms`` is the offending candle's open time."""

    timestamp_ms: int
    kind: ProblemKind
    detail: str


def check_columns(frame: pd.DataFrame, dtypes: Mapping[str, str], *, what: str) -> None:
    """Raise DataError unless ``frame`` has exactly these columns, in this order, with these dtypes."""
    if tuple(frame.columns) != tuple(dtypes):
        raise DataError(f"{what} frame has columns {list(frame.columns)}, expected {list(dtypes)}")
    wrong = [f"{name} is {frame[name].dtype}" for name, dtype in dtypes.items() if frame[name].dtype != dtype]
    if wrong:
        raise DataError(f"{what} frame has wrong dtypes ({', '.join(wrong)}); expected {dict(dtypes)}")


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({name: np.array([], dtype=dtype) for name, dtype in OHLCV_DTYPES.items()})


def empty_gaps() -> pd.DataFrame:
    return pd.DataFrame({name: np.array([], dtype=dtype) for name, dtype in KNOWN_GAP_DTYPES.items()})


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def to_frame(rows: Sequence[Sequence[float]]) -> pd.DataFrame:
    """ccxt rows ``[open_time_ms, open, high, low, close, volume]`` -> a frame with OHLCV_COLUMNS.

    Rows keep their order (validate reports disorder). NaN prices pass through for `validate` to
    report; a wrong row length, a non-number (None, str, bool) or a non-integral time raises DataError.
    """
    for index, row in enumerate(rows):
        if isinstance(row, str | bytes) or not hasattr(row, "__len__") or len(row) != len(OHLCV_COLUMNS):
            raise DataError(f"candle row {index} is {row!r}; expected [{', '.join(OHLCV_COLUMNS)}]")
        for name, value in zip(OHLCV_COLUMNS, row, strict=True):
            if not _is_number(value):
                raise DataError(f"candle row {index}: {name} is {value!r}, not a number")
        if not (math.isfinite(row[0]) and float(row[0]).is_integer()):
            raise DataError(f"candle row {index}: timestamp {row[0]!r} is not a whole number of ms")
    if len(rows) == 0:
        return empty_frame()
    frame = pd.DataFrame({"timestamp": np.array([int(row[0]) for row in rows], dtype=np.int64)})
    values = np.array([[float(value) for value in row[1:]] for row in rows], dtype=np.float64)
    for position, name in enumerate(OHLCV_COLUMNS[1:]):
        frame[name] = values[:, position]
    return frame


def drop_forming(candles: pd.DataFrame, timeframe: str, *, now_ms: int) -> pd.DataFrame:
    """Keep only candles that had closed at ``now_ms`` (open + timeframe <= now_ms)."""
    closed = candles["timestamp"].to_numpy() + timeframe_ms(timeframe) <= now_ms
    return candles.loc[closed].reset_index(drop=True)


def validate(
    candles: pd.DataFrame, timeframe: str, *, max_jump_frac: float, previous_close: float | None = None
) -> list[CandleProblem]:
    """Every problem in ``candles`` (rows in the given order), sorted by time then PROBLEM_KINDS.

    ``previous_close`` is the close of the last STORED candle, so a jump at the seam between the
    file and a new page is caught too. The caller decides: any `is_fatal` problem -> refuse to
    write; "jump" -> re-fetch once, then keep and report.

    Raises:
        DataError: the frame does not have OHLCV_COLUMNS / OHLCV_DTYPES (nothing else can be checked).
    """
    check_columns(candles, OHLCV_DTYPES, what="candle")
    if not max_jump_frac > 0:
        raise ConfigError(f"max_jump_frac must be > 0, got {max_jump_frac}")
    problems = (
        _order_problems(candles, timeframe)
        + _value_problems(candles)
        + _jump_problems(candles, max_jump_frac=max_jump_frac, previous_close=previous_close)
    )
    return sorted(problems, key=lambda problem: (problem.timestamp_ms, PROBLEM_KINDS.index(problem.kind)))


def is_fatal(problem: CandleProblem) -> bool:
    """False only for kinds that can be genuine market moves (SUSPICIOUS_KINDS)."""
    return problem.kind not in SUSPICIOUS_KINDS


def describe_problems(problems: Sequence[CandleProblem], *, max_listed: int = 5) -> str:
    """One line for a log or alert: the count, then the first few problems with their times."""
    listed = "; ".join(f"{format_ms(p.timestamp_ms)} {p.kind} ({p.detail})" for p in problems[:max_listed])
    more = f"; +{len(problems) - max_listed} more" if len(problems) > max_listed else ""
    return f"{len(problems)} candle problem(s): {listed}{more}"


def _flag(timestamps: np.ndarray, mask: np.ndarray, kind: ProblemKind, detail: str) -> list[CandleProblem]:
    return [CandleProblem(int(timestamps[i]), kind, detail) for i in np.flatnonzero(mask)]


def _order_problems(candles: pd.DataFrame, timeframe: str) -> list[CandleProblem]:
    timestamps = candles["timestamp"].to_numpy()
    step = timeframe_ms(timeframe)
    gaps = np.diff(timestamps)
    unsorted = np.concatenate([[False], gaps < 0])
    # strictly increasing (a stored file, always) has no duplicate: skip the hashing (~1 ms per 35k candles)
    duplicated = np.zeros(len(timestamps), dtype=bool) if (gaps > 0).all() else candles["timestamp"].duplicated()
    return (
        _flag(timestamps, np.asarray(duplicated), "duplicate", "open time seen earlier")
        + _flag(timestamps, unsorted, "unsorted", "open time earlier than the previous row's")
        + _flag(timestamps, timestamps % step != 0, "off_grid", f"open time not a multiple of {timeframe}")
    )


def _value_problems(candles: pd.DataFrame) -> list[CandleProblem]:
    """Per-row value checks; NaN compares False, so a NaN row is reported only as non_finite."""
    timestamps = candles["timestamp"].to_numpy()
    values = candles[list(OHLCV_COLUMNS[1:])].to_numpy()
    open_, high, low, close, volume = values.T
    problems: list[CandleProblem] = []
    names = np.array(OHLCV_COLUMNS[1:])
    for i in np.flatnonzero(~np.isfinite(values).all(axis=1)):
        bad = ", ".join(names[~np.isfinite(values[i])])
        problems.append(CandleProblem(int(timestamps[i]), "non_finite", f"{bad} not finite"))
    for i in np.flatnonzero((values[:, :4] <= 0).any(axis=1)):
        bad = ", ".join(f"{name}={values[i, j]}" for j, name in enumerate(PRICE_COLUMNS) if values[i, j] <= 0)
        problems.append(CandleProblem(int(timestamps[i]), "non_positive_price", bad))
    inconsistent = (high < np.maximum(np.maximum(open_, close), low)) | (low > np.minimum(open_, close))
    for i in np.flatnonzero(inconsistent):
        detail = f"open={open_[i]} high={high[i]} low={low[i]} close={close[i]}"
        problems.append(CandleProblem(int(timestamps[i]), "ohlc_inconsistent", detail))
    for i in np.flatnonzero(volume < 0):
        problems.append(CandleProblem(int(timestamps[i]), "negative_volume", f"volume={volume[i]}"))
    return problems


def _jump_problems(
    candles: pd.DataFrame, *, max_jump_frac: float, previous_close: float | None
) -> list[CandleProblem]:
    """Close-to-close moves beyond the bound; bad closes are skipped (already reported as fatal)."""
    timestamps = candles["timestamp"].to_numpy()
    close = candles["close"].to_numpy()
    before = np.concatenate([[np.nan if previous_close is None else previous_close], close[:-1]])
    usable = np.isfinite(close) & np.isfinite(before) & (close > 0) & (before > 0)
    move = np.zeros_like(close)
    np.divide(close, before, out=move, where=usable)
    move = np.where(usable, move - 1.0, 0.0)
    problems = []
    for i in np.flatnonzero(np.abs(move) > max_jump_frac):
        source = "last stored close" if i == 0 else "previous close"
        detail = f"close {close[i]} vs {source} {before[i]} ({move[i]:+.1%}, bound ±{max_jump_frac:.0%})"
        problems.append(CandleProblem(int(timestamps[i]), "jump", detail))
    return problems


def _ceil_to(time_ms: int, step: int) -> int:
    return -(-time_ms // step) * step


def _floor_to(time_ms: int, step: int) -> int:
    return time_ms - time_ms % step


def _gap_intervals(known_gaps: pd.DataFrame | None) -> list[tuple[int, int]]:
    if known_gaps is None or known_gaps.empty:
        return []
    check_columns(known_gaps, KNOWN_GAP_DTYPES, what="known gaps")
    intervals = [(int(start), int(end)) for start, end in known_gaps.itertuples(index=False)]
    for start, end in intervals:
        if start > end:
            raise DataError(f"known gap {format_ms(start)}..{format_ms(end)} ends before it starts")
    return intervals


def _subtract(gap: tuple[int, int], known: list[tuple[int, int]], step: int) -> list[tuple[int, int]]:
    """The grid parts of ``gap`` not covered by any known interval."""
    pieces = [gap]
    for known_start, known_end in known:
        remaining = []
        for start, end in pieces:
            if known_end < start or known_start > end:
                remaining.append((start, end))
                continue
            if (left_end := _floor_to(known_start - 1, step)) >= start:
                remaining.append((start, left_end))
            if (right_start := _ceil_to(known_end + 1, step)) <= end:
                remaining.append((right_start, end))
        pieces = remaining
    return pieces


def find_gaps(
    candles: pd.DataFrame,
    timeframe: str,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    known_gaps: pd.DataFrame | None = None,
) -> list[tuple[int, int]]:
    """Missing candle open times as inclusive ``(first_ms, last_ms)`` runs, oldest first.

    The checked range is the timeframe grid inside [start_ms, end_ms] (default: first and last
    candle); pass ``end_ms=last_closed_open_ms(now_ms, timeframe)`` to also catch a missing tail
    without counting the forming candle. Open times inside ``known_gaps`` (KNOWN_GAP_COLUMNS) are
    not reported; off-grid rows are ignored here (`validate` reports them).

    >>> find_gaps(to_frame([[0, 1, 1, 1, 1, 0], [3 * 3_600_000, 1, 1, 1, 1, 0]]), "1h")
    [(3600000, 7200000)]
    """
    step = timeframe_ms(timeframe)
    timestamps = np.unique(candles["timestamp"].to_numpy())
    timestamps = timestamps[timestamps % step == 0]
    if not timestamps.size and (start_ms is None or end_ms is None):
        return []  # no candles and an open-ended range: nothing defines where the grid ends
    low = int(timestamps[0]) if start_ms is None else _ceil_to(start_ms, step)
    high = int(timestamps[-1]) if end_ms is None else _floor_to(end_ms, step)
    if low > high:
        return []
    inside = timestamps[(timestamps >= low) & (timestamps <= high)]
    edges = np.concatenate([[low - step], inside, [high + step]])
    starts = np.flatnonzero(np.diff(edges) > step)
    raw_gaps = [(int(edges[i]) + step, int(edges[i + 1]) - step) for i in starts]
    known = _gap_intervals(known_gaps)
    return [piece for gap in raw_gaps for piece in _subtract(gap, known, step)]


def merge_gaps(
    known: pd.DataFrame | None, new_gaps: Sequence[tuple[int, int]], *, timeframe: str | None = None
) -> pd.DataFrame:
    """Union of known gap ranges as a KNOWN_GAP_COLUMNS frame, sorted, overlaps merged.

    Ranges that touch are merged too: contiguous in ms, or, given ``timeframe``, one candle apart.
    """
    intervals = sorted(_gap_intervals(known) + _gap_intervals(gaps_to_frame(new_gaps)))
    reach = timeframe_ms(timeframe) if timeframe is not None else 1
    merged: list[list[int]] = []
    for start, end in intervals:
        if merged and start <= merged[-1][1] + reach:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return gaps_to_frame([(start, end) for start, end in merged])


def gaps_to_frame(gaps: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """Inclusive ``(start_ms, end_ms)`` pairs (as `find_gaps` returns) -> a KNOWN_GAP_COLUMNS frame."""
    return pd.DataFrame(
        {
            "start_ms": np.array([int(start) for start, _ in gaps], dtype=np.int64),
            "end_ms": np.array([int(end) for _, end in gaps], dtype=np.int64),
        }
    )


def merge(stored: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Union by timestamp, sorted and unique; where both have a candle the stored one wins.

    Stored candles were validated when written, so a different re-fetched value is reported
    (`conflicting_timestamps`), never silently applied. Idempotent: ``merge(x, x)`` equals ``x``.
    """
    check_columns(stored, OHLCV_DTYPES, what="stored candle")
    check_columns(new, OHLCV_DTYPES, what="new candle")
    return union_by_timestamp(stored, new, empty=empty_frame())


def union_by_timestamp(stored: pd.DataFrame, new: pd.DataFrame, *, empty: pd.DataFrame) -> pd.DataFrame:
    """Rows of both frames, sorted by a unique ``timestamp``; on a shared timestamp the stored row wins."""
    parts = [frame for frame in (stored, new) if not frame.empty]  # concat warns on empty parts
    if not parts:
        return empty
    combined = pd.concat(parts, ignore_index=True).drop_duplicates(subset="timestamp", keep="first")
    return combined.sort_values("timestamp", kind="stable").reset_index(drop=True)


def conflicting_timestamps(stored: pd.DataFrame, new: pd.DataFrame) -> list[int]:
    """Open times present in both frames whose OHLCV values differ (NaN equals NaN), ascending."""
    joined = stored.merge(new, on="timestamp", suffixes=("_stored", "_new"))
    differs = np.zeros(len(joined), dtype=bool)
    for name in OHLCV_COLUMNS[1:]:
        old, fresh = joined[f"{name}_stored"].to_numpy(), joined[f"{name}_new"].to_numpy()
        differs |= ~((old == fresh) | (np.isnan(old) & np.isnan(fresh)))
    return sorted({int(time_ms) for time_ms in joined["timestamp"].to_numpy()[differs]})


def next_since_ms(stored: pd.DataFrame | None, timeframe: str, *, backfill_start_ms: int) -> int:
    """First candle open time to request: one timeframe after the last stored candle, or the
    backfill start floored to the grid when nothing is stored yet."""
    if stored is None or stored.empty:
        return floor_ms(backfill_start_ms, timeframe)
    return int(stored["timestamp"].max()) + timeframe_ms(timeframe)


def resample(
    candles: pd.DataFrame, source_timeframe: str, target_timeframe: str, *, allow_gaps: bool = False
) -> pd.DataFrame:
    """Aggregate to a longer timeframe: open first, high max, low min, close last, volume sum.

    Only complete target candles are returned: every source candle present, or with
    ``allow_gaps=True`` (exchange maintenance windows) the target period merely ended within the
    data. Target candles align to the epoch, like `lib.core.timeframes.floor_ms`.
    """
    source_ms, target_ms = timeframe_ms(source_timeframe), timeframe_ms(target_timeframe)
    if target_ms < source_ms or target_ms % source_ms:
        raise ConfigError(f"cannot resample {source_timeframe} to {target_timeframe}: not a whole multiple")
    check_columns(candles, OHLCV_DTYPES, what="candle")
    if candles.empty:
        return empty_frame()
    ordered = candles.sort_values("timestamp", kind="stable")
    buckets = ordered["timestamp"] - ordered["timestamp"] % target_ms
    grouped = ordered.groupby(buckets.rename("timestamp"), sort=True)
    result = grouped.agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"),
        close=("close", "last"), volume=("volume", "sum"),
    )  # fmt: skip
    if allow_gaps:
        complete = result.index + target_ms - source_ms <= int(ordered["timestamp"].iloc[-1])
    else:
        complete = grouped.size().to_numpy() == target_ms // source_ms
    return result.loc[complete].reset_index().astype(dict(OHLCV_DTYPES))

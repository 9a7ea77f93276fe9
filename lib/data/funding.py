"""Pure: the funding-rate frame schema, its validator and merge rules (perpetual futures).

Like `lib.data.ohlcv` for candles: fetch_prices asks here what to request and what to write, and does
the I/O itself. A rate is a fraction per settlement (0.0001 = 0.01 %); positive = longs pay shorts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.core.timeframes import format_ms
from lib.data.ohlcv import check_columns, union_by_timestamp

FUNDING_COLUMNS = ("timestamp", "rate")
"""Funding frame columns: settlement time (int64 ms UTC) and rate (float64 fraction per settlement)."""
FUNDING_DTYPES: Mapping[str, str] = {"timestamp": "int64", "rate": "float64"}
MAX_LISTED = 3
"""How many offending settlement times one validation message names."""
SETTLEMENT_GRID_MS = 3_600_000
"""Settlements happen on the hour (every 8 h, 4 h or 1 h); exchanges stamp some a few ms late (Binance:
08:00:00.011), which would keep them off the hourly bars the carry sleeve puts each rate on."""


def empty_funding_frame() -> pd.DataFrame:
    return pd.DataFrame({name: np.array([], dtype=dtype) for name, dtype in FUNDING_DTYPES.items()})


def to_funding_frame(rows: Sequence[tuple[int, float]], *, round_to_ms: int | None = None) -> pd.DataFrame:
    """``(settlement_time_ms, rate)`` pairs -> a frame with FUNDING_COLUMNS, rows in the given order.

    ``round_to_ms`` rounds times to the nearest multiple (e.g. one hour): exchanges stamp some
    settlements a few ms late, which would keep them off the candle grid.

    Raises:
        DataError: a row that is not a pair of numbers, or a time that is not a whole number of ms.
    """
    for index, row in enumerate(rows):
        if isinstance(row, str | bytes) or not hasattr(row, "__len__") or len(row) != len(FUNDING_COLUMNS):
            raise DataError(f"funding row {index} is {row!r}; expected (timestamp_ms, rate)")
        for name, value in zip(FUNDING_COLUMNS, row, strict=True):
            if isinstance(value, bool) or not isinstance(value, Real):
                raise DataError(f"funding row {index}: {name} is {value!r}, not a number")
        if not (math.isfinite(row[0]) and float(row[0]).is_integer()):
            raise DataError(f"funding row {index}: timestamp {row[0]!r} is not a whole number of ms")
    if round_to_ms is not None and round_to_ms <= 0:
        raise ConfigError(f"round_to_ms must be > 0, got {round_to_ms}")
    times_ms = np.array([int(row[0]) for row in rows], dtype=np.int64)
    if round_to_ms is not None:
        times_ms = _round_times(times_ms, round_to_ms)
    rates = np.array([float(row[1]) for row in rows], dtype=np.float64)
    return pd.DataFrame({"timestamp": times_ms, "rate": rates})


def _round_times(times_ms: np.ndarray, step_ms: int) -> np.ndarray:
    return (times_ms + step_ms // 2) // step_ms * step_ms


def on_the_hour(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each settlement time rounded to the nearest hour (SETTLEMENT_GRID_MS), as stored."""
    check_columns(frame, FUNDING_DTYPES, what="funding")
    return frame.assign(timestamp=_round_times(frame["timestamp"].to_numpy(), SETTLEMENT_GRID_MS))


def _listed(times_ms: np.ndarray) -> str:
    shown = ", ".join(format_ms(int(time_ms)) for time_ms in times_ms[:MAX_LISTED])
    return shown + (f" (+{len(times_ms) - MAX_LISTED} more)" if len(times_ms) > MAX_LISTED else "")


def validate_funding(frame: pd.DataFrame, *, max_abs_rate: float) -> list[str]:
    """Every problem as one message per kind (empty list = fine); any problem means do not write.

    Checks: unique and ascending times, finite rates, ``|rate| <= max_abs_rate``.

    Raises:
        DataError: the frame does not have FUNDING_COLUMNS / FUNDING_DTYPES.
    """
    check_columns(frame, FUNDING_DTYPES, what="funding")
    times_ms = frame["timestamp"].to_numpy()
    rates = frame["rate"].to_numpy()
    checks = (
        (frame["timestamp"].duplicated().to_numpy(), "duplicate funding time(s)"),
        (np.concatenate([[False], np.diff(times_ms) < 0]), "funding time(s) earlier than the previous row's"),
        (~np.isfinite(rates), "non-finite funding rate(s)"),
        (np.isfinite(rates) & (np.abs(rates) > max_abs_rate), f"funding rate(s) beyond ±{max_abs_rate}"),
    )
    return [f"{int(mask.sum())} {what} at {_listed(times_ms[mask])}" for mask, what in checks if mask.any()]


def merge_funding(stored: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Union by timestamp, sorted and unique; where both have a settlement the stored rate wins."""
    check_columns(stored, FUNDING_DTYPES, what="stored funding")
    check_columns(new, FUNDING_DTYPES, what="new funding")
    return union_by_timestamp(stored, new, empty=empty_funding_frame())


def next_funding_since_ms(stored: pd.DataFrame | None, *, backfill_start_ms: int) -> int:
    """First settlement time to request: 1 ms after the last stored one (settlement intervals vary
    by exchange and symbol, and ``since`` is inclusive), or the backfill start. The stored time is on the
    hour (``on_the_hour``), so a late-stamped last settlement comes back once and merges away."""
    if stored is None or stored.empty:
        return backfill_start_ms
    return int(stored["timestamp"].max()) + 1

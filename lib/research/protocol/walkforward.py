"""Pure: calendar-time walk-forward over a returns matrix, with purge and embargo, stitched out of sample.

Windows are spans of calendar time ("730D", "24M"), never bar counts, so daily and hourly research share
one layout. Each test window is preceded by a train window that ENDS ``purge_days + embargo_days`` days
before the test starts: purge drops the train days whose outcome could overlap the test (a daily return
is known at the next close, so one day suffices for daily bars), embargo adds a further gap against
serial correlation. In a forward-only walk the train never lies after the test, so the two simply add up.

In each train window the configuration with the best ``criterion`` (per-period Sharpe by default) is
chosen; its returns on the test window are the out-of-sample piece. The matrix comes from one continuous
causal backtest per configuration, so a piece is what that configuration earned on those days; the cost
of switching the book between configurations at a window boundary is not in it (stated in the report).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.research.protocol.frame import ONE_DAY, check_returns_matrix, sharpe_per_period

Criterion = Callable[[pd.DataFrame], pd.Series]
"""criterion(train returns) -> one score per column; higher is better, NaN never wins."""

_SPAN = re.compile(r"^\s*(\d+)\s*([DM])\s*$", re.IGNORECASE)


def parse_span(text: str) -> pd.DateOffset:
    """``"730D"`` -> 730 days, ``"6M"`` -> 6 calendar months (ConfigError otherwise)."""
    match = _SPAN.match(text)
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f"window span {text!r} must look like 730D or 6M (a positive count of days or months)")
    count, unit = int(match.group(1)), match.group(2).upper()
    return pd.DateOffset(days=count) if unit == "D" else pd.DateOffset(months=count)


@dataclass(frozen=True, slots=True, kw_only=True)
class CalendarLayout:
    """Walk-forward layout in calendar time (``train``/``test``: spans for ``parse_span``)."""

    train: str = "730D"
    test: str = "180D"
    purge_days: int = 1
    embargo_days: int = 0
    expanding: bool = False  # True: every train window starts at the first day

    def __post_init__(self) -> None:
        parse_span(self.train)
        parse_span(self.test)
        if self.purge_days < 0 or self.embargo_days < 0:
            raise ConfigError("walk-forward purge_days and embargo_days must be >= 0")

    @property
    def gap(self) -> pd.Timedelta:
        return ONE_DAY * (self.purge_days + self.embargo_days)


@dataclass(frozen=True, slots=True)
class CalendarWindow:
    """One step; all four are days at 00:00 UTC, both ends inclusive, train_end + gap < test_start."""

    number: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


@dataclass(frozen=True, slots=True)
class WalkForwardOutcome:
    """The stitched out-of-sample returns and one row per window: dates, chosen column, scores."""

    oos_returns: pd.Series
    table: pd.DataFrame


def calendar_windows(index: pd.DatetimeIndex, layout: CalendarLayout) -> list[CalendarWindow]:
    """Consecutive non-overlapping test windows of ``layout.test``; the first test starts once a full
    ``layout.train`` span plus the gap fits before it. A last partial test window of >= 2 days is kept.

    Raises:
        DataError: the index is too short for one train span plus the gap and 2 test days.
    """
    train, test = parse_span(layout.train), parse_span(layout.test)
    first, last = index[0], index[-1]
    test_start = first + train + layout.gap
    windows: list[CalendarWindow] = []
    while test_start + ONE_DAY <= last:
        test_end = min(test_start + test - ONE_DAY, last)
        train_end = test_start - layout.gap - ONE_DAY
        train_start = first if layout.expanding else train_end - train + ONE_DAY
        windows.append(CalendarWindow(len(windows), max(train_start, first), train_end, test_start, test_end))
        test_start = test_end + ONE_DAY
    if not windows:
        raise DataError(f"walk-forward: {len(index)} days are too few for train {layout.train} + gap "
                        f"{layout.gap.days}D + 2 test days")
    return windows


def sharpe_criterion(train: pd.DataFrame) -> pd.Series:
    """Per-period Sharpe of each column over the train window (the default selection criterion)."""
    return pd.Series(sharpe_per_period(train.to_numpy(dtype=float)), index=train.columns)


def best_column(scores: pd.Series, tie_break: pd.Series | None = None) -> str:
    """The column with the highest score; NaN never wins (all NaN: the first column). Exact ties go
    to the lowest ``tie_break`` (e.g. turnover), then to the earlier column."""
    values = scores.to_numpy(dtype=float)
    ranked = np.where(np.isfinite(values), values, -np.inf)
    top = np.flatnonzero(ranked == ranked.max())
    if tie_break is not None and len(top) > 1:
        breaks = tie_break.reindex(scores.index).to_numpy(dtype=float)[top]
        top = top[breaks == np.nanmin(breaks)] if np.isfinite(breaks).any() else top
    return str(scores.index[int(top[0])])


def walk_forward(
    returns: pd.DataFrame, layout: CalendarLayout, *, criterion: Criterion = sharpe_criterion,
    tie_break: pd.Series | None = None,
) -> WalkForwardOutcome:  # fmt: skip
    """Choose on each train window by ``criterion`` (which sees ONLY the train rows), trade the choice on
    the following test window, stitch the test windows into one out-of-sample daily return series."""
    check_returns_matrix(returns)
    rows, pieces = [], []
    for window in calendar_windows(pd.DatetimeIndex(returns.index), layout):
        train = returns.loc[window.train_start : window.train_end]
        scores = criterion(train)
        chosen = best_column(scores, tie_break)
        piece = returns.loc[window.test_start : window.test_end, chosen]
        pieces.append(piece)
        test_score = criterion(returns.loc[window.test_start : window.test_end, [chosen]]).iloc[0]
        rows.append({
            "window": window.number, "train_start": window.train_start, "train_end": window.train_end,
            "test_start": window.test_start, "test_end": window.test_end, "chosen": chosen,
            "train_score": float(scores[chosen]), "test_score": float(test_score),
        })  # fmt: skip
    oos = pd.concat(pieces).rename("walk_forward_oos")
    return WalkForwardOutcome(oos_returns=oos, table=pd.DataFrame(rows))

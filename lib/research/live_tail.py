"""Pure: the live pre-trade tail-risk rule (lib.execution.tail_risk_checks) as factors for the backtest's fills.

Live, each rebalance fits the target book to ``risk.max_var_99_frac`` / ``max_cvar_99_frac`` (99 % 1-day VaR /
CVaR, the worse of historical and Gaussian) on the daily returns of the stored candles' complete UTC days, the
last ``risk.var_lookback_days`` of them (lib.core.tail_fit). The backtest's tick that fills at bar ``f``'s open
is the live run right after bar ``f - 1`` closed: it sees the days whose last candle closed by then, i.e. the
days that END at or before bar ``f``'s open, never a later one (tests/unit/research/test_live_tail.py truncates
the future to show it).

Cheap: the daily closes are taken once per run (``day_closes``: lib.core.daily_returns.daily_closes per
symbol), their returns once; the ticks that see the same last day share one window and are evaluated together
(lib.core.tail_fit.book_scales: one matrix product and one quantile per day). The window is the live one when
every day of it has a close of some symbol of the book (the book's calendar is then the panel's); otherwise
(a book of coins younger than the window) the window is cut from the book's own calendar, as live's
lib.core.daily_returns does (tests/unit/research/test_live_tail.py holds every tick to live's fit_book).
Assets the backtest cannot trade at a bar (no open) are scaled like the others (live holds a symbol without a
live price fixed): a rare edge, not modelled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.core.tail_fit import fitting_scales, unknown_books
from lib.core.timeframes import MS_PER_DAY


def day_closes(close_wide: pd.DataFrame, *, timeframe_ms: int) -> pd.DataFrame:
    """Close of each complete UTC day per column of a candle panel (index: bar open ms), days x symbols on the
    union of their calendars (index: day start ms): lib.core.daily_returns.daily_closes of each column, at once.
    A symbol's day is complete when its candle that ends the day has a positive close (its last valid candle is
    then that one): the value of the panel's row of that candle."""
    stamps = close_wide.index.to_numpy(dtype=np.int64)
    ends_day = (stamps + timeframe_ms) % MS_PER_DAY == 0
    rows = close_wide.iloc[ends_day]
    values = rows.to_numpy(dtype=float)
    values = np.where(values > 0, values, np.nan)  # NaN stays NaN: daily_closes drops both
    starts = stamps[ends_day] + timeframe_ms - MS_PER_DAY
    frame = pd.DataFrame(values, index=pd.Index(starts, dtype=np.int64), columns=close_wide.columns)
    return frame[~np.isnan(values).all(axis=1)]


def tail_scales(daily_close: pd.DataFrame, fill_open_ms: np.ndarray, weights: np.ndarray, *, max_var: float,
                max_cvar: float, lookback_days: int) -> np.ndarray:
    """The factor live would scale each book by (row of ``weights``, on ``daily_close``'s columns) at a run whose
    fill is at ``fill_open_ms``: 1 = fits, NaN = risk unknown (live refuses)."""
    closes = daily_close.to_numpy(dtype=float)
    day_end = daily_close.index.to_numpy(dtype=np.int64) + MS_PER_DAY
    returns = np.full_like(closes, np.nan)
    returns[1:] = closes[1:] / closes[:-1] - 1.0  # = DataFrame.pct_change(fill_method=None)
    has_close = (~np.isnan(closes)).astype(float)  # 1.0 where the symbol closed that day
    last_day = np.searchsorted(day_end, np.asarray(fill_open_ms, dtype=np.int64), side="right") - 1
    scales = np.ones(len(weights))
    active = np.flatnonzero((weights != 0).any(axis=1))
    order = order_all = active[np.argsort(last_day[active], kind="stable")]
    # a run that sees the same days and the same book as the one before it gets the same factor: evaluated once
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = (last_day[order[1:]] == last_day[order[:-1]]) & (weights[order[1:]] == weights[order[:-1]]).all(1)
    first_of = order[np.maximum.accumulate(np.where(repeat, 0, np.arange(len(order))))] if len(order) else order
    order = order[~repeat]
    days, starts = np.unique(last_day[order], return_index=True)
    batches = _Batches(scales, max_var=max_var, max_cvar=max_cvar)
    for day, ticks in zip(days.tolist(), np.split(order, starts[1:]) if order.size else [], strict=True):
        for subset, window in _windows(closes, returns, has_close, day, weights[ticks] != 0, lookback_days):
            books = ticks[subset]
            unknown = unknown_books(window, weights[books])
            scales[books[unknown]] = np.nan
            known = books[~unknown]
            if known.size:
                batches.add(known, weights[known] @ np.nan_to_num(window, nan=0.0).T)
    batches.flush()
    scales[order_all] = scales[first_of]
    return scales


def _windows(closes: np.ndarray, returns: np.ndarray, has_close: np.ndarray, day: int, held: np.ndarray,
             lookback_days: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(books, their daily-returns window) for the books (rows of ``held``: which assets each weights) of the
    runs that see days ``<= day``: lib.core.daily_returns over each book's own calendar (the days on which one
    of its assets has a close), its last ``lookback_days`` returns. Where every day of the panel's last
    ``lookback_days + 1`` has such a close, that window is the panel's: one slice for all those books."""
    if day < 0:
        return [(np.arange(len(held)), returns[:0])]
    first = max(day - lookback_days, 0)
    covered = (has_close[first : day + 1] @ held.T.astype(float) > 0).all(axis=0)
    windows = [(np.flatnonzero(covered), returns[max(day - lookback_days + 1, 1) : day + 1])] if covered.any() else []
    if not covered.all():
        rest = np.flatnonzero(~covered)
        patterns, inverse = np.unique(held[rest], axis=0, return_inverse=True)
        for k, pattern in enumerate(patterns):
            rows = np.flatnonzero(has_close[: day + 1, pattern].any(axis=1))[-(lookback_days + 1) :]
            book_closes = closes[rows]
            windows.append((rest[inverse.ravel() == k], book_closes[1:] / book_closes[:-1] - 1.0))
    return windows


class _Batches:
    """Book returns of equally long windows gathered into one matrix, so that the figures of thousands of books
    are a few numpy calls (lib.core.tail_fit.fitting_scales), ``CHUNK`` books at a time."""

    CHUNK = 4096

    def __init__(self, scales: np.ndarray, *, max_var: float, max_cvar: float) -> None:
        self.scales, self.max_var, self.max_cvar = scales, max_var, max_cvar
        self.parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.sizes: dict[int, int] = {}

    def add(self, books: np.ndarray, book_returns: np.ndarray) -> None:
        days = book_returns.shape[1]
        self.parts.setdefault(days, []).append((books, book_returns))
        self.sizes[days] = self.sizes.get(days, 0) + len(books)
        if self.sizes[days] >= self.CHUNK:
            self._evaluate(days)

    def flush(self) -> None:
        for days in list(self.parts):
            self._evaluate(days)

    def _evaluate(self, days: int) -> None:
        parts = self.parts.pop(days)
        self.sizes.pop(days)
        books = np.concatenate([b for b, _ in parts])
        self.scales[books] = fitting_scales(np.vstack([r for _, r in parts]), max_var=self.max_var,
                                            max_cvar=self.max_cvar)

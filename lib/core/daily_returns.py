"""Pure: daily closes and daily returns from stored candles of any timeframe, for the 1-day risk figures.

A UTC day's close is the close of its last candle, kept only when that candle ends the day (an unfinished
day is not a daily return). Returns are simple (VaR/CVaR of a book: weights x simple returns add up) or log
(the volatility forecast of a liquidation probability).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lib.core.timeframes import MS_PER_DAY


def daily_closes(candles: pd.DataFrame, *, timeframe_ms: int) -> pd.Series:
    """Close of each complete UTC day (index: day start in ms), from candles with ``timestamp`` (open, ms)
    and ``close`` columns; non-positive or missing closes are dropped first."""
    frame = candles[["timestamp", "close"]].dropna()
    frame = frame[frame["close"] > 0].sort_values("timestamp")
    if frame.empty:
        return pd.Series(dtype=float)
    stamps = frame["timestamp"].to_numpy(dtype=np.int64)
    day = stamps - stamps % MS_PER_DAY
    last = pd.DataFrame({"day": day, "end": stamps + timeframe_ms, "close": frame["close"].to_numpy(dtype=float)})
    last = last.groupby("day").last()
    complete = last[last["end"] == last.index + MS_PER_DAY]
    return complete["close"].rename(None)


def daily_returns(closes: Mapping[str, pd.Series], *, lookback_days: int) -> pd.DataFrame:
    """Simple returns of each symbol's daily closes over the last ``lookback_days`` days of the union of
    their calendars (a day missing for one symbol is NaN for it: lib.core.tail_risk counts it as 0)."""
    frame = pd.DataFrame({symbol: series for symbol, series in closes.items()}).sort_index()
    returns = frame.pct_change(fill_method=None)
    return returns.iloc[1:].tail(lookback_days)

"""Pure: the point-in-time trading universe, as a bool mask (time x symbol).

An asset is eligible at bar t only from facts known at the close of t: it has a price at t, at least
``min_history_bars`` valid bars up to t, a trailing median dollar volume (close x base volume, in the
quote currency per bar) of at least ``min_dollar_volume_quote``, and it is not a stablecoin. A coin
whose data stop drops out at once; a newly listed coin enters after its history requirement.

Thresholds are per bar, so they depend on the timeframe: 250 bars is ~8 months of daily candles
but ~10 days of hourly ones, and a median dollar volume of 1e6 per bar is 1e6 a day on 1d candles but
2.4e7 a day on 1h candles. Set ``[universe]`` for the timeframe you run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.core.symbols import is_stablecoin
from lib.research.universe_params import UniverseParams

DOLLAR_VOLUME_MIN_VALID_FRAC = 0.5
"""The trailing median needs at least half its window valid (missing bars do not blank it)."""


def trailing_dollar_volume(
    close_wide: pd.DataFrame, volume_wide: pd.DataFrame, *, window_bars: int
) -> pd.DataFrame:
    """Median of close x volume (quote currency per bar) over the trailing ``window_bars`` rows."""
    min_bars = max(1, int(np.ceil(window_bars * DOLLAR_VOLUME_MIN_VALID_FRAC)))
    return (close_wide * volume_wide).rolling(window_bars, min_periods=min_bars).median()


def eligible_mask(
    close_wide: pd.DataFrame, volume_wide: pd.DataFrame, params: UniverseParams
) -> pd.DataFrame:
    """Bool frame (same index and columns as ``close_wide``): True where the asset may be traded at t.

    Raises:
        DataError: ``volume_wide`` is not aligned with ``close_wide``.
        ConfigError: a column is not a ccxt unified symbol.
    """
    if not volume_wide.index.equals(close_wide.index) or set(volume_wide.columns) != set(close_wide.columns):
        raise DataError("universe: close_wide and volume_wide must share one time index and symbol set")
    volume_wide = volume_wide.loc[:, list(close_wide.columns)]
    has_price = close_wide.notna()
    history_ok = has_price.cumsum() >= params.min_history_bars
    tradable = np.array([not is_stablecoin(str(symbol)) for symbol in close_wide.columns], dtype=bool)
    if params.max_assets <= 0:  # only the comparison with the threshold is needed, not the median itself
        liquid = pd.DataFrame(median_at_least(close_wide * volume_wide, params.min_dollar_volume_quote,
                                              window_bars=params.dollar_volume_window_bars),
                              index=close_wide.index, columns=close_wide.columns)
        return (has_price & history_ok & liquid & tradable).astype(bool)
    liquidity = trailing_dollar_volume(close_wide, volume_wide, window_bars=params.dollar_volume_window_bars)
    mask = has_price & history_ok & (liquidity >= params.min_dollar_volume_quote) & tradable
    rank = liquidity.where(mask).rank(axis=1, ascending=False, method="first")
    return (mask & (rank <= params.max_assets)).astype(bool)


def median_at_least(values_wide: pd.DataFrame, threshold: float, *, window_bars: int) -> np.ndarray:
    """``trailing_dollar_volume``'s rolling median >= ``threshold`` (bool, time x symbol), decided by counting:
    with n valid values in the window of which k >= threshold, the median (the middle value, or the mean of the
    two middle ones) is >= threshold iff 2k > n; when 2k == n the two middle values straddle the threshold and
    their mean is computed as pandas does, (a + b) / 2. Below the minimum count: False (the median is NaN).
    The same answers as the rolling median (a sorted window per bar) at a fraction of its cost."""
    values = values_wide.to_numpy(dtype=float)
    min_bars = max(1, int(np.ceil(window_bars * DOLLAR_VOLUME_MIN_VALID_FRAC)))
    valid = ~np.isnan(values)
    above = values >= threshold  # NaN compares False
    n, k = _rolling_count(valid, window_bars), _rolling_count(above, window_bars)
    liquid = (n >= min_bars) & (2 * k > n)
    rows, cols = np.nonzero((n >= min_bars) & (2 * k == n))
    if rows.size:
        padded = np.vstack([np.full((window_bars - 1, values.shape[1]), np.nan), values])
        windows = np.lib.stride_tricks.sliding_window_view(padded, window_bars, axis=0)[rows, cols]
        below_max = np.where(windows < threshold, windows, -np.inf).max(axis=1)
        above_min = np.where(windows >= threshold, windows, np.inf).min(axis=1)
        liquid[rows, cols] = (above_min + below_max) / 2 >= threshold
    return liquid


def _rolling_count(flags: np.ndarray, window_bars: int) -> np.ndarray:
    """Per column, how many of the trailing ``window_bars`` rows (fewer at the start) are True."""
    counts = np.cumsum(flags, axis=0, dtype=np.int64)
    counts[window_bars:] -= counts[:-window_bars].copy()
    return counts

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
    liquidity = trailing_dollar_volume(close_wide, volume_wide, window_bars=params.dollar_volume_window_bars)
    liquid = liquidity >= params.min_dollar_volume_quote
    tradable = np.array([not is_stablecoin(str(symbol)) for symbol in close_wide.columns], dtype=bool)
    mask = has_price & history_ok & liquid & tradable
    if params.max_assets > 0:
        rank = liquidity.where(mask).rank(axis=1, ascending=False, method="first")
        mask = mask & (rank <= params.max_assets)
    return mask.astype(bool)

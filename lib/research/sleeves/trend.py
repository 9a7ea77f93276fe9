"""Pure: the trend core sleeve: per-asset, multi-horizon time-series trend -> conviction in [0, 1].

Why: time-series momentum (an asset above its own n-day average tends to keep drifting up, crypto
included) is the best documented edge a long-only spot book can use, and it is decided per asset: each
coin's OWN trend decides whether it is held, so a BTC-only gate never holds alts (or drops them) for BTC's
sake. Several horizons (e.g. 20/60/120 bars) average away the choice of one lookback.

The SMA is a plain rolling mean over the asset's own bars (pinned to pandas-ta's ``sma`` by a unit test):
pandas-ta's numba-compiled ``sma`` costs ~1 s of JIT cache loading at every cold start of the
compute_signals cron script, and the trend core does not need the rest of pandas-ta.

Each horizon is a Schmitt trigger on the gap close / SMA_n - 1: "up" once the gap exceeds
``+entry_buffer_frac``, "down" once it falls below ``-entry_buffer_frac``, unchanged inside the band
(hysteresis: fewer flip-flops, less turnover). Before the first crossing a horizon is "down" (cash when
unsure). Conviction = the share of horizons that are up. Causal: a value at bar t uses bars <= t of that
asset only (the trigger state is a forward fill of past decisions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.research.sleeves.params import TrendParams


def schmitt_state(gap: pd.Series, buffer_frac: float) -> pd.Series:
    """1.0 (up) / 0.0 (down) per bar with hysteresis; NaN where ``gap`` is NaN (warm-up).

    Up when gap > buffer, down when gap < -buffer, else the previous state (initially down).
    """
    return pd.Series(schmitt_states(gap.to_numpy(dtype="float64"), buffer_frac), index=gap.index, dtype="float64")


def schmitt_states(gap: np.ndarray, buffer_frac: float) -> np.ndarray:
    """``schmitt_state`` on an array: each bar takes the side of the last bar (itself included) whose gap left
    the band, "down" (0) before the first; bars with a NaN gap are NaN but do not reset the state."""
    positions = np.arange(gap.size)
    last_decided = np.where((gap > buffer_frac) | (gap < -buffer_frac), positions, -1)
    np.maximum.accumulate(last_decided, out=last_decided)
    state = np.where(last_decided >= 0, gap[np.maximum(last_decided, 0)] > buffer_frac, 0.0).astype("float64")
    state[np.isnan(gap)] = np.nan
    return state


def trend_states(candles: pd.DataFrame, params: TrendParams) -> pd.DataFrame:
    """One asset's per-horizon states (columns ``up_<n>``, 1/0, NaN in warm-up) on its timestamps.

    Bars before a horizon's first full window are NaN (not tradeable yet).
    """
    index = pd.Index(candles["timestamp"].astype("int64").to_numpy(), name="timestamp")
    states = _state_arrays(candles["close"].to_numpy(dtype="float64"), params)
    return pd.DataFrame({f"up_{n}": state for n, state in zip(params.horizons_bars, states, strict=True)},
                        index=index)


def _state_arrays(close: np.ndarray, params: TrendParams) -> list[np.ndarray]:
    """Per horizon, the trigger states of one asset's closes (``sma_gap`` then ``schmitt_states``)."""
    series = pd.Series(close)
    return [schmitt_states(sma_gap(series, n).to_numpy(), params.entry_buffer_frac) for n in params.horizons_bars]


def states_known_from_ms(candles: pd.DataFrame, params: TrendParams) -> int | None:
    """Open time from which this asset's trigger states no longer depend on bars before ``candles``: the
    latest, over horizons, of each horizon's first decision (gap outside the band) in ``candles``. Before
    a first decision a state is the "down" default, which a longer history could contradict; from it on,
    the state is the same whatever came before. None: some horizon never decides within ``candles``."""
    index = candles["timestamp"].to_numpy(dtype="int64")
    close = pd.Series(candles["close"].to_numpy(dtype="float64"))
    known = -1
    for n in params.horizons_bars:
        gap = sma_gap(close, n).to_numpy()
        decided = np.flatnonzero(np.abs(gap) > params.entry_buffer_frac)  # NaN compares False
        if decided.size == 0:
            return None
        known = max(known, int(index[decided[0]]))
    return known


def sma_gap(close: pd.Series, length: int) -> pd.Series:
    """close_t / SMA_length(close)_t - 1; NaN for the first ``length - 1`` bars."""
    return close / close.rolling(length, min_periods=length).mean() - 1.0


@dataclass(frozen=True, slots=True)
class TrendSleeve:
    """``conviction``: time x symbol in [0, 1] (NaN = warm-up or no candle). ``states``: horizon
    column name -> time x symbol 1/0 frame (the why of each conviction)."""

    conviction: pd.DataFrame
    states: dict[str, pd.DataFrame]


def compute_trend_sleeve(
    candles_by_symbol: Mapping[str, pd.DataFrame], like: pd.DataFrame, params: TrendParams
) -> TrendSleeve:
    """Conviction of every symbol on ``like``'s index/columns (the market panel's close). Each asset's states are
    computed on its own bars and placed on the panel's rows (NaN where it has no bar), as a reindex would."""
    shape = like.shape
    stacked = np.full((len(params.horizons_bars), *shape), np.nan)
    for column, symbol in enumerate(like.columns):
        candles = candles_by_symbol[symbol]
        rows = like.index.get_indexer(candles["timestamp"].astype("int64").to_numpy())
        on_panel = rows >= 0
        for horizon, state in enumerate(_state_arrays(candles["close"].to_numpy(dtype="float64"), params)):
            stacked[horizon, rows[on_panel], column] = state[on_panel]
    states = {f"up_{n}": pd.DataFrame(stacked[k], index=like.index, columns=like.columns)
              for k, n in enumerate(params.horizons_bars)}
    conviction = pd.DataFrame(stacked.mean(axis=0), index=like.index, columns=like.columns)
    return TrendSleeve(conviction=conviction.where(like.notna()), states=states)

"""Pure: how many trailing bars a live run needs so that its last row equals the full-history run's.

compute_signals uses only the last row of ``lib.research.strategy.compute_strategy``; running it over
the whole stored history (35-44k hourly bars) costs seconds and hundreds of MB for nothing. The window
below is derived from the parameters, term by term, so a change of a lookback moves it:

- finite windows (SMA, rolling median/std/corr, ROC, OBV flow, Bollinger, the risk model's covariance
  window, the regime SMA, the universe's history requirement): exact once the window holds them;
- the risk model is re-estimated at the first bar of each clock period of ``sizing.refresh_every_bars``
  bars: one more period, so the estimate in force at the last bar is made from the same rows;
- recursive estimators (pandas-ta's SMA-seeded EMA, Wilder's RMA inside ADX, RSI and ATR) never forget
  their start exactly: a start error decays like (1 - alpha)^k after k bars. The window gives each
  ``ceil(ln(EWMA_TOLERANCE) / ln(1 - alpha))`` bars, so the start's weight is below ``EWMA_TOLERANCE``
  (1e-13, relative; the signals are ratios of such averages, so their difference is of that order);
  chained statistics (EMA -> rolling RMS -> rolling IC) add their windows;
- path-dependent states (the trend sleeve's Schmitt trigger, the turnover control's held/kept book) have
  no fading memory: a kept-by-band weight can come from any time back. No finite window bounds them, so
  the window is checked instead (``book_path_settled``): a trigger state is history-free from its first
  decision (gap outside the band) in the window, and the turnover control from a bar where the settled
  raw book is flat (it then holds nothing, whatever it held before). The window starts at
  ``PATH_SETTLE_PERIODS`` lengths of the longest lookback after the warm-up and doubles until such a bar
  is in it (``run_settled``; for the trend core a cheap pre-check, ``may_settle``, skips sizing windows
  that cannot settle); at worst it is the whole history, run once more than before. The real-data test
  (tests/unit/research/test_live_window.py) checks the last row against the full run at many dates.
Rolling sums in pandas are computed incrementally, so a window that starts elsewhere differs by float
rounding (~1e-16 relative); those differences are what remains, far below the stated tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.timeframes import timeframe_ms
from lib.research.ensemble_params import EnsembleParams
from lib.research.portfolio_params import SpotParams
from lib.research.signal_params import SignalParams
from lib.research.sleeves.params import CombinerParams, SizingParams, TrendParams, TurnoverParams
from lib.research.sleeves.trend import compute_trend_sleeve, states_known_from_ms
from lib.research.strategy import StrategyOutput, to_wide_panel
from lib.research.strategy_params import BOOK_STRATEGIES, COMBINED, PERP_STRATEGY, TREND_CORE, StrategySection
from lib.research.universe import eligible_mask
from lib.research.universe_params import UniverseParams

EWMA_TOLERANCE = 1e-13
"""Largest weight the window leaves on a recursive estimator's start value."""
PATH_SETTLE_PERIODS = 3
"""Lengths of the longest lookback given to path-dependent states after the warm-up to meet a decision."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowParams:
    """Every parameter section the window depends on (the ones ``compute_strategy`` reads)."""

    strategy: StrategySection
    signals: SignalParams
    ensemble: EnsembleParams
    universe: UniverseParams
    spot: SpotParams
    trend: TrendParams
    sizing: SizingParams
    combiner: CombinerParams
    turnover: TurnoverParams


WINDOW_SECTIONS = tuple(WindowParams.__dataclass_fields__)
"""The config sections (attribute names of the loaded config) ``WindowParams`` is built from."""


def ewma_settle_bars(alpha: float) -> int:
    """Bars after which a start value's weight (1 - alpha)^k in a recursive average is < EWMA_TOLERANCE."""
    return math.ceil(math.log(EWMA_TOLERANCE) / math.log(1.0 - alpha))


def _ensemble_warmup_bars(params: WindowParams) -> int:
    """The spot ensemble's signals, scores and weights: the slowest indicator, then its normalization,
    then the trailing IC weights, the volatility and the regime SMA."""
    signals = params.signals
    ema = signals.ema_slow_length + ewma_settle_bars(2.0 / (signals.ema_slow_length + 1))
    wilder = 2 * max(signals.adx_length, signals.rsi_length, signals.atr_length)
    wilder += ewma_settle_bars(1.0 / max(signals.adx_length, signals.rsi_length, signals.atr_length))
    finite = max(max(signals.roc_lengths), signals.bbands_length, signals.realized_vol_length + 1,
                 signals.obv_flow_length + 1, signals.supertrend_length + ewma_settle_bars(
                     1.0 / signals.supertrend_length) if signals.trend_use_supertrend else 0)
    indicator = max(ema, wilder, finite)
    ensemble = params.ensemble
    scored = indicator + 2 * signals.norm_window_bars  # component RMS, then the combined signal's
    weighted = scored + ensemble.ic_window_bars + ensemble.ic_horizon_bars + ensemble.ic_window_bars
    return max(weighted, params.spot.regime_sma_bars)


def _book_warmup_bars(params: WindowParams) -> int:
    """The sleeve book's raw weights: trend SMAs, the universe, and the risk model of the period."""
    universe = max(params.universe.min_history_bars, params.universe.dollar_volume_window_bars)
    sizing = params.sizing.window_bars + 1 + params.sizing.refresh_every_bars  # returns, one refresh period
    return max(max(params.trend.horizons_bars), universe) + sizing


def _warmup_bars(params: WindowParams) -> int:
    strategy = params.strategy
    base = max(strategy.volatility_window_bars + 1, params.universe.min_history_bars,
               params.universe.dollar_volume_window_bars)
    if strategy.name in BOOK_STRATEGIES:
        warmup = _book_warmup_bars(params)
        if strategy.name == COMBINED and "ensemble" in params.combiner.sleeves:
            warmup = max(warmup, _ensemble_warmup_bars(params))
        return max(base, warmup)
    warmup = _ensemble_warmup_bars(params)
    if strategy.name == PERP_STRATEGY:
        warmup = max(warmup, strategy.volatility_window_bars + 1)
    return max(base, warmup)


def _settled_from_ms(as_of_ms: int, candles_by_symbol: Mapping[str, pd.DataFrame], params: WindowParams, *,
                     bars: int) -> int:
    """First open time from which the raw book of the window is the full run's: warm-up over, every asset's
    trigger states decided (an asset that never decides: once it is gone), then one risk refresh period."""
    step = timeframe_ms(params.strategy.timeframe)
    settled_ms = window_start_ms(as_of_ms=as_of_ms, timeframe=params.strategy.timeframe, bars=bars)
    settled_ms += _warmup_bars(params) * step
    for candles in candles_by_symbol.values():
        known_ms = states_known_from_ms(candles, params.trend)
        if known_ms is None:
            known_ms = int(candles["timestamp"].iloc[-1]) + step
        settled_ms = max(settled_ms, known_ms)
    return settled_ms + params.sizing.refresh_every_bars * step


def book_path_settled(raw_weights: pd.DataFrame, candles_by_symbol: Mapping[str, pd.DataFrame],
                      params: WindowParams, *, bars: int) -> bool:
    """True when the sleeve book's turnover-controlled targets at the window's last row are provably the
    full history's: a settled row (``_settled_from_ms``) where the raw book is flat (every raw weight 0 or <
    ``turnover.min_weight_frac``: the control then holds nothing, whatever it held before), so the path
    from that row on is the same as the full run's. Non-book strategies hold no path state: True."""
    if params.strategy.name not in BOOK_STRATEGIES or raw_weights.empty:
        return True
    index = raw_weights.index.to_numpy(dtype="int64")
    settled_ms = _settled_from_ms(int(index[-1]), candles_by_symbol, params, bars=bars)
    raw = np.nan_to_num(raw_weights.to_numpy(dtype=float))
    flat = ((raw < params.turnover.min_weight_frac) | (raw == 0)).all(axis=1) & (index >= settled_ms)
    return bool(flat.any())


def may_settle(candles_by_symbol: Mapping[str, pd.DataFrame], params: WindowParams, *, bars: int) -> bool:
    """A cheap pre-check before the (costly) book: False when the trend core book surely has no settled bar
    with no eligible asset in an up-trend (its raw book is then exactly 0), so a longer window is tried
    without sizing this one. Other strategies: True (their full run decides)."""
    if params.strategy.name != TREND_CORE or not candles_by_symbol:
        return True
    panel = to_wide_panel(candles_by_symbol)
    eligible = eligible_mask(panel.close, panel.volume, params.universe)
    conviction = compute_trend_sleeve(candles_by_symbol, panel.close, params.trend).conviction
    wants = (np.nan_to_num(conviction.where(eligible).to_numpy(dtype=float)) > 0).any(axis=1)
    index = panel.close.index.to_numpy(dtype="int64")
    settled_ms = _settled_from_ms(int(index[-1]), candles_by_symbol, params, bars=bars)
    return bool((~wants & (index >= settled_ms)).any())


def required_history_bars(params: WindowParams) -> int:
    """Trailing bars (ending at the as-of bar) to start with: the warm-up, then room for the path states."""
    if params.strategy.name in BOOK_STRATEGIES:
        slowest = max(max(params.trend.horizons_bars), params.sizing.window_bars)
    else:
        slowest = max(params.signals.ema_slow_length, params.signals.norm_window_bars)
    return _warmup_bars(params) + PATH_SETTLE_PERIODS * slowest


def run_settled(window: Callable[[int], tuple[dict[str, pd.DataFrame], bool]],
                run: Callable[[Mapping[str, pd.DataFrame]], StrategyOutput],
                params: WindowParams) -> tuple[StrategyOutput, dict[str, pd.DataFrame]]:
    """``run`` over ``window(bars)`` (candles of the trailing ``bars`` and whether that is the whole
    history), from ``required_history_bars`` on, doubling the window until the book's path is settled in it
    (``book_path_settled``) or it holds the whole history (then it IS the full run)."""
    bars = first = required_history_bars(params)
    while True:
        candles, whole = window(bars)
        if not (whole or bars == first or may_settle(candles, params, bars=bars)):  # the first is cheap: run
            bars *= 2
            continue
        output = run(candles)
        raw = output.book.raw_weights if output.book is not None else pd.DataFrame()
        if whole or book_path_settled(raw, candles, params, bars=bars):
            return output, candles
        bars *= 2


def window_start_ms(*, as_of_ms: int, timeframe: str, bars: int) -> int:
    """Open time of the first of the ``bars`` bars that end with the bar opening at ``as_of_ms``."""
    return as_of_ms - (bars - 1) * timeframe_ms(timeframe)


def candles_from(candles: pd.DataFrame, start_ms: int, *, keep_last: bool = False) -> pd.DataFrame:
    """The candles opening at or after ``start_ms`` (sorted input); ``keep_last``: at least the last one
    (so a stale series still tells when it stopped)."""
    first = int(candles["timestamp"].to_numpy().searchsorted(start_ms, side="left"))
    if keep_last:
        first = min(first, max(len(candles) - 1, 0))
    return candles.iloc[first:].reset_index(drop=True) if first else candles


def trailing_window(
    candles_by_symbol: Mapping[str, pd.DataFrame], *, as_of_ms: int, timeframe: str, bars: int
) -> dict[str, pd.DataFrame]:
    """Each symbol's candles that open within the ``bars`` bars ending at ``as_of_ms`` (a clock window,
    the same for every symbol, so the wide panel keeps its shape); symbols without one are left out."""
    start_ms = window_start_ms(as_of_ms=as_of_ms, timeframe=timeframe, bars=bars)
    window = {symbol: candles_from(candles, start_ms) for symbol, candles in candles_by_symbol.items()}
    return {symbol: candles for symbol, candles in window.items() if len(candles)}

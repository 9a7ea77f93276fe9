"""Pure: the one composition of the research pipeline: candles -> signals -> ensemble -> weights.

``compute_signals`` reads the last bar of ``compute_strategy`` (live targets) and ``backtest`` reads the
whole history, so the rule that is backtested is the rule that trades. Every step is causal: the row
at bar t uses bars <= t only. Weights are decided at the CLOSE of bar t; nothing here shifts time (the
backtester fills at t+1, and live ``rebalance`` runs only after the candle closed).

Every bar is a decision row here; the rebalance schedule (``rebalance_every_bars``) is applied by the
backtester, and live by the crontab.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.core.symbols import to_perpetual, to_spot
from lib.core.timeframes import periods_per_year
from lib.data.ohlcv import OHLCV_COLUMNS
from lib.research.ensemble import EnsembleParams, compute_ensemble
from lib.research.freshness import FreshCandles as FreshCandles  # re-exported: moved to freshness
from lib.research.freshness import data_fingerprint as data_fingerprint
from lib.research.freshness import select_fresh_candles as select_fresh_candles
from lib.research.panel_align import on_panel
from lib.research.portfolio import (
    PerpParams,
    SpotParams,
    compute_regime,
    perp_target_weight_frame,
    spot_target_weight_frame,
)
from lib.research.signal_params import SignalParams
from lib.research.signals import WINDOW_MIN_VALID_FRAC, compute_signal_panel, realized_volatility
from lib.research.sleeves.book import BookOutput, BookSettings, book_asset_breakdown, book_sleeves, compute_book
from lib.research.strategy_params import (
    BOOK_STRATEGIES,
    PERP_STRATEGY,
    SPOT_STRATEGY,
    STRATEGY_NAMES,
    StrategySection,
)
from lib.research.universe import UniverseParams, eligible_mask


@dataclass(frozen=True, slots=True)
class MarketPanel:
    """Wide candle frames (time x symbol) on the sorted union of all candle open times (int64 ms,
    index name ``timestamp``); NaN where a symbol has no candle."""

    open: pd.DataFrame
    high: pd.DataFrame
    low: pd.DataFrame
    close: pd.DataFrame
    volume: pd.DataFrame


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyOutput:
    """Every intermediate of one strategy run, all time x symbol on ``panel``'s index.

    ``target_weights``: decided at each bar's close (finite on every row; 0 = not held).
    ``volatility_annual_frac``: annualized realized volatility used for sizing.
    ``regime_is_bullish``: spot only (None for perps). ``beta``: perps only, rolling beta of each
    asset's returns to the benchmark's (None when the benchmark is not in the data). ``book``: the
    sleeve book's intermediates (``trend_core`` / ``combined`` only; their ``scores`` are the raw book
    weights before turnover control, and signals/contributions are the ensemble's when it runs).
    """

    strategy: str
    benchmark: str | None  # the column used as the benchmark (spot or perpetual form of the config symbol)
    panel: MarketPanel
    signals: dict[str, pd.DataFrame]
    scores: pd.DataFrame
    contributions: dict[str, pd.DataFrame]
    signal_weights: pd.DataFrame
    eligible: pd.DataFrame
    volatility_annual_frac: pd.DataFrame
    regime_is_bullish: pd.Series | None
    beta: pd.DataFrame | None
    target_weights: pd.DataFrame
    book: BookOutput | None = None


def to_wide_panel(candles_by_symbol: Mapping[str, pd.DataFrame]) -> MarketPanel:
    """One candle frame per symbol (``OHLCV_COLUMNS``) -> one wide frame per column.

    Raises:
        DataError: no symbols, missing columns, or timestamps that are not unique and increasing.
    """
    if not candles_by_symbol:
        raise DataError("market panel needs candles for at least one symbol, got none")
    opens_ms: dict[str, np.ndarray] = {}
    for symbol, candles in candles_by_symbol.items():
        missing = [column for column in OHLCV_COLUMNS if column not in candles.columns]
        if missing:
            raise DataError(f"{symbol} candles lack columns {missing}; expected {list(OHLCV_COLUMNS)}")
        opens_ms[symbol] = candles["timestamp"].to_numpy(dtype="int64")
        if not (np.diff(opens_ms[symbol]) > 0).all():  # strictly increasing = unique and increasing
            raise DataError(f"{symbol} candle timestamps must be unique and increasing")
    union = functools.reduce(pd.Index.union, (pd.Index(opens, dtype="int64") for opens in opens_ms.values()))
    union = union.rename("timestamp")  # sorted indexes merge in linear time (np.unique sorts all of them: 10x slower)
    rows = {symbol: union.get_indexer(opens) for symbol, opens in opens_ms.items()}
    symbols = list(candles_by_symbol)
    wide: dict[str, pd.DataFrame] = {}
    for column in OHLCV_COLUMNS[1:]:  # filled in place: no per-symbol reindexed copies (memory)
        values = np.full((len(symbols), len(union)), np.nan)  # (symbol, time): the frame's block layout
        for position, symbol in enumerate(symbols):
            values[position, rows[symbol]] = candles_by_symbol[symbol][column].to_numpy(dtype="float64")
        wide[column] = pd.DataFrame(values.T, index=union, columns=symbols)
    return MarketPanel(**wide)


def benchmark_column(symbols: Iterable[str], benchmark_symbol: str) -> str | None:
    """The column that stands for ``benchmark_symbol``: itself, else its perpetual (or spot) twin.

    Why: config names the benchmark as a spot pair ("BTC/USDT") while a perp venue's data are keyed
    by the perpetual ("BTC/USDT:USDT").
    """
    available = set(symbols)
    for candidate in (benchmark_symbol, to_perpetual(to_spot(benchmark_symbol)), to_spot(benchmark_symbol)):
        if candidate in available:
            return candidate
    return None


def compute_beta(close_wide: pd.DataFrame, benchmark: str, *, window_bars: int) -> pd.DataFrame:
    """Rolling beta of each column's log returns to ``benchmark``'s over the trailing ``window_bars``.

    Causal (bars <= t). Returns across missing rows run from the last valid close, as in
    ``lib.research.signals.realized_volatility``; a value needs ``WINDOW_MIN_VALID_FRAC`` of the window valid
    in both series and is NaN where the asset has no price at t. The benchmark's own beta is 1.
    """
    if window_bars < 2:
        raise ConfigError(f"beta window must be >= 2 bars, got {window_bars}")
    log_close = np.log(close_wide.where(close_wide > 0))
    log_return = log_close - log_close.ffill().shift(1)
    market = log_return[benchmark]
    min_bars = max(2, int(np.ceil(window_bars * WINDOW_MIN_VALID_FRAC)))
    market_var = market.rolling(window_bars, min_periods=min_bars).var()
    beta = {
        symbol: log_return[symbol].rolling(window_bars, min_periods=min_bars).cov(market) / market_var
        for symbol in close_wide.columns
    }
    frame = pd.DataFrame(beta, index=close_wide.index, columns=close_wide.columns)
    return frame.where(np.isfinite(frame) & close_wide.notna())


def compute_strategy(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    *,
    strategy: StrategySection,
    signals: SignalParams,
    ensemble: EnsembleParams,
    universe: UniverseParams,
    spot: SpotParams,
    perp: PerpParams,
    book: BookSettings | None = None,
) -> StrategyOutput:
    """Run the configured strategy over the whole history of ``candles_by_symbol``.

    Pipeline: wide panel -> base signals -> point-in-time universe -> ensemble scores (ineligible = NaN) ->
    annualized realized volatility -> spot (regime on the benchmark) or perp (beta to the benchmark)
    weights for every bar. ``trend_core`` / ``combined``: the sleeve book (``book`` settings,
    defaults when None); the ensemble signals are computed only when its sleeve runs.

    Raises:
        DataError: malformed candles.
        ConfigError: the benchmark is needed (spot regime filter, perp beta-neutral) but not in the data.
    """
    panel = to_wide_panel(candles_by_symbol)
    if strategy.name in BOOK_STRATEGIES:
        return _book_strategy(candles_by_symbol, panel, strategy=strategy, signals=signals, ensemble=ensemble,
                              universe=universe, spot=spot, book=book or BookSettings())
    signal_panel = compute_signal_panel(candles_by_symbol, signals)
    for name, frame in signal_panel.items():  # in place: a second copy of the panel costs memory
        signal_panel[name] = on_panel(frame, panel.close)
    eligible = eligible_mask(panel.close, panel.volume, universe)
    result = compute_ensemble(signal_panel, panel.close, ensemble, eligible=eligible)
    bar_volatility = realized_volatility(panel.close, window=strategy.volatility_window_bars)
    volatility = bar_volatility * math.sqrt(periods_per_year(strategy.timeframe))
    benchmark = benchmark_column(panel.close.columns, strategy.benchmark_symbol)
    regime: pd.Series | None = None
    beta: pd.DataFrame | None = None
    if strategy.name == SPOT_STRATEGY:
        regime = _regime(panel.close, benchmark, strategy.benchmark_symbol, spot)
        weights = spot_target_weight_frame(result.scores, volatility, regime, spot)
    elif strategy.name == PERP_STRATEGY:
        if benchmark is not None:
            beta = compute_beta(panel.close, benchmark, window_bars=strategy.volatility_window_bars)
        elif perp.beta_neutral:
            raise ConfigError(
                f"perp.beta_neutral needs the benchmark {strategy.benchmark_symbol} "
                "(strategy.benchmark_symbol) in the data; add it to data.symbols"
            )
        weights = perp_target_weight_frame(
            result.scores, volatility, perp, beta_wide=beta if perp.beta_neutral else None
        )
    else:
        raise ConfigError(f"strategy.name must be one of {', '.join(STRATEGY_NAMES)}, got {strategy.name!r}")
    return StrategyOutput(
        strategy=strategy.name,
        benchmark=benchmark,
        panel=panel,
        signals=signal_panel,
        scores=result.scores,
        contributions=result.contributions,
        signal_weights=result.signal_weights,
        eligible=eligible,
        volatility_annual_frac=volatility,
        regime_is_bullish=regime,
        beta=beta,
        target_weights=weights,
    )


def _book_strategy(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    panel: MarketPanel,
    *,
    strategy: StrategySection,
    signals: SignalParams,
    ensemble: EnsembleParams,
    universe: UniverseParams,
    spot: SpotParams,
    book: BookSettings,
) -> StrategyOutput:
    """``trend_core`` / ``combined``: the sleeve book; the spot ensemble runs only as a sleeve of it."""
    eligible = eligible_mask(panel.close, panel.volume, universe)
    volatility = realized_volatility(panel.close, window=strategy.volatility_window_bars) * math.sqrt(
        periods_per_year(strategy.timeframe)
    )
    benchmark = benchmark_column(panel.close.columns, strategy.benchmark_symbol)
    signal_panel: dict[str, pd.DataFrame] = {}
    contributions: dict[str, pd.DataFrame] = {}
    signal_weights, regime, ensemble_weights = pd.DataFrame(), None, None
    if "ensemble" in book_sleeves(strategy.name, book.combiner):
        signal_panel = {name: on_panel(frame, panel.close)
                        for name, frame in compute_signal_panel(candles_by_symbol, signals).items()}
        result = compute_ensemble(signal_panel, panel.close, ensemble, eligible=eligible)
        contributions, signal_weights = result.contributions, result.signal_weights
        regime = _regime(panel.close, benchmark, strategy.benchmark_symbol, spot)
        ensemble_weights = spot_target_weight_frame(result.scores, volatility, regime, spot)
    output = compute_book(candles_by_symbol, panel.close, eligible, strategy_name=strategy.name, settings=book,
                          timeframe=strategy.timeframe, ensemble_weights=ensemble_weights)
    return StrategyOutput(
        strategy=strategy.name, benchmark=benchmark, panel=panel, signals=signal_panel,
        scores=output.raw_weights, contributions=contributions, signal_weights=signal_weights,
        eligible=eligible, volatility_annual_frac=volatility, regime_is_bullish=regime, beta=None,
        target_weights=output.target_weights, book=output,
    )  # fmt: skip


def _regime(close_wide: pd.DataFrame, benchmark: str | None, configured: str, spot: SpotParams) -> pd.Series:
    """Bullish flag per bar from the benchmark's close, forward-filled over its own missing bars.

    Why the fill: the regime SMA needs a full window, so one missing benchmark candle would otherwise
    read as "bearish" for ``regime_sma_bars`` bars. Filling from the past is causal.
    """
    if benchmark is None:
        if spot.regime_filter:
            raise ConfigError(
                f"spot.regime_filter needs the benchmark {configured} (strategy.benchmark_symbol) in the "
                "data; add it to data.symbols"
            )
        return pd.Series(True, index=close_wide.index, name="is_bullish")
    return compute_regime(close_wide[benchmark].ffill(), spot)


Breakdown = dict[str, dict[str, Any]]
"""symbol -> JSON-safe explanation of its weight (see ``latest_targets``)."""


def latest_targets(output: StrategyOutput, *, as_of_ms: int) -> tuple[dict[str, float], Breakdown]:
    """Weights decided at the close of bar ``as_of_ms`` and, per symbol, why (JSON-safe, NaN -> None).

    Breakdown per symbol: ``weight``, ``score``, ``contributions`` (per ensemble signal, summing to
    the score), ``signals`` (every normalized base signal), ``volatility_annual_frac``, ``eligible``,
    ``regime_is_bullish`` (spot; None for perps), ``beta`` (perps; None otherwise), ``close``.

    Raises:
        DataError: ``as_of_ms`` is not a bar of the output, or its weights are not finite.
    """
    index = output.target_weights.index
    if as_of_ms not in index:
        last = int(index[-1]) if len(index) else None
        raise DataError(f"no strategy row at as_of_ms={as_of_ms} (last bar opens at {last})")
    row = output.target_weights.loc[as_of_ms]
    if not np.isfinite(row.to_numpy(dtype=float)).all():
        raise DataError(f"target weights at as_of_ms={as_of_ms} are not all finite: {row.to_dict()}")
    weights = {str(symbol): float(value) + 0.0 for symbol, value in row.items()}  # + 0.0: no -0.0
    breakdown = {symbol: _asset_breakdown(output, as_of_ms, symbol, weights[symbol]) for symbol in weights}
    return weights, breakdown


def _asset_breakdown(output: StrategyOutput, as_of_ms: int, symbol: str, weight: float) -> dict[str, Any]:
    def at(frame: pd.DataFrame | None) -> float | None:
        return None if frame is None else _json_float(frame.at[as_of_ms, symbol])

    regime = output.regime_is_bullish
    extra = {} if output.book is None else {"book": book_asset_breakdown(output.book, as_of_ms, symbol)}
    return {
        "weight": weight,
        "score": at(output.scores),
        "contributions": {name: at(frame) for name, frame in output.contributions.items()},
        "signals": {name: at(frame) for name, frame in output.signals.items()},
        "volatility_annual_frac": at(output.volatility_annual_frac),
        "eligible": bool(output.eligible.at[as_of_ms, symbol]),
        "regime_is_bullish": None if regime is None else bool(regime.loc[as_of_ms]),
        "beta": at(output.beta),
        "close": at(output.panel.close),
        **extra,
    }


def no_data_breakdown() -> dict[str, Any]:
    """The breakdown of a symbol that has no candle up to the as-of bar: weight 0, nothing known."""
    return {
        "weight": 0.0,
        "score": None,
        "contributions": {},
        "signals": {},
        "volatility_annual_frac": None,
        "eligible": False,
        "regime_is_bullish": None,
        "beta": None,
        "close": None,
    }


def _json_float(value: Any) -> float | None:
    number = float(value)
    return number + 0.0 if math.isfinite(number) else None

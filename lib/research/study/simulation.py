"""Pure: strategy + backtester as one simulation: targets from ``lib.research.strategy.compute_strategy``
(what compute_signals runs), fills from ``lib.research.backtester.run_backtest`` (close of t -> open of t+1),
and the walk-forward ``evaluate()`` built on them.

Signals are computed once over the loaded history and sliced per window: they are causal
(tests/unit/test_lookahead.py), so a slice equals a recomputation on history cut at the window's end.
The caller cuts the candles at ``--end``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lib.core.errors import DataError
from lib.core.timeframes import periods_per_year, timeframe_ms
from lib.research.backtest_params import BacktestParams
from lib.research.backtester import BacktestResult, run_backtest, run_backtest_sweep
from lib.research.live_risk import LiveRiskLimits
from lib.research.live_tail import day_closes
from lib.research.strategy import compute_strategy
from lib.research.study.sections import StudySettings, to_backtest_params, with_overrides
from lib.research.walkforward import Evaluate

type Frame = pd.DataFrame


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationInputs:
    """What the simulation needs of one strategy run (the rest of StrategyOutput is let go).

    Frames are time x symbol on the candle panel's index (int64 ms). ``bar_volatility_frac``:
    per-bar return volatility (volatility-scaled slippage). ``is_tradeable``: bars at which at least
    one symbol is in the point-in-time universe. ``funding``: rates per settlement (perps).
    """

    open: Frame
    close: Frame
    target_weights: Frame
    bar_volatility_frac: Frame
    is_tradeable: pd.Series
    benchmark: str | None
    funding: Frame | None
    daily_close: Frame | None = None  # complete days' closes (lib.research.live_tail): the live tail-risk pass

def build_simulation_inputs(
    candles_by_symbol: Mapping[str, Frame], settings: StudySettings, *, funding_wide: Frame | None
) -> SimulationInputs:
    """Run the strategy composition over the whole history once (causal: row t uses bars <= t)."""
    output = compute_strategy(
        candles_by_symbol, strategy=settings.strategy, signals=settings.signals, ensemble=settings.ensemble,
        universe=settings.universe, spot=settings.spot, perp=settings.perp, book=settings.book,
    )  # fmt: skip
    scale = math.sqrt(periods_per_year(settings.strategy.timeframe))
    traded = None if funding_wide is None else funding_wide.columns.isin(output.panel.close.columns)
    return SimulationInputs(
        open=output.panel.open, close=output.panel.close, target_weights=output.target_weights,
        bar_volatility_frac=output.volatility_annual_frac / scale, is_tradeable=output.eligible.any(axis=1),
        benchmark=output.benchmark, funding=None if funding_wide is None else funding_wide.loc[:, traded],
        daily_close=day_closes(output.panel.close, timeframe_ms=timeframe_ms(settings.strategy.timeframe)),
    )  # fmt: skip

def simulate(
    inputs: SimulationInputs, params: BacktestParams, *, start_ms: int | None = None,
    end_ms: int | None = None, live_risk: LiveRiskLimits | None = None,
) -> BacktestResult:  # fmt: skip
    """Backtest the bars in [start_ms, end_ms] (inclusive; None = open-ended), from cash at start_ms;
    ``live_risk``: the ``[risk]`` layer, modelled when ``params.model_live_risk`` (lib.research.live_risk).

    Raises:
        DataError: fewer than 2 bars in the range.
    """
    bars = slice(start_ms, end_ms)
    close = inputs.close.loc[bars]
    if len(close) < 2:
        raise DataError(f"backtest range [{start_ms}, {end_ms}] holds {len(close)} bar(s); need >= 2")
    return run_backtest(
        open_wide=inputs.open.loc[bars], close_wide=close, target_weights=inputs.target_weights.loc[bars],
        params=params, funding_wide=inputs.funding if params.market == "perp" else None,
        volatility_wide=inputs.bar_volatility_frac.loc[bars] if params.slippage_vol_mult > 0 else None,
        live_risk=live_risk, daily_close=inputs.daily_close,
    )  # fmt: skip

def simulate_grid(
    inputs: SimulationInputs, grid: Sequence[BacktestParams], *, start_ms: int | None = None,
    end_ms: int | None = None, live_risk: LiveRiskLimits | None = None,
) -> list[BacktestResult]:  # fmt: skip
    """``simulate`` at each parameter set of ``grid`` (one market), in order. Sets without the live risk layer
    share one alignment of the frames and run the compiled walk (lib.research.backtester.run_backtest_sweep); sets
    that model it run one by one (the layer is a Python walk). Same results as one ``simulate`` per set."""
    modelled = [live_risk is not None and params.model_live_risk for params in grid]
    fast = [params for params, is_modelled in zip(grid, modelled, strict=True) if not is_modelled]
    needs_vol = any(params.slippage_vol_mult > 0 for params in fast)
    bars = slice(start_ms, end_ms)
    close = inputs.close.loc[bars]
    if len(close) < 2:
        raise DataError(f"backtest range [{start_ms}, {end_ms}] holds {len(close)} bar(s); need >= 2")
    swept = iter(run_backtest_sweep(
        open_wide=inputs.open.loc[bars], close_wide=close, target_weights=inputs.target_weights.loc[bars], grid=fast,
        funding_wide=inputs.funding if fast and fast[0].market == "perp" else None,
        volatility_wide=inputs.bar_volatility_frac.loc[bars] if needs_vol else None,
    ))  # fmt: skip
    return [simulate(inputs, params, start_ms=start_ms, end_ms=end_ms, live_risk=live_risk) if is_modelled
            else next(swept) for params, is_modelled in zip(grid, modelled, strict=True)]

def make_evaluate(
    candles_by_symbol: Mapping[str, Frame], settings: StudySettings, *,
    computed: SimulationInputs | None = None, funding_wide: Frame | None = None,
) -> Evaluate:  # fmt: skip
    """``evaluate(overrides, start_ms, end_ms) -> equity`` for lib.research.walkforward.run_walk_forward.

    The strategy is computed once per distinct strategy-side setting (cached in the closure), so a
    grid over backtest-only keys such as the rebalance schedule reuses one run. ``computed``: the run
    of ``settings`` itself, if the caller has it (its funding is then reused).
    """
    cache: dict[tuple[Any, ...], SimulationInputs] = {}
    if computed is not None:
        cache[strategy_key(settings)] = computed
        funding_wide = computed.funding

    def evaluate(overrides: Mapping[str, Any], start_ms: Any, end_ms: Any) -> pd.Series:
        point = with_overrides(settings, overrides)
        key = strategy_key(point)
        if key not in cache:
            cache[key] = build_simulation_inputs(candles_by_symbol, point, funding_wide=funding_wide)
        params = to_backtest_params(point)
        return simulate(cache[key], params, start_ms=int(start_ms), end_ms=int(end_ms),
                        live_risk=point.live_risk).equity

    return evaluate

def strategy_key(settings: StudySettings) -> tuple[Any, ...]:
    """The settings compute_strategy depends on (the rebalance schedule is the backtester's)."""
    strategy = dataclasses.replace(settings.strategy, rebalance_every_bars=1)
    return (strategy, settings.signals, settings.ensemble, settings.universe, settings.spot, settings.perp,
            settings.book)

"""Pure: the walk-forward study: a grid point chosen on each train window, traded on the next test window,
stitched (``lib.research.walkforward``), as the walkforward.json document and an out-of-sample equity frame.

The grid goes through ``map_tasks`` (lib.research.tasks) in two fans of independent tasks: one strategy run per
distinct strategy-side setting, then every grid point on every train window; the choice per window and the
test-window runs (one per window) stay in the caller's process.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lib.core.timeframes import format_ms
from lib.research.metrics import summary_metrics
from lib.research.study.benchmark_curves import STRATEGY_COLUMN, benchmark_equity, to_equity_frame
from lib.research.study.grids import Grid
from lib.research.study.json_values import json_safe
from lib.research.study.reports import SCHEMA_VERSION
from lib.research.study.sections import StudyParams, StudySettings, to_backtest_params, with_overrides
from lib.research.study.simulation import (
    Frame,
    SimulationInputs,
    build_simulation_inputs,
    simulate,
    strategy_key,
)
from lib.research.tasks import MapTasks, serial_map
from lib.research.walkforward import WalkForwardParams, build_windows, expand_grid, run_walk_forward


@dataclass(frozen=True, slots=True)
class StrategyShared:
    """What every strategy-run task reads: the candles and the funding of the already computed run."""

    candles_by_symbol: Mapping[str, Frame]
    funding_wide: Frame | None


@dataclass(frozen=True, slots=True)
class EvaluationShared:
    """What every evaluation task reads: each grid point's settings and the strategy run of its key."""

    points: tuple[StudySettings, ...]
    runs: Mapping[tuple[Any, ...], SimulationInputs]


@dataclass(frozen=True, slots=True)
class StrategyPart:
    """What a strategy run adds to the market data every run shares (the panel's opens and closes, the daily closes,
    the funding: functions of the candles alone). Only this travels back from a worker, and the runs rebuilt on the
    base run's market frames share them, so the evaluation tasks' inputs carry them once, not once per run (hourly,
    25 coins: ~30 MB a run less to send back and to every worker)."""

    target_weights: Frame
    bar_volatility_frac: Frame
    is_tradeable: pd.Series
    benchmark: str | None

    def on(self, market: SimulationInputs) -> SimulationInputs:
        """This run's inputs on ``market``'s frames (the run computed from the same candles)."""
        return dataclasses.replace(market, target_weights=self.target_weights,
                                   bar_volatility_frac=self.bar_volatility_frac, is_tradeable=self.is_tradeable,
                                   benchmark=self.benchmark)


def strategy_run_task(settings: StudySettings, shared: StrategyShared) -> StrategyPart:
    """One strategy composition over the whole history (causal) for a strategy-side grid setting."""
    run = build_simulation_inputs(shared.candles_by_symbol, settings, funding_wide=shared.funding_wide)
    return StrategyPart(run.target_weights, run.bar_volatility_frac, run.is_tradeable, run.benchmark)


def evaluation_task(job: tuple[int, int, int], shared: EvaluationShared) -> pd.Series:
    """``(point, start_ms, end_ms)`` -> that grid point's equity over [start_ms, end_ms] (from cash)."""
    number, start_ms, end_ms = job
    point = shared.points[number]
    return simulate(shared.runs[strategy_key(point)], to_backtest_params(point), start_ms=start_ms, end_ms=end_ms,
                    live_risk=point.live_risk).equity


def walk_forward_study(
    candles_by_symbol: Mapping[str, Frame], settings: StudySettings, inputs: SimulationInputs,
    benchmarks: Frame, *, grid: Grid, layout: WalkForwardParams,
    progress: Callable[[], object] | None = None, study: StudyParams | None = None,
    map_tasks: MapTasks = serial_map,
) -> tuple[dict[str, Any], Frame]:  # fmt: skip
    """Walk-forward over ``benchmarks``' bars: choose a grid point on each train window by
    ``layout.metric``, trade it on the next test window, stitch (lib.research.walkforward). Returns the
    walkforward.json document and the stitched out-of-sample equity frame, whose benchmarks are bought at
    the out-of-sample start (``study``: their settings; an equal-weight basket bought at ``benchmarks``' start
    and rebased would carry the weights it drifted to in the training span).

    ``progress()`` is called once per evaluation used (windows x (grid points + 1) in all); ``map_tasks`` runs
    the strategy runs and the train-window evaluations (serially by default; the result does not depend on it).
    """
    points, windows = expand_grid(grid), build_windows(benchmarks.index, layout)
    timeframe = settings.strategy.timeframe
    shared = _strategy_runs(candles_by_symbol, settings, inputs, points, map_tasks)
    jobs = [(number, int(window.train_start_ts), int(window.train_end_ts))
            for window in windows for number in range(len(points))]
    trained = dict(zip(jobs, map_tasks(evaluation_task, jobs, shared, label="walk-forward train runs"), strict=True))
    number_of = {_point_key(point): number for number, point in enumerate(points)}

    def counted(overrides: Mapping[str, Any], start_ms: Any, end_ms: Any) -> pd.Series:
        if progress is not None:
            progress()
        job = (number_of[_point_key(overrides)], int(start_ms), int(end_ms))
        return trained[job] if job in trained else evaluation_task(job, shared)  # a test window: here

    walk = run_walk_forward(counted, points, windows, timeframe=timeframe, metric=layout.metric,
                            starting_capital_quote=settings.backtest.starting_capital_quote)
    equity = walk.equity
    oos_close = inputs.close.loc[int(equity.index[0]) : int(equity.index[-1])]
    oos = benchmark_equity(oos_close, inputs.benchmark, timeframe=timeframe, study=study or StudyParams(),
                           capital_quote=float(equity.iloc[0]))[benchmarks.columns].reindex(equity.index)
    rows = [{
        "window": int(row.window),
        "test_start": format_ms(int(row.test_start_ts)), "test_end": format_ms(int(row.test_end_ts)),
        "train_start_ms": int(row.train_start_ts), "train_end_ms": int(row.train_end_ts),
        "test_start_ms": int(row.test_start_ts), "test_end_ms": int(row.test_end_ts),
        "params": dict(row.params), "train_metric": row.train_metric, "test_metric": row.test_metric,
    } for row in walk.table.itertuples(index=False)]  # fmt: skip
    chosen = Counter(", ".join(f"{k}={v}" for k, v in sorted(dict(row["params"]).items())) for row in rows)
    metrics = {name: summary_metrics(curve, timeframe=timeframe) for name, curve in
               [(STRATEGY_COLUMN, equity), *oos.items()]}
    document = {
        "schema_version": SCHEMA_VERSION, "grid": grid, "layout": dataclasses.asdict(layout), "windows": rows,
        "params_chosen": dict(chosen.most_common()), "out_of_sample_metrics": metrics,
        "out_of_sample_start": format_ms(int(equity.index[0])),
        "out_of_sample_end": format_ms(int(equity.index[-1])),
    }  # fmt: skip
    return json_safe(document), to_equity_frame(equity, oos)


def _strategy_runs(candles_by_symbol: Mapping[str, Frame], settings: StudySettings, inputs: SimulationInputs,
                   points: list[dict[str, Any]], map_tasks: MapTasks) -> EvaluationShared:
    """Each grid point's settings and one strategy run per distinct strategy-side setting (``inputs`` is
    ``settings``' own run, reused with its funding)."""
    point_settings = tuple(with_overrides(settings, point) for point in points)
    todo = {strategy_key(point): point for point in reversed(point_settings)}  # first point of each key
    todo.pop(strategy_key(settings), None)
    ordered = [todo[key] for key in dict.fromkeys(strategy_key(point) for point in point_settings) if key in todo]
    computed = map_tasks(strategy_run_task, ordered, StrategyShared(candles_by_symbol, inputs.funding),
                         label="walk-forward strategy runs")
    runs = {strategy_key(settings): inputs,
            **{strategy_key(point): part.on(inputs) for point, part in zip(ordered, computed, strict=True)}}
    return EvaluationShared(point_settings, runs)


def _point_key(overrides: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(dict(overrides).items()))

"""Pure: the walk-forward study: a grid point chosen on each train window, traded on the next test window,
stitched (``lib.research.walkforward``), as the walkforward.json document and an out-of-sample equity frame."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from lib.core.timeframes import format_ms
from lib.research.metrics import summary_metrics
from lib.research.study.benchmark_curves import STRATEGY_COLUMN, benchmark_equity, to_equity_frame
from lib.research.study.grids import Grid
from lib.research.study.json_values import json_safe
from lib.research.study.reports import SCHEMA_VERSION
from lib.research.study.sections import StudyParams, StudySettings
from lib.research.study.simulation import Frame, SimulationInputs, make_evaluate
from lib.research.walkforward import WalkForwardParams, build_windows, expand_grid, run_walk_forward


def walk_forward_study(
    candles_by_symbol: Mapping[str, Frame], settings: StudySettings, inputs: SimulationInputs,
    benchmarks: Frame, *, grid: Grid, layout: WalkForwardParams,
    progress: Callable[[], object] | None = None, study: StudyParams | None = None,
) -> tuple[dict[str, Any], Frame]:  # fmt: skip
    """Walk-forward over ``benchmarks``' bars: choose a grid point on each train window by
    ``layout.metric``, trade it on the next test window, stitch (lib.research.walkforward). Returns the
    walkforward.json document and the stitched out-of-sample equity frame, whose benchmarks are bought at
    the out-of-sample start (``study``: their settings; an equal-weight basket bought at ``benchmarks``' start
    and rebased would carry the weights it drifted to in the training span).

    ``progress()`` is called once per evaluation (windows x (grid points + 1) in all).
    """
    points, windows = expand_grid(grid), build_windows(benchmarks.index, layout)
    evaluate = make_evaluate(candles_by_symbol, settings, computed=inputs)
    timeframe = settings.strategy.timeframe

    def counted(overrides: Mapping[str, Any], start_ms: Any, end_ms: Any) -> pd.Series:
        if progress is not None:
            progress()
        return evaluate(overrides, start_ms, end_ms)

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

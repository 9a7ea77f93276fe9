"""Pure: walk-forward parameter selection and cost sensitivity around a caller's evaluate function.

The caller plugs the whole signal -> weights -> backtest pipeline in as
``evaluate(params, start_ts, end_ts) -> equity`` (a pd.Series indexed by bar timestamp, first bar
start_ts, last bar end_ts, both inclusive). ``evaluate`` may read history BEFORE start_ts to warm
its indicators up, and must never read after end_ts; this module only ever asks for a train
window when choosing parameters, so a choice cannot depend on later data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.core.timeframes import MS_PER_DAY
from lib.research.backtest_params import BacktestParams
from lib.research.backtester import BacktestResult
from lib.research.metrics import summary_metrics
from lib.research.walkforward_params import WalkForwardParams

Evaluate = Callable[[Mapping[str, Any], Any, Any], pd.Series]
"""evaluate(params, start_ts, end_ts) -> equity over [start_ts, end_ts] (inclusive)."""

TABLE_COLUMNS = (
    "window",
    "train_start_ts",
    "train_end_ts",
    "test_start_ts",
    "test_end_ts",
    "params",
    "train_metric",
    "test_metric",
)
"""Columns of WalkForwardResult.table (one row per window: the parameter-stability table)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """One walk-forward step; timestamps are bar open times, both ends inclusive."""

    number: int
    train_start_ts: Any
    train_end_ts: Any
    test_start_ts: Any
    test_end_ts: Any


@dataclass(frozen=True, slots=True)
class WalkForwardResult:
    """Stitched out-of-sample equity and the per-window table (TABLE_COLUMNS)."""

    equity: pd.Series
    table: pd.DataFrame


def build_windows(index: pd.Index, params: WalkForwardParams) -> list[Window]:
    """Consecutive, non-overlapping test windows of ``test_days`` calendar days after a first ``train_days``.

    ``index``: bar open times (int ms, UTC), any timeframe. Days are counted from the first 00:00 UTC at or
    after the first bar, so hourly and daily bars of the same days get the same calendar windows. Test window k
    covers the bars opening in [origin + (train + gap + k x test) days, + test days); its train window ends
    ``gap_days`` (purge + embargo) before the test starts and covers ``train_days`` (rolling) or everything from
    the first bar (expanding). A final partial test window is kept when it has >= 2 bars.

    Raises:
        DataError: the bars do not reach past one train span + gap with 2 test bars.
    """
    stamps = np.asarray(index, dtype=np.int64)
    if len(stamps) == 0:
        raise DataError("walk-forward needs bars, got none")
    origin = -(-int(stamps[0]) // MS_PER_DAY) * MS_PER_DAY  # the first 00:00 UTC at or after the first bar
    train_ms, test_ms, gap_ms = (days * MS_PER_DAY for days in (params.train_days, params.test_days, params.gap_days))
    windows: list[Window] = []
    test_start_ms = origin + train_ms + gap_ms
    while test_start_ms <= int(stamps[-1]):
        test_first = int(np.searchsorted(stamps, test_start_ms, side="left"))
        test_stop = int(np.searchsorted(stamps, test_start_ms + test_ms, side="left"))
        train_first = 0 if params.expanding else int(np.searchsorted(stamps, test_start_ms - gap_ms - train_ms))
        train_stop = int(np.searchsorted(stamps, test_start_ms - gap_ms, side="left"))
        if test_stop - test_first >= 2 and train_stop > train_first:  # (a hole in the data can empty one)
            windows.append(Window(number=len(windows), train_start_ts=index[train_first],
                                  train_end_ts=index[train_stop - 1], test_start_ts=index[test_first],
                                  test_end_ts=index[test_stop - 1]))
        test_start_ms += test_ms
    if not windows:
        raise DataError(f"walk-forward needs more than {params.train_days} + {params.gap_days} days of bars and 2 "
                        f"test bars; the bars span {(int(stamps[-1]) - int(stamps[0])) / MS_PER_DAY:.1f} days")
    return windows


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of a {name: values} grid, in a stable order (first key varies slowest)."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def run_walk_forward(
    evaluate: Evaluate,
    param_grid: Sequence[Mapping[str, Any]],
    windows: Sequence[Window],
    *,
    timeframe: str,
    metric: str | Callable[[pd.Series], float] = "sharpe",
    starting_capital_quote: float = 1000.0,
) -> WalkForwardResult:
    """Choose params on each TRAIN window by ``metric``, apply them to the TEST window, stitch.

    Ties and NaN metrics: the first candidate in grid order wins among equals; NaN never wins.
    Each test window restarts the strategy (from cash) and is scaled to start at the previous
    window's ending equity, so the stitched curve is what a re-tuned strategy would have earned
    out of sample (including the cost of re-entering its positions at every window start).
    """
    if not param_grid:
        raise ConfigError("walk-forward needs a non-empty parameter grid")
    rows, pieces, capital = [], [], float(starting_capital_quote)
    for window in windows:
        train_scores = [
            _score(
                _evaluated(evaluate, params, window.train_start_ts, window.train_end_ts), metric, timeframe
            )
            for params in param_grid
        ]
        best = max(range(len(param_grid)), key=lambda k: (_rankable(train_scores[k]), -k))
        test_equity = _evaluated(evaluate, param_grid[best], window.test_start_ts, window.test_end_ts)
        piece = capital * test_equity / float(test_equity.iloc[0])
        capital = float(piece.iloc[-1])
        pieces.append(piece)
        rows.append(
            (
                window.number,
                window.train_start_ts,
                window.train_end_ts,
                window.test_start_ts,
                window.test_end_ts,
                dict(param_grid[best]),
                train_scores[best],
                _score(test_equity, metric, timeframe),
            )
        )
    equity = pd.concat(pieces) if pieces else pd.Series(dtype=float)
    return WalkForwardResult(
        equity=equity.rename("equity"), table=pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    )


def cost_sensitivity(
    run: Callable[[BacktestParams], pd.Series | BacktestResult],
    base_params: BacktestParams,
    *,
    timeframe: str,
    fee_levels_bps: Sequence[float] = (0.0, 10.0, 25.0, 50.0),
) -> pd.DataFrame:
    """The same configuration run at each taker fee level: one row of summary metrics per fee_bps.

    ``run`` gets ``base_params`` with only ``fee_bps`` replaced (slippage and the rest unchanged).
    """
    rows = {}
    for fee_bps in fee_levels_bps:
        outcome = run(replace(base_params, fee_bps=float(fee_bps)))
        if isinstance(outcome, BacktestResult):
            rows[float(fee_bps)] = summary_metrics(
                outcome.equity,
                timeframe=timeframe,
                weights=outcome.weights,
                traded_notional_quote=float(outcome.trades["notional_quote"].sum()),
            ) | {"fees_paid_quote": outcome.fees_paid_quote}
        else:
            rows[float(fee_bps)] = summary_metrics(outcome, timeframe=timeframe)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "fee_bps"
    return table


def _evaluated(evaluate: Evaluate, params: Mapping[str, Any], start_ts: Any, end_ts: Any) -> pd.Series:
    """Call ``evaluate`` and refuse an equity curve that leaks outside [start_ts, end_ts]."""
    equity = evaluate(params, start_ts, end_ts)
    if len(equity) < 2:
        raise DataError(f"evaluate returned {len(equity)} equity points for [{start_ts}, {end_ts}]")
    if equity.index[0] < start_ts or equity.index[-1] > end_ts:
        raise DataError(
            f"evaluate returned equity from {equity.index[0]} to {equity.index[-1]}, "
            f"outside the requested window [{start_ts}, {end_ts}]"
        )
    return equity


def _score(equity: pd.Series, metric: str | Callable[[pd.Series], float], timeframe: str) -> float:
    if callable(metric):
        return float(metric(equity))
    summary = summary_metrics(equity, timeframe=timeframe)
    if metric not in summary:
        raise ConfigError(f"unknown walk-forward metric {metric!r}; expected one of {sorted(summary)}")
    return summary[metric]


def _rankable(value: float) -> float:
    return value if math.isfinite(value) else -math.inf

"""Pure: the cost sensitivity of one backtest: the same run at each taker fee level, one task per level through
``map_tasks`` (lib.research.tasks), summarized by ``lib.research.walkforward.cost_sensitivity``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from lib.research.backtest_params import BacktestParams
from lib.research.backtester import BacktestResult
from lib.research.live_risk import LiveRiskLimits
from lib.research.study.simulation import SimulationInputs, simulate
from lib.research.tasks import MapTasks, serial_map
from lib.research.walkforward import cost_sensitivity


@dataclass(frozen=True, slots=True, kw_only=True)
class CostShared:
    """What every fee-level task reads: the computed strategy run and the backtest around the fee."""

    inputs: SimulationInputs
    params: BacktestParams
    start_ms: int | None
    end_ms: int | None
    live_risk: LiveRiskLimits | None


def fee_level_task(fee_bps: float, shared: CostShared) -> BacktestResult:
    """The backtest with only the taker fee replaced by ``fee_bps``."""
    return simulate(shared.inputs, dataclasses.replace(shared.params, fee_bps=fee_bps), start_ms=shared.start_ms,
                    end_ms=shared.end_ms, live_risk=shared.live_risk)


def cost_table(shared: CostShared, *, timeframe: str, fee_levels_bps: Sequence[float],
               map_tasks: MapTasks = serial_map) -> pd.DataFrame:
    """``cost_sensitivity``'s table (one row of metrics per fee level), each level's backtest a task."""
    levels = list(dict.fromkeys(float(level) for level in fee_levels_bps))
    runs = dict(zip(levels, map_tasks(fee_level_task, levels, shared, label="cost grid"), strict=True))
    return cost_sensitivity(lambda params: runs[params.fee_bps], shared.params, timeframe=timeframe,
                            fee_levels_bps=levels)

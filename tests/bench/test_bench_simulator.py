"""Benchmarks of the simulator (lib/research/backtester.py, compiled walk) against vectorbt's
``Portfolio.from_orders`` on real Binance data (../shared/data; skipped without it), the rows of issue #12:

- one simulation, 25 coins x ~35,000 hourly bars, daily rebalances (the strategy's own hourly targets, one decision
  every 24 bars): target >= 8x faster than vectorbt;
- the same on a decision every bar: target >= 5x;
- a parameter sweep (fees x slippage, 12 sets) on 25 coins x daily bars, daily rebalancing: target >= 200
  simulations/s and >= 5x vectorbt (its faster mode: all sets in one call).

vectorbt is not a project dependency: it runs in another interpreter, $COINBOT_VECTORBT_PYTHON (a throwaway venv:
``python3.12 -m venv ~/vbt && ~/vbt/bin/pip install vectorbt``), through tests/bench/vectorbt_side.py; without
it the ratios are skipped and our own figures still print. Both sides get the same arrays: marks, fill prices (the
open), target weights scaled to 98 % gross so that the cash never binds (vectorbt fills the last buy partially where
we scale every buy: with spare cash the fills are the same), no minimum notional; the equity curves are compared
and the largest relative gap is printed. Times are CPU seconds (time.process_time, the machine is shared), median
of the rounds; nothing asserts on time.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lib.core import storage
from lib.core.symbols import from_slug
from lib.data import ohlcv
from lib.ops.config import Config
from lib.research.backtest_inputs import align_frames, schedule
from lib.research.backtest_params import BacktestParams
from lib.research.backtester import run_backtest, run_backtest_sweep
from lib.research.study import sections, simulation

pytestmark = pytest.mark.bench

VECTORBT_PYTHON_ENV = "COINBOT_VECTORBT_PYTHON"
VECTORBT_SIDE = Path(__file__).with_name("vectorbt_side.py")
ROUNDS = 5
GROSS = 0.98  # targets scaled so that the cash never binds (see the module docstring)
SWEEP_FEES_BPS = (0.0, 10.0, 25.0, 50.0)
SWEEP_SLIPPAGE_BPS = (0.0, 5.0, 10.0)

type Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


def strategy_targets(shared_data_dir: Path, timeframe: str) -> Frames:
    """(open, close, target weights x GROSS) of the default strategy at ``timeframe`` on every coin there."""
    candles = {from_slug(path.stem): storage.read_parquet(path, columns=ohlcv.OHLCV_COLUMNS)
               for path in sorted((shared_data_dir / "market" / timeframe).glob("*.parquet"))}
    config = Config()
    settings = sections.settings_from(config, dataclasses.replace(config.strategy, timeframe=timeframe))
    inputs = simulation.build_simulation_inputs(candles, settings, funding_wide=None)
    return inputs.open, inputs.close, inputs.target_weights * GROSS


@pytest.fixture(scope="module")
def hourly(shared_data_dir: Path) -> Frames:
    return strategy_targets(shared_data_dir, "1h")


@pytest.fixture(scope="module")
def daily(shared_data_dir: Path) -> Frames:
    return strategy_targets(shared_data_dir, "1d")


def cpu_median(run: Callable[[], Any], rounds: int = ROUNDS) -> tuple[float, Any]:
    """Median CPU seconds of ``rounds`` calls after one warm-up call (numba's compile/cache load), and a result."""
    result = run()
    seconds = []
    for _ in range(rounds):
        started = time.process_time()
        result = run()
        seconds.append(time.process_time() - started)
    return statistics.median(seconds), result


def vectorbt_case(frames: Frames, params: BacktestParams, fees_bps: tuple[float, ...],
                  slippage_bps: tuple[float, ...]) -> dict[str, np.ndarray]:
    """The arrays both sides simulate: our marks and fill prices, and each fill bar's target (NaN: no order)."""
    opened, closed, targets = frames
    inputs = schedule(align_frames(opened, closed, targets, params, None, None), params)
    size = np.full(inputs.mark.shape, np.nan)
    fills = np.flatnonzero(inputs.has_decision)
    size[fills] = np.where(inputs.tradeable[fills] > 0, inputs.target[fills - 1], np.nan)
    return {"close": inputs.mark, "price": inputs.reference, "size": size,
            "init_cash": np.array(params.starting_capital_quote), "fees": np.array(fees_bps) / 1e4,
            "slippage": np.array(slippage_bps) / 1e4, "rounds": np.array(ROUNDS),
            "batched": np.array(len(fees_bps) > 1)}


def run_vectorbt(case: dict[str, np.ndarray], tmp_path: Path) -> dict[str, np.ndarray] | None:
    """vectorbt's timings and equity (see vectorbt_side.py), or None when $COINBOT_VECTORBT_PYTHON is not set."""
    interpreter = os.environ.get(VECTORBT_PYTHON_ENV)
    if not interpreter:
        return None
    case_path, out_path = tmp_path / "case.npz", tmp_path / "vectorbt.npz"
    np.savez(case_path, **case)
    done = subprocess.run([interpreter, str(VECTORBT_SIDE), str(case_path), str(out_path)], capture_output=True,
                          text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out_path) as out:
        return {name: out[name] for name in out.files}


def largest_relative_gap(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.max(np.abs(ours - theirs) / np.abs(theirs)))


def single_simulation(frames: Frames, every_bars: int, what: str, target_ratio: float, tmp_path: Path,
                      table_row: Callable[[str, str, str], None]) -> None:
    params = BacktestParams(rebalance_every_bars=every_bars, min_notional_quote=0.0, model_live_risk=False)
    opened, closed, targets = frames
    ours_s, result = cpu_median(lambda: run_backtest(open_wide=opened, close_wide=closed, target_weights=targets,
                                                     params=params))
    reference_s, _ = cpu_median(lambda: run_backtest(open_wide=opened, close_wide=closed, target_weights=targets,
                                                     params=params, compiled=False), rounds=3)
    assert len(result.trades) > 1000 and not result.data_end_exits
    shape = f"simulation {closed.shape[1]} x {closed.shape[0]:,} 1h bars, {what}"
    table_row(f"{shape}: compiled walk vs the Python walk (reference)",
              f"{ours_s * 1e3:.0f} vs {reference_s * 1e3:.0f} ms CPU, {len(result.trades):,} trades", "-")
    vectorbt = run_vectorbt(vectorbt_case(frames, params, (params.fee_bps,), (params.slippage_bps,)), tmp_path)
    if vectorbt is None:
        table_row(f"{shape} vs vectorbt from_orders", f"skipped (set ${VECTORBT_PYTHON_ENV})", f">= {target_ratio:g}x")
        return
    theirs_s = float(np.median(vectorbt["cpu_s"]))
    gap = largest_relative_gap(result.equity.to_numpy(), vectorbt["equity"][:, 0])
    table_row(f"{shape} vs vectorbt {vectorbt['version']} from_orders",
              f"{theirs_s / ours_s:.1f}x faster (median {ours_s * 1e3:.0f} vs {theirs_s * 1e3:.0f} ms CPU; "
              f"fills {len(result.trades):,} vs {int(vectorbt['orders'][0]):,}, equity agrees to {gap:.1e})",
              f">= {target_ratio:g}x")


def test_simulation_hourly_daily_rebalances_vs_vectorbt(hourly: Frames, tmp_path: Path, table_row) -> None:
    single_simulation(hourly, 24, "daily rebalances", 8, tmp_path, table_row)


def test_simulation_hourly_decision_every_bar_vs_vectorbt(hourly: Frames, tmp_path: Path, table_row) -> None:
    single_simulation(hourly, 1, "a decision every bar", 5, tmp_path, table_row)


def test_parameter_sweep_daily_bars_vs_vectorbt(daily: Frames, tmp_path: Path, table_row) -> None:
    opened, closed, targets = daily
    base = BacktestParams(rebalance_every_bars=1, min_notional_quote=0.0, model_live_risk=False)
    grid = [dataclasses.replace(base, fee_bps=fee, slippage_bps=slip)
            for fee in SWEEP_FEES_BPS for slip in SWEEP_SLIPPAGE_BPS]
    ours_s, results = cpu_median(lambda: run_backtest_sweep(open_wide=opened, close_wide=closed,
                                                            target_weights=targets, grid=grid))
    per_s = len(grid) / ours_s
    shape = f"parameter sweep {closed.shape[1]} x {closed.shape[0]:,} 1d bars, daily rebalancing"
    table_row(f"{shape}, {len(grid)} fee x slippage sets (run_backtest_sweep)", f"{per_s:.0f} simulations/s CPU",
              ">= 200/s")
    fees, slips = zip(*((params.fee_bps, params.slippage_bps) for params in grid), strict=True)
    vectorbt = run_vectorbt(vectorbt_case(daily, base, fees, slips), tmp_path)
    if vectorbt is None:
        table_row(f"{shape} vs vectorbt", f"skipped (set ${VECTORBT_PYTHON_ENV})", ">= 5x")
        return
    one_by_one = len(grid) / float(np.median(vectorbt["cpu_s"]))
    batched = len(grid) / float(np.median(vectorbt["batched_cpu_s"]))
    ours = np.column_stack([result.equity.to_numpy() for result in results])
    gap = largest_relative_gap(ours, vectorbt["equity"])
    table_row(f"{shape} vs vectorbt {vectorbt['version']} (its faster mode)",
              f"{per_s / max(one_by_one, batched):.1f}x ({per_s:.0f}/s vs {one_by_one:.0f}/s one call per set, "
              f"{batched:.0f}/s batched; fills {sum(len(result.trades) for result in results):,} vs "
              f"{int(vectorbt['orders'].sum()):,}, equity agrees to {gap:.1e})", ">= 5x")

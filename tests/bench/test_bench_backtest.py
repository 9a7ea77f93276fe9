"""Benchmarks of the backtest on real Binance data (../shared/data; skipped without it):
(1) one full long-only backtest, 25 coins x 1h bars 2020-2023, costs, signals and the live risk layer included, as
a process (scripts/backtest.py end to end);
(2) a parameter sweep on 25 coins x daily bars: simulations per second of lib.research.backtester.run_backtest, one
call per parameter set (the batched sweep and the vectorbt comparison: tests/bench/test_bench_simulator.py).

Figures are printed and stored in pytest-benchmark's extra_info; nothing asserts on time (machines vary).
Targets (issue #12): (1) <= 3 s CPU and <= 300 MB peak RSS; (2) >= 200 simulations/s.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lib.core import storage
from lib.core.symbols import from_slug
from lib.data import ohlcv
from lib.ops.config import Config
from lib.research.backtester import run_backtest
from lib.research.study import sections, simulation
from tests.bench.conftest import Measured

pytestmark = pytest.mark.bench

HOURLY_CONFIG = """
[exchange]
id = "simulated"
[data]
timeframes = ["1h"]
[strategy]
timeframe = "1h"
"""
ROUNDS = 3
SWEEP_FEES_BPS = (0.0, 10.0, 25.0, 50.0)
SWEEP_BANDS_FRAC = (0.0, 0.02, 0.05)


def hourly_backtest_runs(benchmark, measure, *, data_dir: Path, root: Path, run_id: str,
                         extra_args: tuple[str, ...] = ()) -> tuple[list[Measured], dict]:
    """``ROUNDS`` whole-process runs of the hourly backtest (``HOURLY_CONFIG``): their measurements and the
    metrics.json they wrote."""
    (root / "config.toml").write_text(HOURLY_CONFIG)
    argv = [sys.executable, "-m", "scripts.backtest", "--config", str(root / "config.toml"),
            "--data-dir", str(data_dir), *extra_args, "--run-id", run_id]
    runs: list[Measured] = []

    def run_once() -> None:
        measured = measure(argv, cwd=root)
        assert measured.returncode == 0, measured.stderr
        runs.append(measured)

    benchmark.pedantic(run_once, rounds=ROUNDS, iterations=1)
    return runs, json.loads((root / "state" / "backtests" / run_id / "metrics.json").read_text())


def test_full_hourly_long_only_backtest_process(shared_data_dir: Path, tmp_path: Path, benchmark, measure,
                                                table_row):
    runs, document = hourly_backtest_runs(benchmark, measure, data_dir=shared_data_dir, root=tmp_path,
                                          run_id="bench-1h")
    assert document["timeframe"] == "1h" and len(document["symbols"]) == 25 and document["bars"] > 30_000
    best_s, peak_mb = min(run.wall_s for run in runs), max(run.peak_rss_mb for run in runs)
    cpu_s = min(run.cpu_s for run in runs)
    benchmark.extra_info.update(wall_s_min=best_s, wall_s_all=[run.wall_s for run in runs], peak_rss_mb=peak_mb,
                                cpu_s_min=cpu_s, bars=document["bars"],
                                trades=document["metrics"]["strategy"]["trade_count"])
    all_cpu = ", ".join(f"{run.cpu_s:.2f}" for run in runs)
    table_row(f"full hourly `backtest`, 25 coins x {document['bars']:,} 1h bars (process start to exit)",
              f"{cpu_s:.2f} s CPU (best of {len(runs)}; all {all_cpu}), {best_s:.1f} s wall, peak RSS {peak_mb:.0f} MB",
              "<= 3 s CPU, <= 300 MB")


def test_hourly_backtest_fixed_cost_on_two_coins(shared_data_dir: Path, tmp_path: Path, benchmark, measure,
                                                 table_row):
    """The same command on BTC and ETH only: what the process costs before the data does (imports, the compiled
    kernels loaded from numba's cache, matplotlib and the chart), the floor under the 25-coin row's figures."""
    runs, document = hourly_backtest_runs(benchmark, measure, data_dir=shared_data_dir, root=tmp_path,
                                          run_id="bench-floor", extra_args=("--symbols", "BTC/USDT", "ETH/USDT"))
    assert document["symbols"] == ["BTC/USDT", "ETH/USDT"] and document["bars"] > 30_000
    cpu_s, peak_mb = min(run.cpu_s for run in runs), min(run.peak_rss_mb for run in runs)
    benchmark.extra_info.update(cpu_s_min=cpu_s, peak_rss_mb_min=peak_mb, bars=document["bars"])
    table_row(f"(floor) the same `backtest` on 2 coins x {document['bars']:,} 1h bars",
              f"{cpu_s:.2f} s CPU, peak RSS {peak_mb:.0f} MB (best of {len(runs)})",
              "none: the fixed cost under the row above")


@pytest.fixture(scope="module")
def daily_inputs(shared_data_dir: Path) -> tuple[simulation.SimulationInputs, sections.StudySettings]:
    """The default spot strategy's targets on 25 coins x daily bars, computed once (not timed)."""
    candles = {
        from_slug(path.stem): storage.read_parquet(path, columns=ohlcv.OHLCV_COLUMNS)
        for path in sorted((shared_data_dir / "market" / "1d").glob("*.parquet"))
    }
    config = Config()
    settings = sections.StudySettings(strategy=config.strategy, signals=config.signals, ensemble=config.ensemble,
                                   universe=config.universe, spot=config.spot, perp=config.perp,
                                   backtest=config.backtest)
    return simulation.build_simulation_inputs(candles, settings, funding_wide=None), settings  # type: ignore[arg-type]


@pytest.mark.parametrize("every_bars", [7, 1], ids=["weekly", "daily"])
def test_parameter_sweep_simulations_per_second(daily_inputs, every_bars: int, benchmark, table_row) -> None:
    inputs, settings = daily_inputs
    base = sections.to_backtest_params(settings)
    grid = [replace(base, rebalance_every_bars=every_bars, fee_bps=fee, no_trade_band_frac=band)
            for fee in SWEEP_FEES_BPS for band in SWEEP_BANDS_FRAC]
    seconds: list[float] = []

    def sweep() -> None:
        started = time.perf_counter()
        for params in grid:
            run_backtest(open_wide=inputs.open, close_wide=inputs.close, target_weights=inputs.target_weights,
                         params=params)
        seconds.append(time.perf_counter() - started)

    benchmark.pedantic(sweep, rounds=5, iterations=1, warmup_rounds=1)
    per_s = len(grid) / min(seconds)
    median_per_s = len(grid) / sorted(seconds)[len(seconds) // 2]
    assert per_s > 0
    benchmark.extra_info.update(simulations_per_s_best=per_s, simulations_per_s_median=median_per_s,
                                simulations_per_round=len(grid), bars=len(inputs.close))
    table_row(f"sweep 25 coins x {len(inputs.close):,} daily bars, rebalance every {every_bars} bar(s), "
              f"{len(grid)} fee x band sets, one run_backtest call each", f"{per_s:.0f} simulations/s best, "
              f"{median_per_s:.0f}/s median (wall)", ">= 200/s")

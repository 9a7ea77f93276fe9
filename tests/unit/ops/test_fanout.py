"""lib/ops/fanout.py: a study run on a Dask LocalCluster (2 worker processes) gives bit-for-bit the result of
the serial run (walk-forward and cost grid; the candidates and carry grids use the same seam), results keep
item order, a failed task surfaces as its own error naming the task, and loading the fan-out does not load Dask."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.ops import fanout
from lib.ops.config import ResearchSection
from lib.research.carry.market import build_market
from lib.research.carry.sleeve import CarryParams
from lib.research.carry.study import grid_configurations, run_grid
from lib.research.study import benchmark_curves, cost_grid, history, sections, simulation, walk_forward
from lib.research.tasks import serial_map
from lib.research.walkforward import WalkForwardParams
from tests.unit.research.carry.synthetic import synthetic_frames
from tests.unit.research.test_backtest_study import SETTINGS, synthetic_universe

REPO_ROOT = Path(__file__).resolve().parents[3]
GRID = {"spot.top_n": (1, 2), "strategy.rebalance_every_bars": (1, 6)}  # two strategy runs x two schedules


@pytest.fixture(scope="module")
def dask_map() -> fanout.Fanout:
    with fanout.Fanout(workers=2) as mapper:
        yield mapper


@pytest.fixture(scope="module")
def study() -> tuple[dict[str, pd.DataFrame], simulation.SimulationInputs, pd.DataFrame]:
    candles = synthetic_universe()
    inputs = simulation.build_simulation_inputs(candles, SETTINGS, funding_wide=None)
    start = history.default_start_ms(inputs)
    benchmarks = benchmark_curves.benchmark_equity(inputs.close.loc[start:], inputs.benchmark, timeframe="1h",
                                                   study=sections.StudyParams(), capital_quote=1000.0)
    return candles, inputs, benchmarks


def square_or_fail(item: int, shared: int) -> int:
    if item == 3:
        raise DataError(f"item {item} has no data")
    return item * item + shared


def test_walk_forward_on_dask_equals_the_serial_run_bit_for_bit(dask_map: fanout.Fanout, study) -> None:
    candles, inputs, benchmarks = study
    layout = WalkForwardParams(train_days=6, test_days=4, purge_days=1)  # calendar days on hourly bars
    serial = walk_forward.walk_forward_study(candles, SETTINGS, inputs, benchmarks, grid=GRID, layout=layout)
    spread = walk_forward.walk_forward_study(candles, SETTINGS, inputs, benchmarks, grid=GRID, layout=layout,
                                             map_tasks=dask_map)
    assert dask_map._client is not None and len(dask_map._client.scheduler_info()["workers"]) == 2  # really ran there
    assert json.dumps(serial[0], sort_keys=True) == json.dumps(spread[0], sort_keys=True)
    pd.testing.assert_frame_equal(serial[1], spread[1], check_exact=True)
    assert len(serial[0]["windows"]) >= 3 and len(serial[0]["params_chosen"]) >= 1  # a study, not an empty one


def test_cost_grid_on_dask_equals_the_serial_run_bit_for_bit(dask_map: fanout.Fanout, study) -> None:
    _, inputs, _ = study
    shared = cost_grid.CostShared(inputs=inputs, params=sections.to_backtest_params(SETTINGS),
                                  start_ms=history.default_start_ms(inputs), end_ms=None, live_risk=None)
    levels = (0.0, 10.0, 25.0, 50.0)
    serial = cost_grid.cost_table(shared, timeframe="1h", fee_levels_bps=levels)
    spread = cost_grid.cost_table(shared, timeframe="1h", fee_levels_bps=levels, map_tasks=dask_map)
    pd.testing.assert_frame_equal(serial, spread, check_exact=True)
    assert list(serial.index) == list(levels) and serial["total_return_frac"].is_monotonic_decreasing


def test_carry_grid_on_dask_equals_the_serial_run_bit_for_bit(dask_map: fanout.Fanout) -> None:
    market = build_market(*synthetic_frames(days=90))
    axes = {"holding_days": [7.0, 14.0], "enter_cost_multiple": [1.0, 2.0]}
    configs = grid_configurations(CarryParams(), axes)
    serial = run_grid(market, configs, list(axes), start_ms=None, end_ms=None)
    spread = run_grid(market, configs, list(axes), start_ms=None, end_ms=None, map_tasks=dask_map)
    pd.testing.assert_frame_equal(serial[0], spread[0], check_exact=True)
    pd.testing.assert_frame_equal(serial[1], spread[1], check_exact=True)
    assert len(serial[0]) == 4 and serial[1].shape[1] == 4 and serial[0]["config"].is_unique


def test_results_come_back_in_item_order(dask_map: fanout.Fanout) -> None:
    items = [5, 1, 4, 0, 2]
    assert dask_map(square_or_fail, items, 10, label="order") == [35, 11, 26, 10, 14]
    assert serial_map(square_or_fail, items, 10) == [35, 11, 26, 10, 14]


def worker_environment(item: str, shared: None) -> str | None:
    return os.environ.get(item)


def test_local_workers_keep_glibcs_own_trim_threshold_and_one_blas_thread(dask_map: fanout.Fanout) -> None:
    """Dask's MALLOC_TRIM_THRESHOLD_ made every freed array go back to the kernel (a strategy run 0.9 s on a worker
    against 0.55 s serially); its thread caps stay."""
    assert dask_map(worker_environment, ["MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"], None,
                    label="environment") == [None, "1", "1"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_task_raises_its_own_error_naming_the_task(workers: int, dask_map: fanout.Fanout) -> None:
    mapper = dask_map if workers == 2 else fanout.Fanout(workers=1)
    with pytest.raises(DataError, match="item 3 has no data") as raised:
        mapper(square_or_fail, [0, 1, 2, 3, 4, 5], 0, label="squares")
    assert "in squares task 4 of 6: 3" in raised.value.__notes__


def test_a_cluster_started_early_warms_its_workers_and_then_maps_like_any_other() -> None:
    with fanout.Fanout(workers=2) as mapper:
        mapper.start_early(("tests.unit.ops.warm_marker",))  # imported on each worker while this test goes on
        assert mapper(square_or_fail, [2, 1], 10, label="early") == [14, 11]
        imported = mapper._client.run(lambda: "tests.unit.ops.warm_marker" in sys.modules)
        assert list(imported.values()) == [True, True]
    assert mapper._client is None and mapper._cluster is None  # closed with the block


def test_a_failed_early_start_surfaces_at_the_first_grid_and_serial_ignores_it() -> None:
    with fanout.Fanout(workers=2) as mapper:
        mapper.start_early(("tests.unit.ops.no_such_module",))
        with pytest.raises(ModuleNotFoundError, match="no_such_module"):
            mapper(square_or_fail, [0, 1], 0, label="broken start")
    serial = fanout.Fanout(workers=1)
    serial.start_early(("tests.unit.ops.no_such_module",))  # --workers 1: nothing starts, nothing fails
    assert serial(square_or_fail, [0, 1], 0, label="serial") == [0, 1] and serial._client is None


def test_workers_and_scheduler_come_from_the_command_line_or_the_config() -> None:
    parser = argparse.ArgumentParser()
    fanout.add_arguments(parser)
    section = ResearchSection(scheduler="tcp://10.0.0.5:8786", workers=3, worker_memory_limit="2GB")
    from_config = fanout.from_args(parser.parse_args([]), section)
    assert (from_config.scheduler, from_config.workers, from_config.memory_limit) == ("tcp://10.0.0.5:8786", 3, "2GB")
    serial = fanout.from_args(parser.parse_args(["--workers", "1", "--scheduler", ""]), section)
    assert serial.is_serial and serial.scheduler == ""
    assert fanout.from_args(parser.parse_args(["--workers", "0"]), ResearchSection()).workers >= 1  # every core
    with pytest.raises(ConfigError, match="--workers must be >= 0"):
        fanout.from_args(parser.parse_args(["--workers", "-2"]), ResearchSection())
    with pytest.raises(ConfigError, match="research.workers"):
        ResearchSection(workers=-1)


def test_an_unreachable_scheduler_is_a_config_error() -> None:
    mapper = fanout.Fanout(scheduler="tcp://127.0.0.1:9", connect_timeout_s=1.0)
    with mapper, pytest.raises(ConfigError, match="127.0.0.1:9"):
        mapper(square_or_fail, [0, 1], 0, label="nowhere")


def test_the_fan_out_and_the_config_do_not_load_dask() -> None:
    """Cron scripts load the config; only a research command that maps >= 2 tasks on a cluster imports Dask."""
    code = ("import sys, lib.ops.fanout, lib.ops.config, lib.research.study.walk_forward; "
            "sys.exit(int(any(name.split('.')[0] in ('dask', 'distributed') for name in sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=False).returncode == 0


def test_batches_are_contiguous_near_equal_and_cover_every_task_once() -> None:
    assert fanout._batches(10, 4) == [range(0, 2), range(2, 5), range(5, 7), range(7, 10)]
    assert fanout._batches(3, 8) == [range(0, 1), range(1, 2), range(2, 3)]
    pieces = fanout._batches(564, 8)
    assert [index for piece in pieces for index in piece] == list(range(564))
    assert {len(piece) for piece in pieces} <= {70, 71}


def test_no_cron_script_can_start_a_cluster() -> None:
    """Only research commands fan out: nothing a crontab line runs (or run_pipeline launches) imports lib.ops.fanout,
    directly or through another module."""
    from tests.unit.test_layout import import_graph

    crontab = (REPO_ROOT / "crontab.txt").read_text()
    cron = {name for line in crontab.splitlines() if not line.lstrip().startswith("#")
            for name in re.findall(r"poetry run (\w+)|--stages ([\w ]+)", line) for name in " ".join(name).split()}
    graph = import_graph(REPO_ROOT)
    for script in sorted(cron):
        seen, todo = set(), [f"scripts.{script}"]
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, {}))
        assert f"scripts.{script}" in graph and "lib.ops.fanout" not in seen, script
    assert {"fetch_prices", "run_pipeline", "compute_signals", "rebalance", "report"} <= cron

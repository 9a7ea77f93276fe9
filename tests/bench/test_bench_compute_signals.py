"""Benchmark: compute_signals end to end (process start to exit) on 30 symbols of simulated data written
by the real fetch_prices (setup, not timed). Target: < 5 s and < 400 MB peak RSS.

Two histories: the default daily timeframe since 2019 (~2,200 bars) and an hourly one since 2023
(~17,000 bars). Nothing asserts on time (machines vary); the figures are printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from lib.execution.simulated_params import DEFAULT_SYMBOLS
from tests.bench.conftest import Measured
from tests.integration.conftest import Project

pytestmark = pytest.mark.bench

REPO_ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2024-12-05T00:10:00Z"
EXTRA_SYMBOLS = ("AAA/USDT", "BBB/USDT", "CCC/USDT", "DDD/USDT", "EEE/USDT")  # hash-derived synthetic assets
SYMBOLS = (*(s for s in DEFAULT_SYMBOLS if s != "POL/USDT"), *EXTRA_SYMBOLS)[:30]  # POL lists 2024-09: same load
ROUNDS = 3


def config_text(timeframe: str, backfill: str) -> str:
    symbols = ", ".join(f'"{symbol}"' for symbol in SYMBOLS)
    return f"""
[exchange]
id = "simulated"
[simulated]
symbols = [{symbols}]
[data]
symbols = [{symbols}]
timeframes = ["{timeframe}"]
backfill_start = "{backfill}"
[strategy]
timeframe = "{timeframe}"
[alerts]
telegram_base_url = "http://127.0.0.1:9"
"""


@pytest.fixture(scope="module", params=[("1d", "2019-01-01"), ("1h", "2023-01-01")], ids=["1d", "1h"])
def fetched_project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, str]:
    if not (REPO_ROOT / "scripts" / "compute_signals.py").exists():
        pytest.skip("scripts/compute_signals.py does not exist yet")
    assert len(SYMBOLS) == 30
    project = Project(tmp_path_factory.mktemp(f"signals_{request.param[0]}"))
    project.write_config(config_text(*request.param))
    fetched = project.run("fetch_prices", "--as-of", AS_OF)
    assert fetched.returncode == 0, fetched.stderr
    return project, request.param[0]


def test_compute_signals_on_30_symbols(fetched_project: tuple[Project, str], benchmark, measure, report) -> None:
    project, timeframe = fetched_project
    argv = [sys.executable, "-m", "scripts.compute_signals", "--config", str(project.config),
            "--as-of", AS_OF]
    runs: list[Measured] = []

    def run_once() -> None:
        measured = measure(argv, cwd=project.root)
        assert measured.returncode == 0, measured.stderr
        runs.append(measured)

    benchmark.pedantic(run_once, rounds=ROUNDS, iterations=1)
    assert (project.state / "targets.json").exists()
    bars = len(pd.read_parquet(project.data / "ohlcv" / "simulated" / timeframe / "BTC-USDT.parquet"))
    best_s, peak_mb = min(run.wall_s for run in runs), max(run.peak_rss_mb for run in runs)
    benchmark.extra_info.update(wall_s_min=best_s, wall_s_all=[run.wall_s for run in runs], peak_rss_mb=peak_mb,
                                symbols=len(SYMBOLS), timeframe=timeframe, bars=bars)
    report(f"compute_signals 30 symbols x {bars} {timeframe} bars, process start to exit: best {best_s:.1f} s of "
           f"{len(runs)} (all {', '.join(f'{run.wall_s:.1f}' for run in runs)}; target < 5 s), "
           f"peak RSS {peak_mb:.0f} MB (target < 400 MB)")


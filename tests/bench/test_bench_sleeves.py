"""Benchmark: compute_signals end to end for the sleeve books (trend_core, combined) and, for reference,
spot_long_only, on 30 symbols of simulated daily data since 2019 (~2,200 bars) written by the real
fetch_prices. Target (issue #10): cold start to exit <= 3 s and peak RSS <= 300 MB. Figures are printed
(machines vary); nothing asserts on time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.bench.conftest import Measured
from tests.bench.test_bench_compute_signals import AS_OF, REPO_ROOT, config_text
from tests.integration.conftest import Project

pytestmark = pytest.mark.bench
ROUNDS = 3


@pytest.fixture(scope="module")
def daily_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    if not (REPO_ROOT / "scripts" / "compute_signals.py").exists():
        pytest.skip("scripts/compute_signals.py does not exist yet")
    project = Project(tmp_path_factory.mktemp("sleeves_1d"))
    project.write_config(config_text("1d", "2019-01-01"))
    fetched = project.run("fetch_prices", "--as-of", AS_OF)
    assert fetched.returncode == 0, fetched.stderr
    return project


@pytest.mark.parametrize("name", ["spot_long_only", "trend_core", "combined"])
def test_compute_signals_sleeve_books_on_30_daily_symbols(daily_project: Project, name: str, measure, report) -> None:
    argv = [sys.executable, "-m", "scripts.compute_signals", "--config", str(daily_project.config), "--as-of", AS_OF]
    runs: list[Measured] = []
    for _ in range(ROUNDS):
        measured = measure(argv, cwd=daily_project.root, env={"COINBOT__STRATEGY__NAME": name})
        assert measured.returncode == 0, measured.stderr
        runs.append(measured)
    assert Path(daily_project.state / "targets.json").exists()
    best_s, peak_mb = min(run.wall_s for run in runs), max(run.peak_rss_mb for run in runs)
    report(f"compute_signals {name}, 30 symbols x ~2,200 1d bars: best {best_s:.1f} s of {ROUNDS} "
           f"(all {', '.join(f'{run.wall_s:.1f}' for run in runs)}; target <= 3 s), peak RSS {peak_mb:.0f} MB "
           "(target <= 300 MB)")

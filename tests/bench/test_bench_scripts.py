"""Benchmarks of the other cron scripts (issue 12's table), each a whole process from start to exit:

- fetch_prices with nothing new, 30 symbols x 43,824 hourly bars on disk (target <= 1.5 s CPU, <= 200 MB);
- report --dry-run on the hourly strategy with that history (target <= 300 MB);
- run_pipeline's own launch overhead (``--help``: parse, import, exit) next to a bare interpreter;
- the rest of the cron chain with that history on disk, real runs: rebalance (paper, already at its targets) and report
  (with its chart), so every cron script's peak is measured (issue 12: none above 300 MB).

Setup (not timed): the real fetch_prices fills the project from the simulated exchange, compute_signals and a
paper rebalance give report a book. Nothing asserts on time; one ``report(...)`` line per figure:
"what | measured | target".
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from tests.bench.conftest import Measured, median
from tests.bench.test_bench_compute_signals import AS_OF, HOURLY_BACKFILL, REPO_ROOT, config_text
from tests.integration.conftest import Project

pytestmark = pytest.mark.bench

ROUNDS = 5


@pytest.fixture(scope="module")
def hourly_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = Project(tmp_path_factory.mktemp("scripts_1h"))
    project.write_config(config_text("1h", HOURLY_BACKFILL))
    for script, *args in (("fetch_prices",), ("compute_signals",), ("rebalance",)):
        done = project.run(script, "--as-of", AS_OF, *args, timeout_s=900)
        assert done.returncode == 0, done.stderr
    return project


def _runs(measure: Callable[..., Measured], argv: list[str], project: Project, *, ok: tuple[int, ...] = (0,),
          rounds: int = ROUNDS) -> list[Measured]:
    runs = [measure(argv, cwd=project.root) for _ in range(rounds)]
    for run in runs:
        assert run.returncode in ok, run.stderr
    return runs


def _script(project: Project, name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"scripts.{name}", "--config", str(project.config), "--as-of", AS_OF, *args]


def test_fetch_prices_with_nothing_new(hourly_project: Project, measure, report) -> None:
    runs = _runs(measure, _script(hourly_project, "fetch_prices"), hourly_project)
    assert "30 unchanged" in runs[-1].stderr
    report(f"fetch_prices nothing new, 30 x 43,824 1h bars | {median([r.cpu_s for r in runs]):.2f} s CPU, "
           f"peak {max(r.peak_rss_mb for r in runs):.0f} MB | <= 1.5 s CPU, <= 200 MB")


def test_report_dry_run_on_the_hourly_strategy(hourly_project: Project, measure, report) -> None:
    runs = _runs(measure, _script(hourly_project, "report", "--dry-run"), hourly_project, rounds=3)
    report(f"report --dry-run 1h, 30 x 43,824 bars | {median([r.cpu_s for r in runs]):.2f} s CPU, "
           f"peak {max(r.peak_rss_mb for r in runs):.0f} MB | <= 300 MB")


def test_run_pipeline_launch_overhead(measure, report, tmp_path) -> None:
    project = Project(tmp_path)
    pipeline = _runs(measure, [sys.executable, "-m", "scripts.run_pipeline", "--help"], project)
    bare = _runs(measure, [sys.executable, "-c", "pass"], project)
    assert (REPO_ROOT / "scripts" / "run_pipeline.py").exists()
    report(f"run_pipeline launch (--help: imports, parse, exit) | {median([r.cpu_s for r in pipeline]):.3f} s CPU, "
           f"peak {max(r.peak_rss_mb for r in pipeline):.0f} MB; bare interpreter "
           f"{median([r.cpu_s for r in bare]):.3f} s, {max(r.peak_rss_mb for r in bare):.0f} MB | near a bare "
           f"interpreter")


@pytest.mark.parametrize("script", ["rebalance", "report"])
def test_the_rest_of_the_cron_chain_on_the_hourly_history(hourly_project: Project, script: str, measure,
                                                          report) -> None:
    runs = _runs(measure, _script(hourly_project, script), hourly_project, rounds=3)
    report(f"{script} (a real cron run, paper) 1h, 30 x 43,824 bars on disk | "
           f"{median([r.cpu_s for r in runs]):.2f} s CPU, peak {max(r.peak_rss_mb for r in runs):.0f} MB | <= 300 MB")

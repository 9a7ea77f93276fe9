"""scripts/research.py with its candidates on an external Dask scheduler (a LocalCluster started here, its
address passed as --scheduler) gives the same report as the serial in-process run (--workers 1); a candidate
that fails on a worker stops the run with a non-zero exit, the task named, and nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import LocalCluster

from lib.core.errors import EXIT_FAILURE
from tests.integration.conftest import Project
from tests.integration.test_research import CONFIG, FAST, write_market


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0") as cluster:  # 8787 may be taken by a parallel test
        yield cluster.scheduler_address


@pytest.fixture
def ready(project: Project) -> Project:
    project.write_config(CONFIG)
    return project


def test_the_report_on_an_external_scheduler_equals_the_serial_one(ready: Project, scheduler: str,
                                                                   tmp_path: Path) -> None:
    data = write_market(tmp_path / "data", future_seed=1)
    runs = {}
    for run_id, where in (("serial", ("--workers", "1")), ("dask", ("--scheduler", scheduler))):
        result = ready.run("research", "--data-dir", str(data), *FAST, "--run-id", run_id, *where)
        assert result.returncode == 0, result.stderr
        runs[run_id] = ready.state / "research" / run_id
    assert f"candidates (dask, {scheduler})" in result.stderr and "fan-out on the Dask scheduler" in result.stderr
    serial, spread = (json.loads((runs[name] / "report.json").read_text()) for name in ("serial", "dask"))
    assert serial.pop("run_id") == "serial" and spread.pop("run_id") == "dask"
    assert serial == spread and serial["protocol"]["trial_count"] == 12
    assert (runs["serial"] / "returns.parquet").read_bytes() == (runs["dask"] / "returns.parquet").read_bytes()


def test_a_failed_task_exits_non_zero_and_writes_nothing(ready: Project, scheduler: str, tmp_path: Path) -> None:
    data = write_market(tmp_path / "data", future_seed=1)
    shutil.rmtree(data / "funding")  # the perpetual family's tasks then fail (no candles)
    # --own-starts: each candidate from its own first day, so the failure happens inside the task on the cluster
    # (the default common start would already refuse in the driver, before any task: also non-zero, nothing written)
    result = ready.run("research", "--data-dir", str(data), *FAST, "--run-id", "broken", "--scheduler", scheduler,
                       "--own-starts")
    assert result.returncode == EXIT_FAILURE
    assert "candidates: task" in result.stderr and "no perpetual (with funding) candles" in result.stderr
    assert not (ready.state / "research" / "broken").exists()
    assert not (ready.state / "research_ledger.jsonl").exists() or "broken" not in (
        ready.state / "research_ledger.jsonl").read_text()

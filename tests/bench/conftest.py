"""Benchmark helpers: measure a whole process honestly (wall time, its own CPU seconds and peak RSS via wait4), and
print the figures next to their targets. Benchmarks are excluded from the default run; run them with
`.venv/bin/python -m pytest tests/bench -m bench` (add `-s` to also see pytest-benchmark's own table)."""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import script_env

KIB_PER_MIB = 1024  # Linux reports ru_maxrss in KiB


@dataclass(frozen=True, slots=True)
class Measured:
    """One finished process: exit code, wall seconds from start to exit, peak resident set (MiB), and CPU
    seconds (user + system, the kernel's own accounting of that process: the figure that stays meaningful
    on a shared, noisy machine)."""

    returncode: int
    wall_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    cpu_s: float = 0.0


def measure_process(argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> Measured:
    """Run ``argv`` to completion. The peak RSS is the child's own (``os.wait4`` rusage), not the max
    over every child this test process ever had (which RUSAGE_CHILDREN would give). Linux counts the
    forked copy of this (pytest) process before exec, so a peak below this process's own RSS reads as
    that floor: for small processes (run_pipeline) quote ``/usr/bin/time -v``'s maximum resident set size instead."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(argv), cwd=cwd, env=script_env(env), stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall_s = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # the Popen object must know it was reaped
        out.seek(0)
        err.seek(0)
        return Measured(process.returncode, wall_s, usage.ru_maxrss / KIB_PER_MIB, out.read(), err.read(),
                        cpu_s=usage.ru_utime + usage.ru_stime)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def machine() -> str:
    return f"{os.cpu_count()} CPU(s) {platform.machine()}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


@pytest.fixture
def measure() -> Callable[..., Measured]:
    return measure_process


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[str], None]]:
    """Print a figure line to the terminal even without -s (benchmarks exist to be read)."""
    lines: list[str] = []
    yield lines.append
    with capsys.disabled():
        for line in lines:
            print(f"\nBENCH {line} [{machine()}]")


# ---- issue #12: the figures' table, printed again as one summary at the end of the session ----------------------

SUMMARY_ROWS: list[tuple[str, str, str]] = []


@pytest.fixture
def table_row(report: Callable[[str], None]) -> Callable[[str, str, str], None]:
    """``table_row(what, measured, target)``: one row of the issue's table, printed now (``report``) and kept for
    the summary table at the end of the session."""

    def add(what: str, measured: str, target: str) -> None:
        SUMMARY_ROWS.append((what, measured, target))
        report(f"{what} | {measured} | {target}")

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SUMMARY_ROWS:
        return
    terminalreporter.write_sep("=", f"benchmark figures ({machine()})")
    terminalreporter.write_line("| what | measured | target |")
    terminalreporter.write_line("|---|---|---|")
    for what, measured, target in SUMMARY_ROWS:
        terminalreporter.write_line(f"| {what} | {measured} | {target} |")

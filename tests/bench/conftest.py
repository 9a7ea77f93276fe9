"""Benchmark helpers: measure a whole process honestly (wall time, its own CPU seconds and peak RSS via wait4), and
print the figures next to their targets. Benchmarks are excluded from the default run; run them with
`.venv/bin/python -m pytest tests/bench -m bench` (add `-s` to also see pytest-benchmark's own table)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
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


# A small interpreter forks and execs the measured command, then reports that child's own rusage. Started from
# pytest directly, the child's peak RSS would read as at least pytest's own (Linux records the pre-exec copy of the
# parent's memory: 285-706 MB late in a bench run, against ~15 MB for run_pipeline); forked from this launcher
# (python -S, ~9 MB) the floor is the launcher's, below a bare interpreter's.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} {usage.ru_utime} {usage.ru_stime}")
"""


def measure_process(argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> Measured:
    """Run ``argv`` to completion: its exit code, wall time, and its own peak RSS and CPU seconds (``os.wait4`` in
    a small launcher process, above: not pytest's memory, not the max over every child this process had)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as usage_file:
        started = time.perf_counter()
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, usage_file.name, *argv]
        subprocess.run(launcher, cwd=cwd, env=script_env(env), stdout=out, stderr=err, text=True, check=True)
        wall_s = time.perf_counter() - started
        returncode, maxrss_kib, user_s, system_s = usage_file.read().split()
        out.seek(0)
        err.seek(0)
        return Measured(int(returncode), wall_s, int(maxrss_kib) / KIB_PER_MIB, out.read(), err.read(),
                        cpu_s=float(user_s) + float(system_s))


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

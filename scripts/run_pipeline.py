"""Run the main job in order: fetch_prices → compute_signals → rebalance → report, stopping at the first failure.

A PARTIAL stage (exit 5: e.g. one symbol could not be fetched, the others were) is not a failure: the chain
goes on with the healthy symbols, and run_pipeline itself exits 5 at the end when everything else was ok.

Each stage is its own process (scripts never import each other) with its own lock, run record and alert;
this wrapper only guarantees the order and that a stage never runs on the output of a failed one. A stage still
running after --stage-timeout-min is interrupted (SIGINT: its runner records and alerts the failure, exit 130),
killed if it has not ended GRACE_S later, and the chain stops there. It is what crontab.txt and the README
quickstart call. It imports nothing heavy (no pandas, ccxt, matplotlib: a
test pins it), so its own start costs about a bare interpreter.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from lib.core.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL
from lib.core.paths import CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE

STAGES = ("fetch_prices", "compute_signals", "rebalance", "report")
STAGE_TIMEOUT_MIN = 50.0
"""A stage's normal run takes minutes; one still running after this hangs (before the hourly fetch_prices' next
start, so a hung fetch is not first seen as that run's SKIPPED alert)."""
GRACE_S = 120.0  # after the interrupt: time for the stage's alert (Telegram retries) and run record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
    parser.add_argument("--as-of", dest="as_of", default=None, help="passed to every stage (paper mode only)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="run only these stages (still in pipeline order)")
    parser.add_argument("--dry-run", action="store_true", help="rebalance and report send nothing")
    parser.add_argument("--live", action="store_true", help="the explicit opt-in for live trading (rebalance)")
    parser.add_argument("--stage-timeout-min", type=float, default=STAGE_TIMEOUT_MIN,
                        help="interrupt a stage still running after this many minutes and stop the chain")
    return parser.parse_args(argv)


def stage_command(stage: str, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", f"scripts.{stage}", "--config", args.config]
    if args.as_of:
        command += ["--as-of", args.as_of]
    if args.dry_run and stage in ("rebalance", "report"):
        command.append("--dry-run")
    if args.live and stage == "rebalance":
        command.append("--live")
    return command


def run_stage(command: list[str], *, timeout_s: float, grace_s: float, name: str = "the stage") -> int:
    """The stage's exit code; one that outlives ``timeout_s`` gets SIGINT, then SIGKILL after ``grace_s``. A
    stage ended by a signal is a failure (EXIT_FAILURE)."""
    child = subprocess.Popen(command)
    try:
        code = child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"run_pipeline: {name} still running after {timeout_s:.0f} s: interrupting it", file=sys.stderr,
              flush=True)
        child.send_signal(signal.SIGINT)
        try:
            code = child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            print(f"run_pipeline: still running {grace_s:.0f} s after the interrupt: killing it", file=sys.stderr)
            child.kill()
            code = child.wait()
    return EXIT_FAILURE if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.path.isfile(args.config):
        print(f"run_pipeline: config file not found: {args.config}", file=sys.stderr)
        return EXIT_CONFIG
    partial = []
    for stage in (stage for stage in STAGES if stage in args.stages):
        print(f"run_pipeline: ── {stage} ──", file=sys.stderr, flush=True)
        exit_code = run_stage(stage_command(stage, args), timeout_s=args.stage_timeout_min * 60, grace_s=GRACE_S,
                              name=stage)
        if exit_code == EXIT_LOCKED:  # the stage recorded and alerted the skip itself (lib.ops.runner)
            print(f"run_pipeline: {stage} SKIPPED (another run holds its lock); later stages skipped",
                  file=sys.stderr)
            return exit_code
        if exit_code == EXIT_PARTIAL:
            print(f"run_pipeline: {stage} partly done (exit {exit_code}); going on with what it did",
                  file=sys.stderr)
            partial.append(stage)
        elif exit_code != EXIT_OK:
            print(f"run_pipeline: {stage} exited {exit_code}; later stages skipped", file=sys.stderr)
            return exit_code
    if partial:
        print(f"run_pipeline: all stages ran; partly done: {', '.join(partial)}", file=sys.stderr)
        return EXIT_PARTIAL
    print("run_pipeline: all stages ok", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

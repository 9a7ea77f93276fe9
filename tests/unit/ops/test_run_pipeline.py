"""scripts.run_pipeline's stage timeout on real child processes: a stage that hangs is interrupted (SIGINT: a coinbot
script's runner then records and alerts the failure itself), killed if it ignores that, and stops the chain."""

from __future__ import annotations

import sys
import time

from scripts import run_pipeline

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
DEAF_SLEEPER = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"]
INTERRUPT_AWARE = [sys.executable, "-c", "import sys, time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
                   "    sys.exit(130)"]


def test_a_stage_that_finishes_in_time_keeps_its_exit_code() -> None:
    assert run_pipeline.run_stage([sys.executable, "-c", "raise SystemExit(5)"], timeout_s=30, grace_s=1) == 5


def test_a_hanging_stage_is_interrupted_and_fails_the_chain() -> None:
    started = time.monotonic()
    assert run_pipeline.run_stage(INTERRUPT_AWARE, timeout_s=0.5, grace_s=10) == 130  # the runner's own code
    assert run_pipeline.run_stage(SLEEPER, timeout_s=0.5, grace_s=10) == 1  # died of the signal: a failure
    assert time.monotonic() - started < 15


def test_a_stage_that_ignores_the_interrupt_is_killed_after_the_grace() -> None:
    started = time.monotonic()
    assert run_pipeline.run_stage(DEAF_SLEEPER, timeout_s=1.0, grace_s=0.5) == 1
    assert time.monotonic() - started < 10


def test_main_stops_at_a_stage_that_timed_out(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    config = tmp_path / "config.toml"
    config.write_text("")
    monkeypatch.setattr(run_pipeline, "stage_command", lambda stage, args: SLEEPER)
    assert run_pipeline.main(["--config", str(config), "--stage-timeout-min", "0.01"]) == 1
    err = capsys.readouterr().err
    assert "fetch_prices still running after" in err and "compute_signals" not in err

"""Edge: the wrapper every script runs in: config, logging, clock, lock, run records, alert on failure.

`run_script` is the only place that reads the clock (once, as ``now_ms``) and the only top-level
exception handler: a script's body raises domain errors, and this turns them into one ERROR log line,
one Telegram alert, one run record and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from loguru import logger

from lib.core.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_LOCKED,
    EXIT_OK,
    CoinbotError,
    ConfigError,
    PartialFailure,
)
from lib.core.paths import CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE, ProjectPaths, venue_dir_name
from lib.core.state import RunRecord
from lib.core.storage import LockHeld, append_jsonl, exclusive_lock, read_jsonl
from lib.core.timeframes import format_ms, parse_time_ms
from lib.ops import alerts
from lib.ops.config import (
    Config,
    Secrets,
    load_alerts_section_best_effort,
    load_config,
    load_secrets,
    load_secrets_best_effort,
)

DEFAULT_CONFIG = DEFAULT_CONFIG_FILE  # re-exported: defined in lib.core.paths (run_pipeline needs no pandas)
CONFIG_ENV = CONFIG_FILE_ENV


@dataclass(frozen=True, slots=True)
class RunContext:
    script: str
    run_id: str
    now_ms: int
    config: Config
    secrets: Secrets
    paths: ProjectPaths
    args: argparse.Namespace
    interrupted: str = ""  # the previous run of this script started and never finished (killed): what we know of it

    def alert(self, text: str, *, image: bytes | None = None, incident: bool = True) -> bool:
        """Send a Telegram message (the one alert path); False when not delivered.

        ``incident=False`` (the daily report): without Telegram it is logged at INFO, not as a WARNING."""
        return alerts.send(text, section=self.config.alerts, secrets=self.secrets, image=image, incident=incident)


def base_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every script takes: --config and --as-of."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG),
        help=f"path to the TOML config (default: ${CONFIG_ENV} or {DEFAULT_CONFIG}); .env is read from its directory",
    )
    parser.add_argument(
        "--as-of",
        dest="as_of",
        default=None,
        help="run as if the clock read this time (ISO date/time UTC or epoch ms); paper mode only",
    )
    return parser


def run_script(script: str, args: argparse.Namespace, body: Callable[[RunContext], None], *,
               writes_state: bool = True) -> int:
    """Run ``body`` inside the standard wrapper; returns the process exit code.

    ``writes_state=False`` (a dry run that writes nothing): no lock file and no run records under state/, so the
    run leaves state/ exactly as it found it (nothing it does can collide with a real run); failures still exit
    non-zero with one alert."""
    wall_ms = int(time.time() * 1000)
    run_id = f"{script}-{datetime.fromtimestamp(wall_ms / 1000, UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    _configure_logging(script=script, run_id=run_id, secrets=Secrets(), level="INFO", log_file=None)
    config_path = Path(args.config)
    try:
        config = load_config(config_path)
        secrets = load_secrets(config.base_dir / ".env")
    except ConfigError as error:
        logger.error("config error: {}", error)
        secrets, _ = load_secrets_best_effort(config_path.resolve().parent / ".env")  # .env may be the error
        _configure_logging(script=script, run_id=run_id, secrets=secrets, level="INFO", log_file=None)
        alerts.send(_alert_text(script, run_id, error, "stderr", secrets),
                    section=load_alerts_section_best_effort(config_path), secrets=secrets)
        return EXIT_CONFIG
    log_file = (config.base_dir / config.paths.log_file) if config.paths.log_file else None
    _configure_logging(script=script, run_id=run_id, secrets=secrets, level=config.logging.level, log_file=log_file,
                       rotation_mb=config.logging.rotation_mb, retention_files=config.logging.retention_files)
    venue = venue_dir_name(config.exchange.id, config.exchange.market_type)
    paths = ProjectPaths(config.data_dir, config.state_dir, venue)
    log_location = str(log_file) if log_file else "stderr (see the cron log redirect)"
    try:
        now_ms = _resolve_now_ms(args.as_of, wall_ms=wall_ms, mode=config.exchange.mode)
    except ConfigError as error:
        logger.error("{}", error)
        return EXIT_CONFIG
    context = RunContext(script, run_id, now_ms, config, secrets, paths, args)
    if not writes_state:
        return _run_locked(context, body, log_location, record=False)
    try:
        with exclusive_lock(paths.lock(script)):
            return _run_locked(context, body, log_location)
    except LockHeld:
        return _skipped_locked(context, log_location)
    except OSError as error:  # the lock file cannot even be created (full disk, permissions)
        logger.error("cannot take the lock {}: {}", paths.lock(script), error)
        context.alert(_alert_text(script, run_id, error, log_location, secrets))
        return EXIT_FAILURE


def _run_locked(context: RunContext, body: Callable[[RunContext], None], log_location: str, *,
                record: bool = True) -> int:
    """Run the body between a start and a finish record (``record``); exactly one alert whatever fails (disk
    included)."""
    exit_code, status, error_text = EXIT_OK, "ok", ""
    try:
        context = replace(context, interrupted=_interrupted_previous(context))
        if context.interrupted:
            logger.warning("{}", context.interrupted)
        if record:
            _record(context, event="start", status="running", exit_code=None)
        body(context)
    except PartialFailure as error:  # the script alerted what is new; the chain goes on
        exit_code, status, error_text = error.exit_code, "partial", f"{type(error).__name__}: {error}"
        logger.warning("{} partly done: {}", context.script, error_text)
    except CoinbotError as error:
        exit_code, status, error_text = error.exit_code, "failed", f"{type(error).__name__}: {error}"
        logger.error("{} failed: {}", context.script, error_text)
        context.alert(_alert_text(context.script, context.run_id, error, log_location, context.secrets))
    except BaseException as error:  # unexpected: keep the traceback in the log (redacted by the patcher)
        exit_code = 130 if isinstance(error, KeyboardInterrupt) else EXIT_FAILURE
        status, error_text = "failed", f"{type(error).__name__}: {error}"
        logger.error("{} crashed: {}\n{}", context.script, error_text, "".join(traceback.format_exception(error)))
        context.alert(_alert_text(context.script, context.run_id, error, log_location, context.secrets))
    try:
        if record:
            _record(context, event="finish", status=status, exit_code=exit_code, error=error_text)
    except OSError as error:  # e.g. a full disk: the health check will not see this run, so say it once
        logger.error("could not record the run in {}: {}", context.paths.runs, error)
        if exit_code == EXIT_OK:
            exit_code = EXIT_FAILURE
            context.alert(_alert_text(context.script, context.run_id, error, log_location, context.secrets))
    if exit_code == EXIT_OK:
        logger.info("{} finished ok", context.script)
    return exit_code


def _skipped_locked(context: RunContext, log_location: str) -> int:
    """Another run holds the lock: this stage does not run today. Recorded (a ``skipped`` finish that health
    counts as a failure) and alerted once, so a skipped rebalance is never silent."""
    lock = context.paths.lock(context.script)
    detail = f"another {context.script} run holds {lock}; this run did nothing (stage SKIPPED)"
    logger.error("{}", detail)
    context.alert(f"coinbot: {context.script} SKIPPED on {socket.gethostname()}\n{detail}\n"
                  f"run: {context.run_id}\nlog: {log_location}")
    try:
        _record(context, event="finish", status="skipped", exit_code=EXIT_LOCKED, error=detail)
    except OSError as error:
        logger.error("could not record the skipped run in {}: {}", context.paths.runs, error)
    return EXIT_LOCKED


def _interrupted_previous(context: RunContext) -> str:
    """Non-empty when this script's last record is a start without its finish: that run was killed (SIGKILL, OOM,
    power) before it could record or alert anything. We hold the lock, so it is not still running. An unreadable
    runs.jsonl says nothing here (the health check reports it)."""
    try:
        records, _ = read_jsonl(context.paths.runs)
    except (OSError, CoinbotError):
        return ""
    mine = [r for r in records if isinstance(r, dict) and r.get("script") == context.script]
    if not mine or mine[-1].get("event") != "start":
        return ""
    last = mine[-1]
    started = last.get("now_ms")
    when = format_ms(started) if isinstance(started, int) else "at an unknown time"
    return (f"the previous {context.script} run {last.get('run_id', '?')} (started {when}) never finished: killed or "
            "crashed hard; this run checks what it left")


def _record(context: RunContext, *, event: Literal["start", "finish"], status: str, exit_code: int | None,
            error: str = "") -> None:
    record = RunRecord(script=context.script, run_id=context.run_id, event=event, now_ms=context.now_ms,
                       wall_ms=int(time.time() * 1000), host=socket.gethostname(), status=status,
                       exit_code=exit_code, error=alerts.redactor(context.secrets)(error)[:500])
    append_jsonl(context.paths.runs, record.to_dict())


def _alert_text(script: str, run_id: str, error: BaseException, log_location: str, secrets: Secrets) -> str:
    """Redacted before the error is cut to 1500 characters: a cut through a secret would leak its head."""
    return (
        f"coinbot: {script} FAILED on {socket.gethostname()}\n"
        f"{type(error).__name__}: {alerts.redactor(secrets)(str(error))[:1500]}\n"
        f"run: {run_id}\nlog: {log_location}"
    )


def _resolve_now_ms(as_of: str | None, *, wall_ms: int, mode: str) -> int:
    if as_of is None:
        return wall_ms
    if mode != "paper":
        raise ConfigError("--as-of is only allowed in paper mode (it would trade on a fake clock)")
    return parse_time_ms(as_of, what="--as-of")


def _configure_logging(
    *, script: str, run_id: str, secrets: Secrets, level: str, log_file: Path | None,
    rotation_mb: int = 10, retention_files: int = 5,
) -> None:
    """Configure loguru once per process: stderr (+ optional rotating file), secrets redacted everywhere."""
    redact = alerts.redactor(secrets)

    def patch(record: dict) -> None:  # type: ignore[type-arg]
        record["message"] = redact(record["message"])
        record["extra"].setdefault("script", script)
        record["extra"].setdefault("run_id", run_id)

    logger.remove()
    logger.configure(patcher=patch)  # type: ignore[arg-type]
    line = "{time:YYYY-MM-DDTHH:mm:ss!UTC}Z {level: <7} {extra[script]} | {message}"
    logger.add(sys.stderr, level=level, format=line, backtrace=False, diagnose=False, colorize=False)
    if log_file is not None:
        logger.add(log_file, level=level, format=line, backtrace=False, diagnose=False,
                   rotation=f"{rotation_mb} MB", retention=retention_files)

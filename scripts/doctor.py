"""Check that coinbot can trade: config, keys and their permissions, exchange, data, state, halt, cron.

One row per check (or --json); exit 1 when a row is FAIL (something would stop trading), 2 when the config is
invalid (its row is still printed), else 0. Writes no file (no lock, no run record: no run_script; clock read here)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from loguru import logger

from lib.core import errors, storage
from lib.core.paths import ProjectPaths, venue_dir_name
from lib.core.symbols import to_traded_symbols
from lib.data.ohlcv import OHLCV_COLUMNS, OHLCV_DTYPES
from lib.execution import binance_keys, ccxt_client, venue_session
from lib.ops import doctor, doctor_margin
from lib.ops.alerts import redactor
from lib.ops.config import Config, Secrets, load_config, load_secrets_best_effort
from lib.ops.doctor import FileFacts, Finding, SeriesFacts
from lib.ops.health import newest_closed_open_ms, to_run_records
from lib.ops.runner import CONFIG_ENV, DEFAULT_CONFIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG),
                        help=f"path to the TOML config (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})")
    parser.add_argument("--as-of", dest="as_of", help="judge freshness at this time (ISO UTC or epoch ms)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON instead of a table")
    parser.add_argument("--live", action="store_true", help="count as the live opt-in (as rebalance --live)")
    args = parser.parse_args(argv)
    logger.configure(handlers=[{"sink": sys.stderr, "level": "WARNING", "format": "{level}: {message}"}])
    config_path, config, config_error, now_ms = Path(args.config), None, "", int(time.time() * 1000)
    try:
        now_ms = doctor.to_now_ms(args.as_of, wall_ms=now_ms)
        config = load_config(config_path)
    except errors.ConfigError as error:
        config_error = str(error)
    dotenv = (config.base_dir if config else config_path.resolve().parent) / ".env"
    secrets, env_error = load_secrets_best_effort(dotenv)  # an unreadable .env: a FAIL row, not a traceback
    redact = redactor(secrets)  # findings carry no secret by construction; this also covers exchange error texts
    logger.configure(patcher=lambda record: record.update(message=redact(record["message"])))  # type: ignore
    summary = (f"{config.exchange.id} {config.exchange.market_type}, mode {config.exchange.mode}, "
               f"{config.strategy.name} on {config.strategy.timeframe}") if config else ""
    findings = [doctor.check_config(config_error or env_error, config_path=str(config_path), summary=summary),
                doctor.check_env_file(path=str(dotenv), mode_bits=dotenv.stat().st_mode if dotenv.is_file() else None)]
    crontab, crontab_error = _read_crontab()
    if config is not None:
        findings += _check_project(config, secrets, live_flag=args.live, now_ms=now_ms, crontab=crontab or "")
    findings.append(doctor.check_crontab(listing=crontab, error=crontab_error))
    print(redact(json.dumps(doctor.to_json_document(findings, now_ms=now_ms), indent=2) if args.json
                 else doctor.to_table(findings, now_ms=now_ms)))
    return errors.EXIT_CONFIG if config_error or env_error else errors.EXIT_FAILURE * doctor.has_failure(findings)


def _check_project(config: Config, secrets: Secrets, *, live_flag: bool, now_ms: int, crontab: str) -> list[Finding]:
    section, params = config.exchange, config.doctor
    paths = ProjectPaths(config.data_dir, config.state_dir, venue_dir_name(section.id, section.market_type))
    findings = doctor.check_keys(mode=section.mode, has_exchange_keys=secrets.has_exchange_keys,
                                 live_opt_in=section.live_confirmed or live_flag or "--live" in crontab)
    symbols = to_traded_symbols([*config.data.symbols, config.strategy.benchmark_symbol],
                                market_type=section.market_type)
    findings += _check_exchange(config, secrets, now_ms=now_ms, wanted=symbols[:-1])
    findings.append(doctor.check_alerts(has_telegram=secrets.has_telegram))
    series = [_series_facts(paths, symbol, timeframe, now_ms=now_ms)
              for timeframe in config.data.timeframes for symbol in dict.fromkeys(symbols)]
    findings += doctor.check_data_freshness(series, now_ms=now_ms, max_staleness_bars=config.data.max_staleness_bars,
                                            trading_timeframe=config.strategy.timeframe, benchmark=symbols[-1])
    try:
        events, torn = storage.read_jsonl(paths.journal)
        journal = doctor.check_journal(exists=paths.journal.exists(), event_count=len(events), torn=torn)
    except errors.StateError as error:
        journal = doctor.check_journal(exists=True, event_count=0, torn=False, read_error=str(error))
    findings += [doctor.check_targets(_file_facts(paths.targets), now_ms=now_ms), journal,
                 *doctor.check_position_rows(_file_facts(paths.positions)), doctor.check_halt(_file_facts(paths.halt)),
                 doctor.check_kill_switch(exists=paths.kill_switch.exists()),
                 *doctor_margin.findings(paths, config, now_ms)]  # perp margin; carry books: wallets, data, hedges
    try:
        raw_records, torn = storage.read_jsonl(paths.runs)
        records = to_run_records(raw_records)
    except errors.StateError as error:
        return findings + doctor.check_runs_file(read_error=str(error), torn=False)
    limits = doctor.to_job_age_limits_ms(config.health, params)
    return [*findings, *doctor.check_runs_file(read_error="", torn=torn),
            *doctor.check_job_runs(records, now_ms=now_ms, max_age_ms=limits)]


def _check_exchange(config: Config, secrets: Secrets, *, now_ms: int, wanted: list[str]) -> list[Finding]:
    """Load markets once (no retries: a doctor reports, it does not wait out an outage), then key permissions."""
    section, has_keys, client, listed, error = config.exchange, secrets.has_exchange_keys, None, None, ""
    try:
        if section.id == "simulated":  # built in: always reachable
            listed = set(venue_session.connect_market_data(section, secrets, now_ms=now_ms,
                                                           simulated=config.simulated).load_markets())
        else:
            quick = dataclasses.replace(section, timeout_ms=min(section.timeout_ms, config.doctor.exchange_timeout_ms))
            client = ccxt_client.create_client(quick, secrets)
            markets = ccxt_client.call(client, f"load_markets {section.id}", client.load_markets, idempotent=False)
            listed = {symbol for symbol, market in markets.items() if market.get("active") is not False}  # BREAK
    except errors.CoinbotError as exchange_error:
        error = str(exchange_error)
    permissions, permissions_error, refused = None, "exchange unreachable" if listed is None else "", False
    if client is not None and listed is not None and section.mode != "paper" and has_keys:
        try:
            permissions = binance_keys.fetch_api_key_permissions(client)
        except errors.CoinbotError as permission_error:
            permissions_error, refused = str(permission_error), isinstance(permission_error, errors.ExchangeError)
    return [doctor.check_exchange(exchange_id=section.id, listed=listed, wanted=wanted, error=error),
            *doctor.check_key_access(permissions, mode=section.mode, has_exchange_keys=has_keys,
                                     error=permissions_error, refused=refused)]


def _series_facts(paths: ProjectPaths, symbol: str, timeframe: str, *, now_ms: int) -> SeriesFacts:
    try:
        frame = storage.read_parquet(paths.ohlcv(timeframe, symbol), columns=OHLCV_COLUMNS, dtypes=OHLCV_DTYPES)
    except errors.DataError as error:
        return SeriesFacts(symbol=symbol, timeframe=timeframe, exists=True, newest_closed_open_ms=None,
                           read_error=str(error))
    newest = newest_closed_open_ms(None if frame is None else frame["timestamp"].to_numpy(), now_ms=now_ms,
                                   timeframe=timeframe)
    return SeriesFacts(symbol=symbol, timeframe=timeframe, exists=frame is not None, newest_closed_open_ms=newest)


def _file_facts(path: Path) -> FileFacts:
    try:
        return FileFacts(exists=True, document=storage.read_json(path)) if path.exists() else FileFacts(exists=False)
    except errors.StateError as error:
        return FileFacts(exists=True, read_error=str(error))


def _read_crontab() -> tuple[str | None, str]:
    """``crontab -l`` output ("" when the user has none), or None and why it could not run."""
    try:
        result = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, "the crontab command is not installed" if isinstance(error, FileNotFoundError) else str(error)
    has_none = result.returncode != 0 and "no crontab" in result.stderr.lower()
    return ("", "") if has_none else (result.stdout, "") if result.returncode == 0 else (None, result.stderr[:200])


if __name__ == "__main__":
    sys.exit(main())

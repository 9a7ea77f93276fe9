"""Pure: the `doctor` checks: facts the script gathered (config, .env, exchange, data, state, runs, crontab)
in, one `Finding` (check, ok/warn/fail, detail, what to do) per row out, plus the table and JSON renderings.

A FAIL means something would stop trading (or must stop it: a key that can withdraw); a WARN needs a
person's attention but trading goes on. No finding ever carries a secret value, only "present"/"missing".
`check_key_permissions` (the live-key policy, lib.execution.risk_live_key) also gates rebalance.
"""

from __future__ import annotations

import stat
import textwrap
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lib.core.errors import ConfigError, StateError
from lib.core.findings import STATUSES, Finding
from lib.core.state import HaltRecord, Positions, RunRecord, Targets
from lib.core.timeframes import MS_PER_HOUR, format_ms, parse_time_ms
from lib.core.venue import KeyPermissions
from lib.execution.risk_live_key import check_key_permissions
from lib.ops.health import STAGES, HealthParams, check_series, format_age

JOBS = ("fetch_prices", "compute_signals", "rebalance", "report")
"""The cron jobs whose last run doctor shows (crontab.txt runs the first three through run_pipeline)."""
TRADING_JOBS = frozenset({"fetch_prices", "compute_signals", "rebalance"})  # a failed run skips a trading cycle
_MAX_LISTED = 5  # series named in one data row before "and N more"


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorParams:
    """TOML section ``doctor``."""

    report_max_age_ms: int = 26 * MS_PER_HOUR  # daily report + 2h slack (the other jobs use [health])
    exchange_timeout_ms: int = 5_000  # one load_markets attempt, capped at exchange.timeout_ms

    def __post_init__(self) -> None:
        if not 0 <= self.report_max_age_ms <= 400 * 24 * MS_PER_HOUR:
            raise ConfigError(f"doctor.report_max_age_ms must be in [0, 400 days], got {self.report_max_age_ms}")
        if not 100 <= self.exchange_timeout_ms <= 120_000:
            raise ConfigError(f"doctor.exchange_timeout_ms must be in [100, 120000], got {self.exchange_timeout_ms}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFacts:
    """A JSON state file as read: absent, unreadable (``read_error``), or its parsed ``document``."""

    exists: bool
    document: Any = None
    read_error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesFacts:
    """One stored candle series: its newest candle closed at ``now_ms`` (None: no file or none closed)."""

    symbol: str
    timeframe: str
    exists: bool
    newest_closed_open_ms: int | None
    read_error: str = ""


def has_failure(findings: Sequence[Finding]) -> bool:
    return any(finding.status == "fail" for finding in findings)


def to_now_ms(as_of: str | None, *, wall_ms: int) -> int:
    """``--as-of`` (epoch ms or ISO date/time, UTC when naive) or the wall clock."""
    return wall_ms if as_of is None else parse_time_ms(as_of, what="--as-of")


# -- configuration and secrets ------------------------------------------------------------------------
def check_config(error: str, *, config_path: str, summary: str = "") -> Finding:
    if error:
        return Finding("config", "fail", error,
                       f"fix {config_path} or the argument named (every key is in README 'Configuration')")
    return Finding("config", "ok", f"{config_path} is valid{': ' + summary if summary else ''}")


def check_env_file(*, path: str, mode_bits: int | None) -> Finding:
    """``mode_bits`` is the file's st_mode (None: no file). Group/other-readable keys are one `cat` from leaking."""
    if mode_bits is None:
        return Finding(".env", "ok", f"{path} absent (secrets only from the environment)")
    permissions = stat.S_IMODE(mode_bits)
    if permissions & (stat.S_IRGRP | stat.S_IROTH):
        return Finding(".env", "warn", f"{path} is readable by group/others (mode {permissions:04o})",
                       f"chmod 600 {path}")
    return Finding(".env", "ok", f"{path} mode {permissions:04o}")


def check_keys(*, mode: str, has_exchange_keys: bool, live_opt_in: bool) -> list[Finding]:
    """Keys present for the mode (testnet/live need them) and, in live mode, the explicit opt-in."""
    presence = "present" if has_exchange_keys else "missing"
    if mode == "paper":
        return [Finding("exchange keys", "ok", f"{presence} (not needed in paper mode)")]
    if not has_exchange_keys:
        findings = [Finding("exchange keys", "fail", f"missing (exchange.mode = {mode} needs them)",
                            "put COINBOT_EXCHANGE_API_KEY and COINBOT_EXCHANGE_API_SECRET in .env; chmod 600 .env")]
    else:
        findings = [Finding("exchange keys", "ok", f"present (exchange.mode = {mode})")]
    if mode == "live":
        findings.append(Finding("live opt-in", "ok", "live trading confirmed") if live_opt_in else Finding(
            "live opt-in", "fail", "exchange.mode = live but not confirmed: rebalance refuses to trade",
            "set exchange.live_confirmed = true, or pass --live to rebalance in crontab (and to doctor)"))
    return findings


def check_key_access(perms: KeyPermissions | None, *, mode: str, has_exchange_keys: bool, error: str = "",
                     refused: bool = False) -> list[Finding]:
    """The doctor's key rows, as rebalance judges them (testnet and live); missing keys are the keys row's
    FAIL. ``error``: why the lookup failed (``refused``: the exchange answered with an error)."""
    if mode == "paper":
        return [Finding("key permissions", "ok", "not checked in paper mode (no key is used)")]
    if not has_exchange_keys:
        return []
    if error:
        return [check_key_permissions_unreadable(error, mode=mode, refused=refused)]
    return check_key_permissions(perms, mode=mode)


def check_key_permissions_unreadable(error: str, *, mode: str, refused: bool) -> Finding:
    """The permission lookup failed. Live fails closed (a key not known to be withdrawal-free must not trade);
    testnet only warns unless the exchange refused the request (then its key cannot trade either)."""
    if refused:
        return Finding("key permissions", "fail", f"the exchange refused the request: {error}",
                       "check the key/secret in .env, the key's IP whitelist, and that it is enabled")
    return Finding("key permissions", "fail" if mode == "live" else "warn", f"could not be read: {error}",
                   "re-run doctor; if it persists check the exchange's status and the key's API management page")


def check_alerts(*, has_telegram: bool) -> Finding:
    if has_telegram:
        return Finding("alerts", "ok", "Telegram token and chat id present")
    return Finding("alerts", "warn", "Telegram token or chat id missing: failures only reach the log",
                   "put COINBOT_TELEGRAM_BOT_TOKEN and COINBOT_TELEGRAM_CHAT_ID in .env")


# -- exchange and data --------------------------------------------------------------------------------
def check_exchange(*, exchange_id: str, listed: Collection[str] | None, wanted: Sequence[str],
                   error: str = "") -> Finding:
    """``listed``: the markets load_markets returned (None when it failed with ``error``)."""
    if listed is None:
        return Finding("exchange", "fail", f"{exchange_id} unreachable: {error}",
                       "check the network, exchange.rest_base_url and the exchange's status page")
    missing = [symbol for symbol in wanted if symbol not in listed]
    detail = f"{exchange_id} reachable, {len(listed)} markets"
    if missing:
        return Finding("exchange", "warn", f"{detail}; not listed: {_listed(missing)}",
                       "remove them from data.symbols (fetch_prices cannot fetch them)")
    return Finding("exchange", "ok", f"{detail}, all {len(wanted)} configured symbols listed")


def check_data_freshness(series: Sequence[SeriesFacts], *, now_ms: int, max_staleness_bars: int,
                         trading_timeframe: str, benchmark: str) -> list[Finding]:
    """One row per timeframe, the rule compute_signals applies (lib.research.freshness.select_fresh_candles): on the
    trading timeframe a stale benchmark or more than half the symbols stale stops it (FAIL), a few stale
    symbols get weight 0 and are held, not traded (WARN). An unreadable file stops compute_signals (FAIL)."""
    findings = []
    for timeframe in dict.fromkeys(facts.timeframe for facts in series):
        own = [facts for facts in series if facts.timeframe == timeframe]
        health = check_series({(f.symbol, f.timeframe): f.newest_closed_open_ms for f in own if not f.read_error},
                              now_ms=now_ms, max_staleness_bars=max_staleness_bars)
        unreadable = [f"{f.symbol} ({f.read_error})" for f in own if f.read_error]
        missing = [f.symbol for f in own if not f.exists]
        stale = {h.symbol: h for h in health if h.is_stale and h.symbol not in missing}
        problems = [*(f"{s} ({h.lag_bars} bars behind)" if h.lag_bars is not None else f"{s} (no closed candle)"
                      for s, h in stale.items()), *(f"{s} (no file)" for s in missing)]
        is_trading = timeframe == trading_timeframe
        check = f"data {timeframe}" + (" (trading)" if is_trading else "")
        fresh = len(own) - len(problems) - len(unreadable)
        newest = max((h.last_open_ms for h in health if h.last_open_ms is not None), default=None)
        head = (f"{fresh}/{len(own)} series fresh (newest {'none' if newest is None else format_ms(newest)}, "
                f"limit {max_staleness_bars} bar(s) behind at {format_ms(now_ms)})")
        benchmark_bad = any(symbol == benchmark for symbol in [*stale, *missing])
        if unreadable:
            findings.append(Finding(check, "fail", f"{head}; unreadable: {_listed(unreadable)}",
                                    "delete the unreadable file(s) and run fetch_prices to re-fetch them"))
        elif problems:
            stops = is_trading and (benchmark_bad or 2 * len(problems) > len(own))
            why = " (compute_signals refuses: benchmark or most symbols stale)" if stops else ""
            findings.append(Finding(check, "fail" if stops else "warn",
                                    f"{head}; stale or missing{why}: {_listed(problems)}",
                                    "run fetch_prices; if it keeps failing, check its log and the exchange"))
        else:
            findings.append(Finding(check, "ok", head))
    return findings


# -- state files --------------------------------------------------------------------------------------
def check_targets(facts: FileFacts, *, now_ms: int) -> Finding:
    if not facts.exists:
        return Finding("targets.json", "warn", "not written yet", "run compute_signals")
    try:
        targets = Targets.from_dict(_document(facts))
    except StateError as error:
        return Finding("targets.json", "fail", f"invalid: {error}",
                       "rebalance refuses it: delete state/targets.json and run compute_signals")
    return Finding("targets.json", "ok", f"valid: {targets.strategy}, {len(targets.weights)} weights, as of "
                   f"{format_ms(targets.as_of_ms)} ({format_age(max(0, now_ms - targets.as_of_ms))} ago)")


def check_positions(facts: FileFacts) -> Finding:
    if not facts.exists:
        return Finding("positions.json", "ok", "none yet (rebalance writes it on its first run)")
    try:
        positions = Positions.from_dict(_document(facts))
    except StateError as error:
        return Finding("positions.json", "fail", f"invalid: {error}",
                       "rebalance refuses to run; repair it by hand from state/orders.jsonl and the exchange "
                       "(never delete it: see README)")
    held = [f"{symbol} {amount:g}" for symbol, amount in sorted(positions.ignored_base.items())]
    ignored = f"; ignored (not the bot's, never traded): {_listed(held)}" if held else ""
    own = "" if positions.ledger is None or positions.account_cash_quote is None else (
        f" (the bot's own: cash {positions.cash_quote:.2f} of the account's {positions.account_cash_quote:.2f})")
    return Finding("positions.json", "ok", f"valid: {positions.mode}, equity {positions.equity_quote:.2f}{own}, "
                   f"{len(positions.amounts_base)} position(s), updated {format_ms(positions.updated_ms)}{ignored}")


def check_position_rows(facts: FileFacts) -> list[Finding]:
    """positions.json's rows: the file itself, then any holding a person must close by hand."""
    return [check_positions(facts), *check_unpriced_holdings(facts)]


def check_unpriced_holdings(facts: FileFacts) -> list[Finding]:
    """Held coins the exchange no longer prices (delisted), as the last rebalance flagged them in positions.json:
    valued at their last stored close and never traded by the bot, so only a person can close them (WARN: the rest
    trades). An unreadable positions.json is check_positions' FAIL."""
    try:
        positions = Positions.from_dict(_document(facts)) if facts.exists else None
    except StateError:
        return []
    if positions is None or not positions.unpriced:
        return []
    held = [f"{symbol} {flag.amount_base:g} (last close {flag.last_close:g}, no live price since "
            f"{format_ms(flag.since_ms)})" for symbol, flag in sorted(positions.unpriced.items())]
    return [Finding("delisted holdings", "warn", f"held but not priced by the exchange, never traded by the bot: "
                    f"{_listed(held)}", "a person must act: sell it by hand on the exchange (if it still trades "
                    "anywhere) or add its coin to book.ignored_assets to take it out of the bot's book")]


def check_journal(*, exists: bool, event_count: int, torn: bool, read_error: str = "") -> Finding:
    if read_error:
        return Finding("orders.jsonl", "fail", f"unreadable: {read_error}",
                       "rebalance refuses to run; repair the named line by hand (see README)")
    if torn:
        return Finding("orders.jsonl", "warn", f"{event_count} events; the final line is torn (an interrupted write)",
                       "rebalance drops the fragment on its next run; check the last order on the exchange")
    return Finding("orders.jsonl", "ok", f"{event_count} events" if exists else "no orders yet")


def check_halt(facts: FileFacts) -> Finding:
    if not facts.exists:
        return Finding("drawdown halt", "ok", "none")
    what = "trading halted: see README to clear (review, delete state/halt.json, rebalance --reset-high-water-mark)"
    try:
        halt = HaltRecord.from_dict(_document(facts))
    except StateError as error:
        return Finding("drawdown halt", "fail", f"state/halt.json present but unreadable ({error})", what)
    flattened = "book flattened" if halt.flattened else "flatten NOT finished (the next rebalance finishes it)"
    return Finding("drawdown halt", "fail", f"since {format_ms(halt.created_ms)}: {halt.reason}; {flattened}", what)


def check_kill_switch(*, exists: bool) -> Finding:
    if exists:
        return Finding("kill switch", "fail", "kill switch on (state/KILL): rebalance sends nothing",
                       "when it is safe to trade again, delete state/KILL")
    return Finding("kill switch", "ok", "off")


# -- cron ---------------------------------------------------------------------------------------------
def to_job_age_limits_ms(health: HealthParams, params: DoctorParams) -> dict[str, int]:
    """Max age of each job's last success: the report's own limits for the pipeline stages, doctor's for report."""
    return {**{job: health.max_age_ms(job) for job in STAGES}, "report": params.report_max_age_ms}


def check_runs_file(*, read_error: str, torn: bool) -> list[Finding]:
    """state/runs.jsonl itself: unreadable blinds the health checks (WARN; trading goes on)."""
    if read_error:
        return [Finding("runs.jsonl", "warn", f"unreadable, job history unknown: {read_error}",
                        "repair or move the named line aside (scripts append to it; report needs it)")]
    if torn:
        return [Finding("runs.jsonl", "warn", "the final line is torn (an interrupted append)",
                        "remove the partial last line of state/runs.jsonl")]
    return []


def check_job_runs(records: Sequence[RunRecord], *, now_ms: int, max_age_ms: Mapping[str, int],
                   jobs: Sequence[str] = JOBS) -> list[Finding]:
    """Each job's last finished run at or before ``now_ms``: never ran → WARN; failed → FAIL for a trading
    job (that cycle did not trade), WARN for report; last success older than its limit (0 = none) → WARN."""
    finished = sorted((r for r in records if r.event == "finish" and r.now_ms <= now_ms), key=lambda r: r.now_ms)
    findings = []
    for job in jobs:
        own = [record for record in finished if record.script == job]
        check = f"last {job}"
        if not own:
            findings.append(Finding(check, "warn", "never ran", f"run it once by hand (python -m scripts.{job}) "
                                    "and check crontab"))
            continue
        last, successes = own[-1], [record for record in own if record.status == "ok"]
        if last.status == "partial":  # some symbols failed, the others were done: trading goes on
            findings.append(Finding(check, "warn", f"partly done {format_ms(last.now_ms)} (exit {last.exit_code}): "
                                    f"{last.error[:200]}", "see state/symbol_failures.json and the exchange row; "
                                    "remove symbols the exchange no longer lists from data.symbols"))
            continue
        if last.status != "ok":
            since = f"last ok {format_ms(successes[-1].now_ms)}" if successes else "never ok"
            findings.append(Finding(check, "fail" if job in TRADING_JOBS else "warn",
                                    f"FAILED {format_ms(last.now_ms)} (exit {last.exit_code}; {since}): "
                                    f"{last.error[:200] or 'no error text'}",
                                    f"read its log, fix the cause, re-run python -m scripts.{job}"))
            continue
        age_ms, limit_ms = now_ms - last.now_ms, max_age_ms.get(job, 0)
        detail = f"ok {format_ms(last.now_ms)} ({format_age(age_ms)} ago)"
        if limit_ms and age_ms > limit_ms:
            findings.append(Finding(check, "warn", f"{detail}, older than {format_age(limit_ms)}",
                                    "check that cron still runs it (crontab -l, its log)"))
        else:
            findings.append(Finding(check, "ok", detail))
    return findings


def check_crontab(*, listing: str | None, error: str = "") -> Finding:
    """``listing``: the output of ``crontab -l`` ("" when the user has none; None when it could not run)."""
    if listing is None:
        return Finding("crontab", "warn", f"cannot read the crontab: {error}",
                       "install cron, then: crontab crontab.txt (after editing COINBOT_HOME)")
    names = ("coinbot", "run_pipeline", *JOBS)
    lines = [line for line in listing.splitlines()
             if line.strip() and not line.lstrip().startswith("#") and any(name in line for name in names)]
    if not lines:
        return Finding("crontab", "warn", "no coinbot job in crontab -l",
                       "edit COINBOT_HOME in crontab.txt, then: crontab crontab.txt")
    if "CHANGE_ME" in listing:
        return Finding("crontab", "warn", "COINBOT_HOME is still CHANGE_ME_TO_THE_CLONE_DIRECTORY",
                       "set COINBOT_HOME in crontab.txt to the clone directory, then: crontab crontab.txt")
    schedules = [line.split() for line in lines if "=" not in line.split()[0] and len(line.split()) > 5]
    local_hours = [fields for fields in schedules if fields[1] != "*" and "date -u" not in " ".join(fields)]
    if local_hours:
        return Finding("crontab", "warn", f"{len(local_hours)} job(s) at a fixed hour of the host's local time "
                       "(Debian/Ubuntu cron ignores CRON_TZ)", "install the current crontab.txt (UTC whatever "
                       "the host's time zone): crontab crontab.txt")
    return Finding("crontab", "ok", f"{len(lines)} coinbot line(s) installed")


# -- rendering ----------------------------------------------------------------------------------------
def to_table(findings: Sequence[Finding], *, now_ms: int, detail_width: int = 60, todo_width: int = 48) -> str:
    """Fixed-width text table (check | status | detail | what to do), wrapped, with a one-line verdict."""
    check_width = max([len("CHECK"), *(len(finding.check) for finding in findings)])
    rows = [("CHECK", "STATUS", ["DETAIL"], ["WHAT TO DO"])]
    rows += [(f.check, f.status.upper(), textwrap.wrap(f.detail, detail_width) or [""],
              textwrap.wrap(f.what_to_do, todo_width) or [""]) for f in findings]
    lines = []
    for check, status, detail, todo in rows:
        for index in range(max(len(detail), len(todo))):
            first = index == 0
            lines.append(f"{check if first else '':<{check_width}}  {status if first else '':<6}  "
                         f"{detail[index] if index < len(detail) else '':<{detail_width}}  "
                         f"{todo[index] if index < len(todo) else ''}".rstrip())
    lines.append(to_verdict(findings, now_ms=now_ms))
    return "\n".join(lines)


def to_verdict(findings: Sequence[Finding], *, now_ms: int) -> str:
    counts = {status: sum(f.status == status for f in findings) for status in STATUSES}
    outcome = "trading would stop: fix the FAIL rows" if counts["fail"] else "nothing stops trading"
    return (f"doctor at {format_ms(now_ms)}: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail; "
            f"{outcome}")


def to_json_document(findings: Sequence[Finding], *, now_ms: int) -> dict[str, Any]:
    return {"now_ms": now_ms, "ok": not has_failure(findings),
            "counts": {status: sum(f.status == status for f in findings) for status in STATUSES},
            "findings": [finding.to_dict() for finding in findings]}


def _document(facts: FileFacts) -> Any:
    if facts.read_error:
        raise StateError(facts.read_error)
    return facts.document


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")

"""Edge (test harness): runs the real cron scripts, injects faults, checks invariants after every step.

``Driver`` runs a script process (two for an overlap) and checks what every run must satisfy: one alert per
failed run and none otherwise, matching run records, a refused run changes nothing. Each ``check_*`` takes
``expect``: a broken invariant is printed at once with step, seed and faults, collected, and fails the test
at the end, so that one bug does not hide the others.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lib.core.errors import EXIT_LOCKED, EXIT_PARTIAL
from lib.core.state import Positions, RunRecord
from lib.core.storage import read_jsonl
from lib.core.timeframes import MS_PER_DAY, format_ms
from lib.core.venue import OrderResult
from lib.execution.journal import JournalEvent, find_open_orders, find_problems, parse_journal
from lib.execution.paper import PaperSnapshot
from tests.fakes.exchange_server import BAD_CANDLE_KINDS, FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import SCRIPT_TIMEOUT_S, script_env

Expect = Callable[[bool, str], bool]

STAGES = ("fetch_prices", "compute_signals", "rebalance", "report")
TRANSIENT = ("network_error", "http_429", "http_418", "http_5xx", "timeout")
"""One failed exchange request: the retry policy must absorb it (the run still succeeds)."""
TIMEOUT_MARGIN_S = 0.5  # a reply held for the client's timeout plus this is one the client gave up on
DISK_FULL_TRAMPOLINE = (  # Python ignores SIGXFSZ: a write past the limit is cut short, the next fails (EFBIG)
    "import os, resource, sys; limit = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)
CORRUPTIBLE = {"rebalance": ("state/positions.json", "state/targets.json", "state/orders.jsonl"),
               "report": ("state/equity.csv", "state/runs.jsonl"), "compute_signals": ("data",)}
"""The files each script must refuse when they are corrupted ("data": any candle file)."""
_ALERT_RUN = re.compile(r"^run: \S+-(\d+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Run:
    script: str
    pid: int
    exit_code: int | None  # None: SIGKILLed
    stderr: str
    seconds: float

    @property
    def name(self) -> str:
        return f"{self.script} (pid {self.pid}, exit {'SIGKILL' if self.exit_code is None else self.exit_code})"

    @property
    def error(self) -> str:  # the ERROR line saying why the run failed, or ""
        return next((line for line in self.stderr.splitlines() if " ERROR " in line
                     and (" failed: " in line or " crashed: " in line)), "")


@dataclass(slots=True)
class _Started:  # a run in flight, and what to compare with when it ends
    script: str
    process: subprocess.Popen[str]
    started_s: float
    alerts_before: int
    records_offset: int
    disk_limit: int | None
    context: Any


class Driver:
    """Runs the real scripts of the project in ``root`` against ``fake`` and ``telegram``, checking every run."""

    label, span = "soak", ""
    kinds: tuple[str, ...] = ()  # the fault kinds the variant injects (every one at least once per run)

    def __init__(self, root: Path, fake: FakeBinance, telegram: FakeTelegram, *, seed: int, timeout_ms: int) -> None:
        self.root, self.fake, self.telegram, self.seed, self.state = root, fake, telegram, seed, root / "state"
        self.held_s = timeout_ms / 1000 + TIMEOUT_MARGIN_S  # [exchange] timeout_ms: a delay this long times out
        self.rng = np.random.default_rng(seed)
        self.where, self.faults_now = "setup", ""
        self.injected, self.recovered, self.exits = Counter[str](), Counter[str](), Counter[str]()  # by kind, script
        self.pending_recovery: defaultdict[str, set[str]] = defaultdict(set)
        self.durations: defaultdict[str, list[float]] = defaultdict(list)
        self.runs: list[Run] = []
        self.checks, self.violations, self._reported = 0, list[str](), set[str]()
        self.corrupt_paths: set[Path] = set()  # corrupted on purpose, not yet restored by the operator

    def expect(self, ok: bool, what: str) -> bool:
        """Count a check; a broken one is printed and kept (once: a broken file stays broken for a while)."""
        self.checks += 1
        if not ok and what not in self._reported:
            self._reported.add(what)
            line = f"[{self.label} seed={self.seed}] {self.where} (faults: {self.faults_now or 'none'}): {what}"
            print(f"INVARIANT BROKEN {line}", flush=True)
            self.violations.append(line)
        return ok

    def note_outcome(self, kind: str, script: str, run: Run) -> None:
        """A fault whose run succeeded is recovered at once; otherwise at the script's next success."""
        self.injected[kind] += 1
        if run.exit_code == 0:
            self.recovered[kind] += 1
        else:
            self.pending_recovery[script].add(kind)

    def summary(self) -> str:
        runs = f"{len(self.runs)} script runs ({sum(run.seconds for run in self.runs):.0f} s in processes)"
        return "\n".join([f"{self.label} soak, seed {self.seed}: {self.span}, {runs}",
                          "  exit codes: " + ", ".join(f"{key}: {n}" for key, n in sorted(self.exits.items())),
                          "  faults injected: " + ", ".join(f"{kind}={self.injected[kind]}" for kind in self.kinds),
                          "  recoveries: " + ", ".join(f"{kind}={self.recovered[kind]}" for kind in self.kinds),
                          f"  invariant checks: {self.checks}, violations: {len(self.violations)}"])

    # --- processes (hooks: before_run returns what a variant must remember, e.g. its gates; after_run checks) -

    def before_run(self, script: str) -> Any:
        return None

    def after_run(self, run: Run, context: Any) -> None:
        pass

    def start(self, script: str, args: Sequence[str], *, disk_limit: int | None = None) -> _Started:
        runs_path = self.state / "runs.jsonl"
        context = self.before_run(script)
        command = ["-m", f"scripts.{script}", "--config", str(self.root / "config.toml"), *args]
        if disk_limit is not None:  # a trampoline (preexec_fn is unsafe with threads) sets the limit, execs: same pid
            command = ["-c", DISK_FULL_TRAMPOLINE, str(disk_limit), *command]
        process = subprocess.Popen([sys.executable, *command], cwd=self.root, env=script_env(None),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return _Started(script, process, time.monotonic(), len(self.telegram.messages),
                        runs_path.stat().st_size if runs_path.exists() else 0, disk_limit, context)

    def finish(self, started: _Started, *, kill_after_s: float | None = None,
               kill_when: Callable[[], bool] | None = None) -> Run:
        """Wait for the run; SIGKILL it after ``kill_after_s`` or as soon as ``kill_when()`` holds."""
        process = started.process
        limit_s = kill_after_s if kill_after_s is not None else SCRIPT_TIMEOUT_S
        while (kill_after_s is not None or kill_when is not None) and process.poll() is None:
            if time.monotonic() - started.started_s >= limit_s or (kill_when is not None and kill_when()):
                process.kill()
                break
            time.sleep(0.01)
        _, stderr = process.communicate(timeout=SCRIPT_TIMEOUT_S)
        exit_code = None if process.returncode == -signal.SIGKILL else process.returncode
        run = Run(started.script, process.pid, exit_code, stderr, time.monotonic() - started.started_s)
        self.runs.append(run)
        self.exits[f"{run.script} {'SIGKILL' if exit_code is None else exit_code}"] += 1
        if exit_code is not None and kill_after_s is None:
            self.durations[run.script].append(run.seconds)
        self._check_alerts_and_records(run, started)
        self.after_run(run, started.context)
        if exit_code in (0, EXIT_PARTIAL):  # partial: every healthy symbol was done
            for kind in self.pending_recovery.pop(run.script, set()):
                self.recovered[kind] += 1
        return run

    def run(self, script: str, args: Sequence[str], *, disk_limit: int | None = None, **kill: Any) -> Run:
        return self.finish(self.start(script, args, disk_limit=disk_limit), **kill)

    def _check_alerts_and_records(self, run: Run, started: _Started) -> None:
        alerts = [m.text or "" for m in self.telegram.messages[started.alerts_before:]
                  if " FAILED on " in (m.text or "") and _alert_pid(m.text or "") == run.pid]
        records = self._records_since(started.records_offset, run.pid)
        if run.exit_code is None:
            self.expect(len(alerts) <= 1, f"{run.name}: {len(alerts)} alerts from one killed run")
        elif run.exit_code in (0, EXIT_LOCKED, EXIT_PARTIAL):  # partial: alerted once per symbol, by the script
            self.expect(not alerts, f"{run.name} sent {len(alerts)} failure alert(s): {alerts[:1]}")
        else:
            self.expect(len(alerts) == 1, f"{run.name} failed with {len(alerts)} alert(s), expected exactly one; "
                                          f"stderr ends: {run.stderr.strip().splitlines()[-1:]}")
        if run.exit_code == EXIT_LOCKED:  # lib.ops.runner records the skip (health counts it), nothing else
            skipped = [(record.get("event"), record.get("status"), record.get("exit_code")) for record in records]
            self.expect(skipped == [("finish", "skipped", EXIT_LOCKED)],
                        f"{run.name}: a run refused by the lock wrote run records {skipped}, expected one skip")
        elif run.exit_code is not None and started.disk_limit is None:
            finished = [record.get("exit_code") for record in records if record.get("event") == "finish"]
            self.expect(finished == [run.exit_code], f"{run.name}: its runs.jsonl finish records say {finished}")

    def _records_since(self, offset: int, pid: int) -> list[dict[str, Any]]:
        """This run's records (its run id ends with its pid), leniently: runs.jsonl may be corrupt on purpose."""
        path = self.state / "runs.jsonl"
        records = [_json_or_none(line) for line in (path.read_bytes()[offset:] if path.exists() else b"").split(b"\n")]
        return [r for r in records if isinstance(r, dict) and str(r.get("run_id", "")).endswith(f"-{pid}")]

    def snapshot(self) -> dict[str, bytes]:
        """Every file under state/ and data/ except the lock files (flock rewrites the pid in them)."""
        paths = [path.relative_to(self.root) for top in ("state", "data")
                 for path in sorted((self.root / top).rglob("*")) if path.is_file()]
        return {str(path): (self.root / path).read_bytes() for path in paths if "locks" not in path.parts}

    def killed(self, script: str, args: Sequence[str], *, kill_when: Callable[[], bool] | None = None) -> Run:
        """SIGKILL when ``kill_when()`` holds, else at a random point up to a short run's length: the fastest of
        the script's last runs, not their median, so that on a machine loaded unevenly (other processes starting and
        stopping) the kill still lands inside the run instead of after it has ended."""
        recent = self.durations[script][-5:]
        typical_s = min(recent) if recent else 2.0
        delay_s = None if kill_when else float(self.rng.uniform(0.3, 1.0)) * typical_s
        run = self.run(script, args, kill_after_s=delay_s, kill_when=kill_when)
        if run.exit_code is None:
            self.injected["sigkill"] += 1
            self.pending_recovery[script].add("sigkill")
        return run

    def overlapped(self, script: str, args: Sequence[str], *, path: str, match: dict[str, str]) -> Run:
        """Start ``script`` held inside an exchange call; meanwhile start it again: exit 3, nothing changed."""
        seen = self.fake.request_count(path, **match)
        self.fake.delay_next(path, seconds=self.held_s, times=None, match=match)  # every attempt times out
        first = self.start(script, args)
        deadline = time.monotonic() + SCRIPT_TIMEOUT_S
        while (first.process.poll() is None and self.fake.request_count(path, **match) == seen
               and time.monotonic() < deadline):
            time.sleep(0.02)
        stalled = first.process.poll() is None and self.fake.request_count(path, **match) > seen
        if stalled:  # frozen inside the call, holding its lock, until the second run is over: on a slow machine
            first.process.send_signal(signal.SIGSTOP)  # the first could otherwise give up and free the lock first
            try:
                before = self.snapshot()
                second = self.run(script, args)
                self.expect(second.exit_code == EXIT_LOCKED, f"the overlapping {second.name} was not refused")
                after = self.snapshot()
            finally:
                first.process.send_signal(signal.SIGCONT)
            changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
                             and name != "state/runs.jsonl")  # its skip record, checked with the records
            self.expect(not changed, f"the overlapping {second.name} changed {changed[:5]}")
        self.fake.clear_faults()
        run = self.finish(first)
        if stalled:
            self.note_outcome("overlap", script, run)
        return run

    def disk_full(self, script: str, args: Sequence[str]) -> Run:
        """The disk fills up a few bytes into the run's first append to runs.jsonl (RLIMIT_FSIZE: the write that
        crosses it is cut short, later ones fail). The run must fail and alert once; no complete line of an
        append-only file may change; every file must still read back, now and after the next run."""
        runs_path = self.state / "runs.jsonl"
        limit = (runs_path.stat().st_size if runs_path.exists() else 0) + int(self.rng.integers(1, 150))
        before = self.snapshot()
        run = self.run(script, args, disk_limit=limit)
        self.injected["disk_full"] += 1
        self.pending_recovery[script].add("disk_full")
        self.expect(run.exit_code not in (0, EXIT_LOCKED, None), f"{run.name} succeeded on a full disk")
        after = self.snapshot()
        complete = {name: data[: data.rfind(b"\n") + 1] for name, data in before.items()}  # a torn tail may go
        rewritten = [name for name in before if name.endswith((".jsonl", ".csv"))
                     and not after.get(name, b"").startswith(complete[name])]
        self.expect(not rewritten, f"{run.name} on a full disk rewrote lines of append-only files {rewritten}")
        return run

    def corrupted(self, script: str, args: Sequence[str]) -> Run | None:
        """Corrupt a file ``script`` reads: it must refuse (exit 1, one alert) and leave the file alone; then
        the operator restores the file from a backup. None when no such file exists yet."""
        paths = [p for name in CORRUPTIBLE.get(script, ()) for p in (
            sorted((self.root / name).rglob("*.parquet")) if name == "data" else [self.root / name])]
        candidates = [p for p in paths if p.exists() and (p.suffix not in (".jsonl", ".csv")
                                                          or p.read_bytes().count(b"\n") >= 2)]
        if not candidates:
            return None
        path = candidates[int(self.rng.integers(len(candidates)))]
        original = path.read_bytes()
        broken = corrupt_bytes(original, path.suffix)
        path.write_bytes(broken)
        self.corrupt_paths.add(path)
        run = self.run(script, args)
        self.injected["corrupt_state"] += 1
        self.pending_recovery[script].add("corrupt_state")
        self.expect(run.exit_code == 1, f"{run.name} did not refuse a corrupted {path.name}")
        now = path.read_bytes()
        self.expect(now.startswith(broken), f"{run.name} replaced the corrupted {path.name} instead of refusing it")
        path.write_bytes(original + now[len(broken):])  # the operator's backup, plus what was appended since
        self.corrupt_paths.discard(path)
        return run

    def load(self, path: Path, parse: Callable[[Path], Any]) -> Any:
        """``parse(path)``, None when absent or broken; not parsing is a violation unless corrupted on purpose."""
        if not path.exists() or path in self.corrupt_paths:
            return None
        try:
            return parse(path)
        except Exception as error:  # any failure to read back a state file is the finding
            self.expect(False, f"{path.relative_to(self.root)} does not parse/validate: {type(error).__name__}: "
                               f"{error}")
            return None


def inject_exchange_fault(fake: FakeBinance, kind: str, rng: np.random.Generator, *, path: str, held_s: float,
                          match: dict[str, str], symbol: str | None = None, at_ms: int | None = None) -> None:
    if kind == "network_error":
        fake.disconnect_next(path, match=match)
    elif kind in ("http_429", "http_418"):
        fake.fail_next(path, status=int(kind[-3:]), retry_after_s=1, match=match)
    elif kind == "http_5xx":
        fake.fail_next(path, status=int(rng.choice([500, 502, 503, 504])), match=match)
    elif kind == "timeout":
        fake.delay_next(path, seconds=held_s, match=match)
    elif kind == "malformed_response":
        fake.malform_next(path, how=str(rng.choice(["invalid_json", "truncated"])), match=match)
    elif kind in ("bad_candle", "absurd_candle"):
        bad = "absurd_jump" if kind == "absurd_candle" else str(
            rng.choice([name for name in BAD_CANDLE_KINDS if name != "absurd_jump"]))
        fake.corrupt_next_candles(bad, symbol=symbol, at_ms=at_ms)
    elif kind == "stale_feed":  # every reply of the run carries a broken candle: the series falls behind
        fake.corrupt_next_candles("negative_price", symbol=symbol, at_ms=at_ms, times=None)
    else:
        raise ValueError(f"no exchange fault called {kind!r}")


def corrupt_bytes(original: bytes, suffix: str) -> bytes:
    """Half a JSON/Parquet file (a torn write that bypassed the atomic writer); a garbage line in the middle
    of a JSONL/CSV file (not at the end, where a torn line is legitimately tolerated)."""
    if suffix in (".jsonl", ".csv"):
        first, rest = original.split(b"\n", 1)
        return first + b"\n{\x00garbage written by a failing disk\n" + rest
    return original[: len(original) // 2]


def _alert_pid(text: str) -> int | None:
    found = _ALERT_RUN.search(text)
    return int(found.group(1)) if found else None


def _json_or_none(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def read_journal(path: Path) -> list[JournalEvent]:
    """Only a torn final line is tolerated (read_jsonl raises for anything else)."""
    return parse_journal(read_jsonl(path)[0])


def read_run_records(path: Path) -> list[RunRecord]:
    return [RunRecord.from_dict(record) for record in read_jsonl(path)[0]]


def truth_price(rows: np.ndarray, at_ms: int) -> float:
    """What FakeBinance quotes at ``at_ms`` for injected candles: the close of the newest one opened by then."""
    return float(rows[rows[:, 0] <= at_ms][-1, 4])


@dataclass(frozen=True, slots=True)
class Fill:  # one executed order: a journal "filled" event, or the venue's record of one
    client_order_id: str
    symbol: str
    side: str
    amount_base: Decimal
    price: float
    fee_quote: float
    time_ms: int

    @classmethod
    def of_event(cls, event: JournalEvent) -> Fill:
        assert event.client_order_id and event.symbol and event.filled_amount_base is not None
        return cls(event.client_order_id, event.symbol, str(event.requested_side), event.filled_amount_base,
                   float(event.average_price or 0.0), float(event.fee_quote or 0.0), int(event.exchange_time_ms or 0))

    @classmethod
    def of_result(cls, result: OrderResult) -> Fill:  # the venue's record of an order whose fill was not journaled
        return cls(result.client_order_id, result.symbol, result.side, result.filled_amount_base,
                   float(result.average_price or 0.0), result.fee_quote, result.timestamp_ms)

    @property
    def signed_base(self) -> Decimal:
        return self.amount_base if self.side == "buy" else -self.amount_base

    @property
    def cash_flow_quote(self) -> Decimal:
        """Cash into (+) or out of (-) the account for this fill, fee included."""
        notional = self.amount_base * Decimal(repr(self.price))
        return (notional if self.side == "sell" else -notional) - Decimal(repr(self.fee_quote))


# --- invariants -------------------------------------------------------------------------------------------


def check_journal(expect: Expect, events: Sequence[JournalEvent]) -> None:
    """Consistent event order, and no client order id executed twice."""
    problems = find_problems(events)
    expect(not problems, f"journal inconsistent: {problems[:3]}")
    filled = Counter(e.client_order_id for e in events if e.event == "filled")
    expect(max(filled.values(), default=0) <= 1, f"executed twice: {[i for i, n in filled.items() if n > 1]}")


def check_candles(expect: Expect, name: str, stored: pd.DataFrame, truth: np.ndarray, *, backfill_start_ms: int,
                  last_closed_ms: int) -> None:
    """Stored candles are exactly the ones the exchange served, contiguous from the backfill start, all closed."""
    rows = stored.to_numpy(dtype=float)
    expected = truth[(truth[:, 0] >= backfill_start_ms) & (truth[:, 0] <= rows[-1, 0])]
    expect(rows.shape == expected.shape and bool(np.array_equal(rows, expected)),
           f"{name}: stored candles differ from the exchange's ({len(rows)} vs {len(expected)} rows)")
    expect(rows[-1, 0] <= last_closed_ms, f"{name} stores a candle that has not closed yet")


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperRules:
    """What the paper soak knows independently of the scripts: the market served and the account's rules."""

    truth: dict[str, np.ndarray]  # symbol -> daily candles (timestamp, o, h, l, c, v) FakeBinance serves
    starting_cash_quote: Decimal
    fee_bps: float
    slippage_bps: float
    max_target_age_ms: int


def executed_fills(events: Sequence[JournalEvent], snapshot: PaperSnapshot) -> list[Fill]:
    """Journaled fills, plus orders the paper account executed whose ``filled`` line a kill prevented."""
    fills = [Fill.of_event(e) for e in events if e.event == "filled"]
    open_ids = [e.client_order_id for e in find_open_orders(events)]
    return fills + [Fill.of_result(snapshot.orders[i]) for i in open_ids if i in snapshot.orders]


def check_paper_book(expect: Expect, events: Sequence[JournalEvent], positions: Positions, snapshot: PaperSnapshot,
                     rules: PaperRules) -> None:
    """positions.json = the paper account = the sum of the fills; cash = start - buys + sells - fees; equity =
    cash + amounts x marks; marks and fill prices are the exchange's; orders only on fresh targets (a
    flatten, ``-flat``, may go out on old targets but only sells)."""
    sent_ids = {e.client_order_id for e in events if e.event == "sent"}
    expect(set(snapshot.orders) <= sent_ids,
           f"the paper account executed orders never journaled: {sorted(set(snapshot.orders) - sent_ids)[:3]}")
    fills = executed_fills(events, snapshot)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for fill in fills:
        totals[fill.symbol] += fill.signed_base
    amounts = {symbol: amount for symbol, amount in totals.items() if amount != 0}
    cash = rules.starting_cash_quote + sum((fill.cash_flow_quote for fill in fills), Decimal(0))
    expect(amounts == dict(snapshot.amounts_base), f"paper holdings {dict(snapshot.amounts_base)} != fills {amounts}")
    expect(positions.amounts_base == {s: float(a) for s, a in snapshot.amounts_base.items()},
           f"positions.json amounts {positions.amounts_base} != paper account {dict(snapshot.amounts_base)}")
    expect(abs(cash - snapshot.cash_quote) < Decimal("1e-6"),
           f"paper cash {snapshot.cash_quote} != start - buys + sells - fees = {cash}")
    marked = positions.cash_quote + sum(a * positions.marks[s] for s, a in positions.amounts_base.items())
    expect(abs(positions.equity_quote - marked) < 0.005,
           f"positions.json equity {positions.equity_quote} != cash + sum(amount x mark) = {marked}")
    wrong_marks = {s: p for s, p in positions.marks.items() if p != truth_price(rules.truth[s], positions.updated_ms)}
    expect(not wrong_marks, f"positions.json marks are not the exchange's prices: {wrong_marks}")
    fees = sum(e.fee_quote or 0.0 for e in events if e.event == "filled")
    expect(abs(positions.fees_paid_quote - fees) < 1e-9, f"fees_paid_quote {positions.fees_paid_quote} != {fees}")
    for fill in fills:
        slip = rules.slippage_bps / 10_000 * (1 if fill.side == "buy" else -1)
        price = truth_price(rules.truth[fill.symbol], fill.time_ms) * (1 + slip)
        fee = float(fill.amount_base) * fill.price * rules.fee_bps / 10_000
        expect(math.isclose(fill.price, price, rel_tol=1e-9) and math.isclose(fill.fee_quote, fee, rel_tol=1e-9),
               f"{fill.client_order_id} filled at {fill.price} (fee {fill.fee_quote}), expected {price} ({fee})")
    for event in (e for e in events if e.event == "sent"):  # the rebalance id carries the targets' as-of
        as_of_ms = int(event.rebalance_id.removesuffix("-flat").rsplit("-", 1)[1])
        if event.rebalance_id.endswith("-flat"):
            expect(event.requested_side == "sell", f"a flatten order buys: {event.client_order_id}")
        else:  # targets age from the close of their signal candle (daily here)
            expect(event.time_ms - as_of_ms - MS_PER_DAY <= rules.max_target_age_ms,
                   f"{event.client_order_id} sent on stale targets (as of {format_ms(as_of_ms)})")


def expected_equity_quote(fills: Sequence[Fill], snapshot: PaperSnapshot, closes: dict[str, float], *,
                          starting_cash_quote: Decimal) -> float:
    """starting cash + PnL - fees: PnL = the holdings at ``closes`` minus what the trades cost at fill prices."""
    fees = sum((Decimal(repr(fill.fee_quote)) for fill in fills), Decimal(0))
    traded = sum((fill.cash_flow_quote for fill in fills), Decimal(0)) + fees
    held = sum((amount * Decimal(repr(closes[symbol])) for symbol, amount in snapshot.amounts_base.items()),
               Decimal(0))
    return float(starting_cash_quote + traded + held - fees)


def check_exchange_book(expect: Expect, events: Sequence[JournalEvent], fake: FakeBinance, *,
                        positions: Positions | None, settled: bool,
                        foreign: Mapping[str, Decimal] | None = None, owners_quote: Decimal | None = None) -> None:
    """Each client id executed at most once by the exchange; the journal's fills are exactly the exchange's
    (an executed order not yet journaled is still ``sent``); after a successful run positions.json is what
    the exchange holds. ``foreign`` assets are not the bot's: never traded, their balance never changes.
    ``owners_quote`` (a shared account, book.capital_quote): the owner's part of the quote cash; the bot's cash
    ledger must be exactly the rest (its fills' quote moves, commissions in the coin bought not taken twice)."""
    foreign = foreign or {}
    for asset, amount in foreign.items():
        expect(fake.spot_balances.get(asset) == amount, f"foreign {asset} is {fake.spot_balances.get(asset)}, "
                                                        f"was {amount}: the bot touched a coin that is not its own")
        traded = [o.client_order_id for o in fake.orders if o.params.get("symbol") == f"{asset}USDT"]
        expect(not traded, f"orders for the foreign {asset}: {traded}")
    accepted = [order for order in fake.orders if order.accepted and order.order is not None]
    ids = [order.client_order_id for order in accepted]
    expect(len(ids) == len(set(ids)), f"the exchange executed an id twice: {ids}")
    on_exchange = {o.client_order_id: (f"{o.order['symbol'][:-4]}/{o.order['symbol'][-4:]}", o.order["side"].lower(),
                                       Decimal(o.order["executedQty"])) for o in accepted if o.order}
    journaled = {e.client_order_id: e for e in events if e.event == "filled"}
    open_ids = {e.client_order_id for e in find_open_orders(events)}
    expect(set(journaled) <= set(on_exchange), f"journaled fills never executed: {set(journaled) - set(on_exchange)}")
    unknown = set(on_exchange) - set(journaled) - open_ids
    expect(not unknown, f"the exchange executed orders the journal does not know: {sorted(unknown)}")
    for client_id, event in journaled.items():
        symbol, side, amount = on_exchange.get(client_id, (None, None, None))
        expect((symbol, side, amount) == (event.symbol, event.requested_side, event.filled_amount_base),
               f"{client_id}: journal says {event.requested_side} {event.filled_amount_base} {event.symbol}, "
               f"the exchange {side} {amount} {symbol}")
    if settled:
        expect(not open_ids and set(on_exchange) == set(journaled), f"orders left open after a success: {open_ids}")
        if positions is not None:
            held = {f"{asset}/USDT": float(amount) for asset, amount in fake.spot_balances.items()
                    if asset != "USDT" and asset not in foreign and amount != 0}
            expect(positions.amounts_base == held, f"positions.json {positions.amounts_base} != exchange {held}")
            bots_cash = fake.spot_balances["USDT"] - (owners_quote or 0)
            exact = positions.cash_quote == float(bots_cash) if owners_quote is None else (
                positions.ledger is not None and abs(positions.ledger.cash_quote - bots_cash) < Decimal("1e-6")
                and positions.account_cash_quote == float(fake.spot_balances["USDT"]))
            expect(exact, f"positions.json cash {positions.cash_quote} != the bot's on the exchange {bots_cash} "
                          f"(USDT {fake.spot_balances['USDT']} - the owner's {owners_quote or 0})")

"""Soak harness: drive the real cron scripts over simulated days under seeded faults, and check after every
step the invariants that protect money. Edge: runs subprocesses, drives the fake servers, reads the tree.

``Driver`` runs one script process at a time (or two, for an overlap) and checks what every run must
satisfy: one alert per failed run, none otherwise; run records; a refused run changes nothing. ``PaperSoak``
adds the simulated days of a paper account fed by FakeBinance through real ccxt; ``TestnetSoak`` (in
tests/soak/testnet.py) the orders that FakeBinance itself executes. A broken invariant is printed at once with
the step, seed and faults in force, collected, and fails the test at the end, so one bug does not hide others.
"""

from __future__ import annotations

import json
import math
import re
import resource
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from lib.errors import EXIT_HALTED, EXIT_LOCKED
from lib.journal import JournalEvent, find_open_orders, find_problems, parse_journal
from lib.ohlcv import OHLCV_COLUMNS, OHLCV_DTYPES, format_ms
from lib.paper import PaperSnapshot
from lib.reporting import parse_equity_csv
from lib.state import HaltRecord, Positions, RunRecord, Targets
from lib.storage import read_json, read_jsonl, read_parquet
from lib.symbols import to_slug
from lib.timeframes import MS_PER_DAY
from lib.venue import OrderResult
from tests.fakes.exchange_server import BAD_CANDLE_KINDS, FakeBinance, exchange_id
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import SCRIPT_TIMEOUT_S, script_env

STAGES = ("fetch_prices", "compute_signals", "rebalance", "report")
TRANSIENT = ("network_error", "http_429", "http_418", "http_5xx", "timeout")
"""One failed exchange request: the retry policy must absorb it (the run still succeeds)."""
PAPER_FAULTS = (*TRANSIENT, "malformed_response", "bad_candle", "absurd_candle", "stale_feed", "sigkill",
                "overlap", "disk_full", "corrupt_state", "kill_switch", "drawdown_halt")
SCHEDULED = tuple(kind for kind in PAPER_FAULTS if kind not in ("stale_feed", "drawdown_halt"))
"""Kinds the daily planner places; the stale feed and the crash are fixed episodes of the market."""
ANY_STAGE, EXCHANGE_STAGES = STAGES, ("fetch_prices", "rebalance")
FAULT_STAGES = {**dict.fromkeys(TRANSIENT, EXCHANGE_STAGES), "malformed_response": ("fetch_prices",),
                "bad_candle": ("fetch_prices",), "absurd_candle": ("fetch_prices",), "sigkill": ANY_STAGE,
                "overlap": EXCHANGE_STAGES, "disk_full": ANY_STAGE, "corrupt_state": ("compute_signals",
                "rebalance", "report"), "kill_switch": ("rebalance",)}
CORRUPTIBLE = {"rebalance": ("state/positions.json", "state/targets.json", "state/orders.jsonl"),
               "report": ("state/equity.csv", "state/runs.jsonl"), "compute_signals": ("data",)}
"""Which state file each stage must refuse when it is corrupted ("data": one candle file)."""
EXCHANGE_TIMEOUT_MS = 1500  # [exchange] timeout_ms of the soak configs
TIMEOUT_DELAY_S = 2.0  # a delayed reply the client gives up on
STALL_S = 2.0  # each request of a stalled first run (overlap) is held this long, until the faults are cleared
DISK_FULL_BYTES = 16  # RLIMIT_FSIZE of a "disk full" run: the lock file's pid fits, nothing else does
EXTRA_FAULT_PROB = 0.5  # chance of one more random fault on a day, beyond the ones still never injected
RUN_RE = re.compile(r"^run: \S+-(\d+)$", re.MULTILINE)


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


@dataclass(slots=True)
class _Started:
    script: str
    process: subprocess.Popen[str]
    started_s: float
    alerts_before: int
    records_offset: int
    disk_full: bool
    context: Any


class Driver:
    """Runs the real scripts in ``root`` against ``fake`` and ``telegram``, checking every run."""

    label = "soak"

    def __init__(self, root: Path, fake: FakeBinance, telegram: FakeTelegram, *, seed: int) -> None:
        self.root, self.fake, self.telegram, self.seed = root, fake, telegram, seed
        self.rng = np.random.default_rng(seed)
        self.where, self.faults_now = "setup", ""
        self.injected: Counter[str] = Counter()
        self.recovered: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()
        self.pending_recovery: defaultdict[str, set[str]] = defaultdict(set)
        self.durations: defaultdict[str, list[float]] = defaultdict(list)
        self.runs: list[Run] = []
        self.checks = 0
        self.violations: list[str] = []
        self.corrupt_paths: set[Path] = set()

    # --- verdicts -------------------------------------------------------------------------------------

    def expect(self, ok: bool, what: str) -> bool:
        self.checks += 1
        if not ok:
            line = f"[{self.label} seed={self.seed}] {self.where} (faults: {self.faults_now or 'none'}): {what}"
            print(f"INVARIANT BROKEN {line}", flush=True)
            self.violations.append(line)
        return ok

    def note_outcome(self, kind: str, script: str, run: Run) -> None:
        """A fault whose run succeeded is recovered at once; otherwise at the script's next success."""
        if run.exit_code == 0:
            self.recovered[kind] += 1
        else:
            self.pending_recovery[script].add(kind)

    def summary(self, *, span: str, kinds: Sequence[str]) -> str:
        exits = ", ".join(f"{key}: {count}" for key, count in sorted(self.exits.items()))
        return "\n".join([
            f"{self.label} soak, seed {self.seed}: {span}, {len(self.runs)} script runs "
            f"({sum(run.seconds for run in self.runs):.0f} s of processes)",
            f"  exit codes: {exits}",
            "  faults injected: " + ", ".join(f"{kind}={self.injected[kind]}" for kind in kinds),
            "  recoveries: " + ", ".join(f"{kind}={self.recovered[kind]}" for kind in kinds),
            f"  invariant checks: {self.checks}, violations: {len(self.violations)}",
        ])

    # --- processes ------------------------------------------------------------------------------------

    def before_run(self, script: str) -> Any:
        """Hook: what a subclass must know about the world as the run starts (its gates)."""
        return None

    def after_run(self, run: Run, context: Any) -> None:
        """Hook: invariants after every run (killed ones included)."""

    def start(self, script: str, args: Sequence[str], *, disk_full: bool = False) -> _Started:
        runs_path = self.root / "state" / "runs.jsonl"
        context = self.before_run(script)

        def limit_file_size() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (DISK_FULL_BYTES, DISK_FULL_BYTES))

        process = subprocess.Popen(
            [sys.executable, "-m", f"scripts.{script}", "--config", str(self.root / "config.toml"), *args],
            cwd=self.root, env=script_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=limit_file_size if disk_full else None,
        )
        return _Started(script, process, time.monotonic(), len(self.telegram.messages),
                        runs_path.stat().st_size if runs_path.exists() else 0, disk_full, context)

    def finish(self, started: _Started, *, kill_after_s: float | None = None) -> Run:
        process = started.process
        if kill_after_s is not None:
            try:
                process.wait(timeout=kill_after_s)
            except subprocess.TimeoutExpired:
                process.kill()
        _, stderr = process.communicate(timeout=SCRIPT_TIMEOUT_S)
        exit_code = None if process.returncode == -signal.SIGKILL else process.returncode
        run = Run(started.script, process.pid, exit_code, stderr, time.monotonic() - started.started_s)
        self.runs.append(run)
        self.exits[f"{run.script} {'SIGKILL' if exit_code is None else exit_code}"] += 1
        if exit_code is not None and kill_after_s is None:
            self.durations[run.script].append(run.seconds)
        self._check_alerts_and_records(run, started)
        self.after_run(run, started.context)
        if exit_code == 0:
            for kind in self.pending_recovery.pop(run.script, set()):
                self.recovered[kind] += 1
        return run

    def run(self, script: str, args: Sequence[str], **options: Any) -> Run:
        kill_after_s = options.pop("kill_after_s", None)
        return self.finish(self.start(script, args, **options), kill_after_s=kill_after_s)

    def _check_alerts_and_records(self, run: Run, started: _Started) -> None:
        alerts = [m.text or "" for m in self.telegram.messages[started.alerts_before:]
                  if " FAILED on " in (m.text or "") and _alert_pid(m.text or "") == run.pid]
        records = self._records_since(started.records_offset, run.pid)
        tail = run.stderr.strip().splitlines()[-1:] if run.stderr.strip() else []
        if run.exit_code is None:
            self.expect(len(alerts) <= 1, f"{run.name}: {len(alerts)} alerts from one killed run")
        elif run.exit_code in (0, EXIT_LOCKED):
            self.expect(not alerts, f"{run.name} sent {len(alerts)} failure alert(s): {alerts[:1]}")
        else:
            self.expect(len(alerts) == 1, f"{run.name} failed with {len(alerts)} alert(s), expected exactly one; "
                                          f"last stderr line: {tail}")
        if run.exit_code == EXIT_LOCKED:
            self.expect(not records, f"{run.name}: a run refused by the lock wrote run records")
        elif run.exit_code is not None and not started.disk_full:
            finished = [record.get("exit_code") for record in records if record.get("event") == "finish"]
            self.expect(finished == [run.exit_code], f"{run.name}: runs.jsonl finish records say {finished}")

    def _records_since(self, offset: int, pid: int) -> list[dict[str, Any]]:
        path = self.root / "state" / "runs.jsonl"
        found = []
        for line in (path.read_bytes()[offset:] if path.exists() else b"").split(b"\n"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and str(record.get("run_id", "")).endswith(f"-{pid}"):
                found.append(record)
        return found

    # --- faults every variant uses --------------------------------------------------------------------

    def snapshot(self) -> dict[str, bytes]:
        """Every file under state/ and data/ except the lock files (flock rewrites the pid in them)."""
        files = {}
        for top in ("state", "data"):
            for path in sorted((self.root / top).rglob("*")):
                relative = path.relative_to(self.root)
                if path.is_file() and "locks" not in relative.parts:
                    files[str(relative)] = path.read_bytes()
        return files

    def expect_unchanged(self, before: dict[str, bytes], who: str) -> None:
        after = self.snapshot()
        changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
        self.expect(not changed, f"{who} changed {changed[:5]}")

    def killed(self, script: str, args: Sequence[str]) -> Run:
        """SIGKILL at a random point: anywhere from start-up to the end of a typical run of the script."""
        typical_s = float(np.median(self.durations[script])) if self.durations[script] else 2.0
        run = self.run(script, args, kill_after_s=float(self.rng.uniform(0.3, 1.0)) * typical_s)
        if run.exit_code is None:
            self.injected["sigkill"] += 1
            self.pending_recovery[script].add("sigkill")
        return run

    def overlapped(self, script: str, args: Sequence[str], *, path: str, match: dict[str, str]) -> Run:
        """Start ``script`` held inside an exchange call; meanwhile start it again: exit 3, nothing changed."""
        seen = self.fake.request_count(path, **match)
        self.fake.delay_next(path, seconds=STALL_S, times=None, match=match)
        first = self.start(script, args)
        deadline = time.monotonic() + SCRIPT_TIMEOUT_S
        while (first.process.poll() is None and self.fake.request_count(path, **match) == seen
               and time.monotonic() < deadline):
            time.sleep(0.02)
        if first.process.poll() is None and self.fake.request_count(path, **match) > seen:
            before = self.snapshot()
            second = self.run(script, args)
            self.injected["overlap"] += 1
            self.expect(second.exit_code == EXIT_LOCKED, f"the overlapping {second.name} was not refused by the lock")
            self.expect_unchanged(before, f"the overlapping {second.name}")
        self.fake.clear_faults()
        return self.finish(first)

    def disk_full(self, script: str, args: Sequence[str]) -> Run:
        """Every write fails (EFBIG): the run must fail, alert once and leave every file as it was."""
        before = self.snapshot()
        run = self.run(script, args, disk_full=True)
        self.injected["disk_full"] += 1
        self.pending_recovery[script].add("disk_full")
        self.expect(run.exit_code not in (0, EXIT_LOCKED, None), f"{run.name} succeeded on a full disk")
        self.expect_unchanged(before, f"{run.name} on a full disk")
        return run

    def corrupted(self, script: str, args: Sequence[str]) -> Run | None:
        """Corrupt a file ``script`` reads: it must refuse (exit 1, one alert) and leave the file alone; then
        the operator restores the file from a backup."""
        path = self._pick_corruptible(script)
        if path is None:
            return None
        original = path.read_bytes()
        broken = _corrupt(original, path.suffix)
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

    def _pick_corruptible(self, script: str) -> Path | None:
        candidates = []
        for name in CORRUPTIBLE.get(script, ()):
            paths = sorted((self.root / name).rglob("*.parquet")) if name == "data" else [self.root / name]
            candidates += [p for p in paths if p.exists() and (p.suffix not in (".jsonl", ".csv")
                                                             or p.read_bytes().count(b"\n") >= 2)]
        return candidates[int(self.rng.integers(len(candidates)))] if candidates else None

    def load(self, path: Path, parse: Callable[[Path], Any]) -> Any:
        """``parse(path)``; a file that does not parse or validate is a violation (unless it was corrupted on
        purpose and not yet restored). None when absent or broken."""
        if not path.exists() or path in self.corrupt_paths:
            return None
        try:
            return parse(path)
        except Exception as error:  # any failure to read back a state file is the finding
            self.expect(False, f"{path.relative_to(self.root)} does not parse/validate: {type(error).__name__}: "
                               f"{error}")
            return None


def _alert_pid(text: str) -> int | None:
    found = RUN_RE.search(text)
    return int(found.group(1)) if found else None


def _corrupt(original: bytes, suffix: str) -> bytes:
    """Half a JSON/Parquet file (a torn write that bypassed the atomic writer); a garbage line in the middle of
    a JSONL/CSV file (not at the end, where a torn line is legitimately tolerated)."""
    if suffix in (".jsonl", ".csv"):
        first, rest = original.split(b"\n", 1)
        return first + b"\n" + b"{\x00garbage written by a failing disk\n" + rest
    return original[: len(original) // 2]


def read_journal(path: Path) -> list[JournalEvent]:
    """The journal's events; only a torn final line is tolerated (read_jsonl raises for anything else)."""
    records, _torn = read_jsonl(path)
    return parse_journal(records)


def read_run_records(path: Path) -> list[RunRecord]:
    records, _torn = read_jsonl(path)
    return [RunRecord.from_dict(record) for record in records]


def truth_price(rows: np.ndarray, at_ms: int) -> float:
    """What FakeBinance quotes at ``at_ms``: the close of the newest candle opened at or before it."""
    return float(rows[rows[:, 0] <= at_ms][-1, 4])


@dataclass(frozen=True, slots=True)
class Fill:
    """One executed order, from a journal ``filled`` event or from the paper account's own order record."""

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
    def of_result(cls, result: OrderResult) -> Fill:
        return cls(result.client_order_id, result.symbol, result.side, result.filled_amount_base,
                   float(result.average_price or 0.0), result.fee_quote, result.timestamp_ms)

    @property
    def signed_base(self) -> Decimal:
        return self.amount_base if self.side == "buy" else -self.amount_base

    @property
    def cash_flow_quote(self) -> Decimal:
        """Cash in (+) or out (-) of the account for this fill, fee included."""
        notional = self.amount_base * Decimal(repr(self.price))
        return (notional if self.side == "sell" else -notional) - Decimal(repr(self.fee_quote))


@dataclass(slots=True)
class PaperGates:
    kill_switch: bool
    halt: HaltRecord | None
    halt_file: bool


@dataclass(slots=True, kw_only=True)
class PaperWorld:
    """What the paper soak knows independently of the scripts: the market it serves and the account rules."""

    truth: dict[str, np.ndarray]  # symbol -> daily candles (timestamp, o, h, l, c, v) FakeBinance serves
    first_day_ms: int  # the first simulated cron time
    days: int
    backfill_start_ms: int
    crash_day: int  # the day every price falls (the drawdown halt)
    stale_days: tuple[int, ...]  # days the benchmark's candles arrive broken (stale data downstream)
    starting_cash_quote: Decimal
    fee_bps: float
    slippage_bps: float
    max_target_age_ms: int
    max_asset_weight_frac: float
    venue_dir: str = "binance"
    extra: dict[str, Any] = field(default_factory=dict)


class PaperSoak(Driver):
    """Simulated days of fetch_prices -> compute_signals -> rebalance -> report on a paper account."""

    label = "paper"

    def __init__(self, root: Path, fake: FakeBinance, telegram: FakeTelegram, *, seed: int,
                 world: PaperWorld) -> None:
        super().__init__(root, fake, telegram, seed=seed)
        self.world = world
        self.now_ms = world.first_day_ms
        self.reset_pending = False
        self.events: list[JournalEvent] = []

    @property
    def state(self) -> Path:
        return self.root / "state"

    def run_all(self) -> None:
        for day in range(self.world.days):
            self.run_day(day)

    def run_day(self, day: int) -> None:
        self.now_ms = self.world.first_day_ms + day * MS_PER_DAY
        self.fake.set_now_ms(self.now_ms)
        self.operator_morning()
        plan = self.plan(day)
        for script in STAGES:
            kind = "stale_feed" if script == "fetch_prices" and day in self.world.stale_days else plan.get(script)
            self.where, self.faults_now = f"day {day} ({format_ms(self.now_ms)}) {script}", kind or ""
            self.stage(script, kind)
            self.fake.clear_faults()  # a fault the run never reached must not leak into the next one

    def operator_morning(self) -> None:
        """A person clears a drawdown halt once it has held a full day, and accepts the book as the new peak."""
        halt_path = self.state / "halt.json"
        if not halt_path.exists() or halt_path in self.corrupt_paths:
            return
        halt = HaltRecord.from_dict(read_json(halt_path))
        if halt.flattened and self.now_ms - halt.created_ms >= 2 * MS_PER_DAY:
            halt_path.unlink()
            self.reset_pending = True

    def plan(self, day: int) -> dict[str, str]:
        """Stage -> fault for ``day``: first the kinds never injected yet (spread so all fit before the two
        quiet final days), plus sometimes a random one. The crash day and the day before stay quiet."""
        world = self.world
        if day in (world.crash_day - 1, world.crash_day) or day >= world.days - 2:
            return {}
        wanted = [kind for kind in SCHEDULED if not self.injected[kind]]
        days_left = max(1, world.days - 2 - day - (day < world.crash_day) * 2)
        count = math.ceil(len(wanted) / days_left) + int(self.rng.random() < EXTRA_FAULT_PROB)
        order = [str(kind) for kind in self.rng.permutation(wanted)] + [str(k) for k in self.rng.permutation(SCHEDULED)]
        plan: dict[str, str] = {}
        busy = {"fetch_prices"} if day in world.stale_days else set()
        for kind in order:
            free = [stage for stage in FAULT_STAGES[kind] if stage not in busy]
            if len(plan) >= count or not free or kind in plan.values():
                continue
            stage = free[int(self.rng.integers(len(free)))]
            plan[stage] = kind
            busy.add(stage)
        return plan

    def stage(self, script: str, kind: str | None) -> None:
        args = ["--as-of", str(self.now_ms)]
        if script == "rebalance" and self.reset_pending:
            args.append("--reset-high-water-mark")
        if kind in ("sigkill", "disk_full", "corrupt_state"):
            failed = {"sigkill": self.killed, "disk_full": self.disk_full, "corrupt_state": self.corrupted}[kind](
                script, args)
            if failed is None or failed.exit_code != 0:  # cron's next run (or the operator) runs it again
                self.faults_now += " (re-run)"
                self.run(script, args)
            return
        if kind == "overlap":
            path, match = self._exchange_path(script)
            self.overlapped(script, args, path=path, match=match)
            return
        if kind == "kill_switch":
            (self.state / "KILL").touch()
            run = self.run(script, args)
            (self.state / "KILL").unlink()
            self.injected[kind] += 1
            self.note_outcome(kind, script, run)
            self.expect(run.exit_code == EXIT_HALTED, f"{run.name} with state/KILL present did not exit 4")
            return
        consumed_before = self.fake.pending_faults()
        if kind is not None:
            self.inject(kind, script)
        run = self.run(script, args)
        if kind is not None and self.fake.pending_faults() < consumed_before + 1:
            self.injected[kind] += 1
            self.note_outcome(kind, script, run)
            if kind in TRANSIENT or kind in ("bad_candle", "absurd_candle"):
                self.expect(run.exit_code == 0, f"one {kind} failed {run.name}: the retry/re-fetch should absorb "
                                                f"it; last stderr lines: {run.stderr.strip().splitlines()[-2:]}")

    def _exchange_path(self, script: str) -> tuple[str, dict[str, str]]:
        if script == "fetch_prices":
            symbol = list(self.world.truth)[int(self.rng.integers(len(self.world.truth)))]
            return "/api/v3/klines", {"symbol": exchange_id(symbol)}
        return "/api/v3/ticker/24hr", {}

    def inject(self, kind: str, script: str) -> None:
        path, match = self._exchange_path(script)
        if self.rng.random() < 0.3 and kind in TRANSIENT:
            path, match = "/api/v3/exchangeInfo", {}
        fake, closed_ms = self.fake, self.now_ms - self.now_ms % MS_PER_DAY - MS_PER_DAY
        symbol = list(self.world.truth)[0] if kind == "stale_feed" else None
        if kind == "network_error":
            fake.disconnect_next(path, match=match)
        elif kind in ("http_429", "http_418"):
            fake.fail_next(path, status=int(kind[-3:]), retry_after_s=1, match=match)
        elif kind == "http_5xx":
            fake.fail_next(path, status=int(self.rng.choice([500, 502, 503, 504])), match=match)
        elif kind == "timeout":
            fake.delay_next(path, seconds=TIMEOUT_DELAY_S, match=match)
        elif kind == "malformed_response":
            fake.malform_next(path, how=str(self.rng.choice(["invalid_json", "truncated"])), match=match)
        elif kind in ("bad_candle", "absurd_candle"):
            bad = "absurd_jump" if kind == "absurd_candle" else str(
                self.rng.choice([k for k in BAD_CANDLE_KINDS if k != "absurd_jump"]))
            fake.corrupt_next_candles(bad, symbol=_symbol_of(match), at_ms=closed_ms)
        elif kind == "stale_feed":  # the benchmark's candles stay broken all run: its file falls behind
            fake.corrupt_next_candles("negative_price", symbol=symbol, at_ms=None, times=None)
            self._stale_at_ms = closed_ms
        else:
            raise ValueError(f"no injection for {kind}")

    # --- invariants ------------------------------------------------------------------------------------

    def before_run(self, script: str) -> PaperGates:
        halt_path = self.state / "halt.json"
        halt = None
        if halt_path.exists() and halt_path not in self.corrupt_paths:
            halt = HaltRecord.from_dict(read_json(halt_path))
        return PaperGates((self.state / "KILL").exists(), halt, halt_path.exists())

    def after_run(self, run: Run, context: Any) -> None:
        self.check_state()
        if run.script == "rebalance":
            self.check_gates(run, context)
        if run.script == "fetch_prices" and run.exit_code == 0:
            self.check_fresh(run)
        if run.script == "report" and run.exit_code is not None:
            self.check_equity_row()

    def check_state(self) -> None:
        """Every state file parses and validates; the candles are the exchange's; the book adds up."""
        targets = self.load(self.state / "targets.json", lambda p: Targets.from_dict(read_json(p)))
        positions = self.load(self.state / "positions.json", lambda p: Positions.from_dict(read_json(p)))
        self.load(self.state / "halt.json", lambda p: HaltRecord.from_dict(read_json(p)))
        self.load(self.state / "runs.jsonl", read_run_records)
        self.load(self.state / "equity.csv", lambda p: parse_equity_csv(p.read_text())[0])
        events = self.load(self.state / "orders.jsonl", read_journal)
        if targets is not None:
            weights = targets.weights.values()
            self.expect(all(-1e-12 <= w <= self.world.max_asset_weight_frac + 1e-9 for w in weights)
                        and sum(weights) <= 1 + 1e-9, f"targets.json weights out of bounds: {targets.weights}")
        self.check_candles()
        if events is not None:
            self.events = events
            if positions is not None:
                snapshot = self.load(self.state / "positions.json", lambda p: PaperSnapshot.from_dict(
                    Positions.from_dict(read_json(p)).paper))
                if snapshot is not None:
                    self.check_book(events, positions, snapshot)
            elif self.expect(not any(e.event == "filled" for e in events), "fills journaled, no positions.json"):
                pass

    def candle_path(self, symbol: str) -> Path:
        return self.root / "data" / "ohlcv" / self.world.venue_dir / "1d" / f"{to_slug(symbol)}.parquet"

    def check_candles(self) -> None:
        """Stored candles are exactly what the exchange served, contiguous from the backfill start, all closed."""
        last_closed_ms = self.now_ms - self.now_ms % MS_PER_DAY - MS_PER_DAY
        for symbol, rows in self.world.truth.items():
            path = self.candle_path(symbol)
            frame = self.load(path, lambda p: read_parquet(p, columns=OHLCV_COLUMNS, dtypes=OHLCV_DTYPES))
            if frame is None:
                continue
            stored = frame.to_numpy(dtype=float)
            expected = rows[(rows[:, 0] >= self.world.backfill_start_ms) & (rows[:, 0] <= stored[-1, 0])]
            self.expect(stored.shape == expected.shape and bool(np.array_equal(stored, expected)),
                        f"{path.name}: stored candles differ from the ones the exchange served "
                        f"({len(stored)} vs {len(expected)} rows)")
            self.expect(stored[-1, 0] <= last_closed_ms, f"{path.name} stores a candle that has not closed")

    def check_fresh(self, run: Run) -> None:
        """After fetch_prices exits 0 every series holds the last closed candle: success means up to date."""
        last_closed_ms = self.now_ms - self.now_ms % MS_PER_DAY - MS_PER_DAY
        for symbol in self.world.truth:
            frame = read_parquet(self.candle_path(symbol), columns=OHLCV_COLUMNS)
            newest = None if frame is None else int(frame["timestamp"].iloc[-1])
            self.expect(newest == last_closed_ms, f"{run.name} exited 0 but {symbol} ends at "
                                                  f"{newest and format_ms(newest)}, not {format_ms(last_closed_ms)}")

    def executed(self, events: list[JournalEvent], snapshot: PaperSnapshot) -> list[Fill]:
        """Journaled fills, plus orders the paper account executed whose ``filled`` line a kill prevented."""
        fills = [Fill.of_event(e) for e in events if e.event == "filled"]
        open_ids = [e.client_order_id for e in find_open_orders(events)]
        return fills + [Fill.of_result(snapshot.orders[i]) for i in open_ids if i in snapshot.orders]

    def check_book(self, events: list[JournalEvent], positions: Positions, snapshot: PaperSnapshot) -> None:
        world = self.world
        self.expect(find_problems(events) == [], f"journal inconsistent: {find_problems(events)[:3]}")
        filled_ids = Counter(e.client_order_id for e in events if e.event == "filled")
        self.expect(max(filled_ids.values(), default=0) <= 1,
                    f"client order ids executed twice: {[i for i, n in filled_ids.items() if n > 1]}")
        sent_ids = {e.client_order_id for e in events if e.event == "sent"}
        self.expect(set(snapshot.orders) <= sent_ids, "the paper account executed orders the journal never sent: "
                                                      f"{sorted(set(snapshot.orders) - sent_ids)[:3]}")
        fills = self.executed(events, snapshot)
        amounts: dict[str, Decimal] = defaultdict(Decimal)
        cash = world.starting_cash_quote
        for fill in fills:
            amounts[fill.symbol] += fill.signed_base
            cash += fill.cash_flow_quote
            self.check_fill_price(fill)
        amounts = {symbol: amount for symbol, amount in amounts.items() if amount != 0}
        self.expect(amounts == dict(snapshot.amounts_base), f"paper holdings {dict(snapshot.amounts_base)} != "
                                                            f"sum of fills {amounts}")
        self.expect(positions.amounts_base == {s: float(a) for s, a in snapshot.amounts_base.items()},
                    f"positions.json amounts {positions.amounts_base} != paper account {snapshot.amounts_base}")
        self.expect(abs(cash - snapshot.cash_quote) < Decimal("1e-6"), f"paper cash {snapshot.cash_quote} != "
                                                                        f"start - buys + sells - fees = {cash}")
        marked = positions.cash_quote + sum(a * positions.marks[s] for s, a in positions.amounts_base.items())
        self.expect(abs(positions.equity_quote - marked) < 0.005,
                    f"positions.json equity {positions.equity_quote} != cash + sum(amount x mark) = {marked}")
        wrong_marks = {s: p for s, p in positions.marks.items()
                       if p != truth_price(world.truth[s], positions.updated_ms)}
        self.expect(not wrong_marks, f"positions.json marks are not the exchange's prices: {wrong_marks}")
        fees = sum(e.fee_quote or 0.0 for e in events if e.event == "filled")
        self.expect(abs(positions.fees_paid_quote - fees) < 1e-9, "positions.json fees_paid_quote "
                                                                  f"{positions.fees_paid_quote} != journal {fees}")
        for event in (e for e in events if e.event == "sent"):
            as_of_ms = int(event.rebalance_id.removesuffix("-flat").rsplit("-", 1)[1])
            if event.rebalance_id.endswith("-flat"):
                self.expect(event.requested_side == "sell", f"a flatten order buys: {event.client_order_id}")
            else:
                self.expect(event.time_ms - as_of_ms <= world.max_target_age_ms,
                            f"{event.client_order_id} sent on stale targets (as of {format_ms(as_of_ms)})")

    def check_fill_price(self, fill: Fill) -> None:
        """Paper fills at the exchange's price at the run's time, +- slippage, and pays the fee on it."""
        world = self.world
        slip = world.slippage_bps / 10_000 * (1 if fill.side == "buy" else -1)
        price = truth_price(world.truth[fill.symbol], fill.time_ms) * (1 + slip)
        fee = float(fill.amount_base) * fill.price * world.fee_bps / 10_000
        self.expect(math.isclose(fill.price, price, rel_tol=1e-9) and math.isclose(fill.fee_quote, fee, rel_tol=1e-9),
                    f"{fill.client_order_id} filled at {fill.price} fee {fill.fee_quote}, expected {price} fee {fee}")

    def check_equity_row(self) -> None:
        """report's equity row = starting cash + PnL (holdings at the newest closes, trades at fill prices) - fees,
        to the cent, re-derived from the journal and the exchange's candles alone."""
        path = self.state / "equity.csv"
        positions_path = self.state / "positions.json"
        if not path.exists() or not positions_path.exists() or {path, positions_path} & self.corrupt_paths:
            return
        history, _ = parse_equity_csv(path.read_text())
        row = history[history["time_ms"] == self.now_ms]
        if row.empty:
            return
        snapshot = PaperSnapshot.from_dict(Positions.from_dict(read_json(positions_path)).paper)
        pnl, fees = Decimal(0), Decimal(0)
        for fill in self.executed(self.events, snapshot):
            pnl += fill.cash_flow_quote + Decimal(repr(fill.fee_quote))
            fees += Decimal(repr(fill.fee_quote))
        for symbol, amount in snapshot.amounts_base.items():
            frame = read_parquet(self.candle_path(symbol), columns=OHLCV_COLUMNS)
            assert frame is not None
            closed = frame[frame["timestamp"] <= self.now_ms - self.now_ms % MS_PER_DAY - MS_PER_DAY]
            pnl += amount * Decimal(repr(float(closed["close"].iloc[-1])))
        expected = float(self.world.starting_cash_quote + pnl - fees)
        equity = float(row["equity_quote"].iloc[0])
        self.expect(abs(equity - expected) < 0.005, f"equity.csv says {equity:.4f} at {format_ms(self.now_ms)}, "
                                                    f"start + PnL - fees = {expected:.4f}")

    def check_gates(self, run: Run, gates: PaperGates) -> None:
        """No order while the kill switch or a finished drawdown halt is in force; during an unfinished
        halt only the flatten's sells."""
        if self.state / "orders.jsonl" in self.corrupt_paths:
            return
        sent = [e for e in self.events if e.event == "sent" and e.run_id.endswith(f"-{run.pid}")]
        if gates.kill_switch:
            self.expect(not sent, f"{run.name} sent {len(sent)} order(s) while state/KILL existed")
        if gates.halt is not None and gates.halt.flattened:
            self.expect(not sent, f"{run.name} sent {len(sent)} order(s) during a drawdown halt")
        elif gates.halt is not None:
            self.expect(all(e.rebalance_id.endswith("-flat") and e.requested_side == "sell" for e in sent),
                        f"{run.name} sent more than the flatten during an unfinished halt")
        if not gates.halt_file and (self.state / "halt.json").exists():
            self.injected["drawdown_halt"] += 1
            self.pending_recovery["rebalance"].add("drawdown_halt")
            self.expect(run.exit_code == EXIT_HALTED, f"{run.name} wrote halt.json but did not exit 4")
        if run.exit_code == 0 and "--reset-high-water-mark" in " ".join(run.stderr.split()[:0]) or (
                run.exit_code == 0 and self.reset_pending):
            self.reset_pending = False


def _symbol_of(match: dict[str, str]) -> str | None:
    wanted = match.get("symbol")
    return None if wanted is None else f"{wanted[:-4]}/{wanted[-4:]}"

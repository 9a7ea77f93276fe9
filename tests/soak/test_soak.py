"""Soak under faults: the real scripts run as cron would for many simulated days while a seeded schedule injects
exchange errors, bad candles, kills, overlaps, a full disk, corrupted state, the kill switch and market crashes;
every step is followed by the invariant checks of tests/soak/harness.py.

Two variants run side by side (one per core):
- paper: mode ``paper``, ``exchange.id = "binance"``, ``rest_base_url`` on FakeBinance: candles and prices
  come from the fake (real ccxt over HTTP), its clock moved one day at a time and every script given the same
  ``--as-of``; orders go to the paper account in positions.json. The fake serves candles generated here, so
  the test knows the truth: stale episodes, and crashes that must end in drawdown halts a person clears.
- testnet: mode ``testnet`` against FakeBinance, which executes the orders. ``--as-of`` is refused outside
  paper mode, so the fake follows the wall clock and cycles are seconds apart: the operator deposits funds
  before each cycle so that it trades, and the faults are those of a real order endpoint (lost replies,
  failed lookups, a SIGKILL while an order is in flight).

The paper variant also carries two data episodes (issue 9 items 5 and 6): a persisting x2.2 print of the
benchmark's candle on a calm day (it must be quarantined: BTC held, no BTC order, refuted by the next candle),
and a configured symbol the exchange does not list (DEAD_SYMBOL: every fetch is partial, exit 5, alerted
once; the chain trades the others). The testnet variant carries the trade-book episodes (issue 9 items 2, 3;
``cashflow`` refuses paper mode, where no money moves): a recorded deposit, then a recorded withdrawal of a third
of the book (USDT and coins) that must not trip the 12 % drawdown halt, and a foreign coin (FOREIGN) in the
account that is never traded and whose balance never changes. The shared variant runs the testnet cycles in an
account the bot shares with its owner (``book.capital_quote = 1000`` among the owner's 4,000 USDT) whose spot
commissions are charged in the coin bought: after every successful run the bot's cash ledger must be exactly the
account's USDT minus the owner's (each commission counted once), its coins exactly the exchange's.

Commands (``-s`` prints the summary; COINBOT_SOAK_SEED=<int> picks another schedule):
    .venv/bin/python -m pytest tests/soak -m soak -s        # CI: 20 days + 2 x 9 cycles, ~3-6 min on 2 cores
    .venv/bin/python -m pytest tests/soak -m soak_long -s   # release check: 180 days + 40 cycles
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lib.core.errors import EXIT_HALTED, EXIT_PARTIAL
from lib.core.state import HaltRecord, Positions, Targets
from lib.core.storage import read_json, read_parquet, write_json_atomic
from lib.core.symbols import to_slug
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR, format_ms
from lib.data.ohlcv import OHLCV_COLUMNS, OHLCV_DTYPES
from lib.execution.ccxt_client import MAX_NETWORK_RETRIES
from lib.execution.journal import JournalEvent
from lib.execution.paper import PaperSnapshot
from lib.execution.risk import RiskLimits
from lib.ops.equity_csv import parse_equity_csv
from tests.fakes.exchange_server import LOST_RESPONSE_MODES, FakeBinance, exchange_id
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.soak import harness

SEED = int(os.environ.get("COINBOT_SOAK_SEED", "20250601"))
CI_DAYS, CI_CYCLES = 20, 9
LONG_DAYS, LONG_CYCLES = 180, 40
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
DEAD_SYMBOL = "LUNA/USDT"  # configured, never listed by the exchange (paper variant): a delisted symbol
BAD_PRINT_AFTER_CRASH_DAYS, BAD_PRINT_MULT = 5, 2.2  # the benchmark's bad print, days after each crash
START_PRICES = (25_000.0, 1_600.0, 40.0, 250.0)
FIRST_DAY_MS = 1_748_736_000_000 + 10 * 60_000  # 2025-06-01T00:10Z: cron runs ten minutes after the close
HISTORY_DAYS = 300  # backfill before the first simulated day
FIRST_CRASH_DAY, CRASH_EVERY_DAYS, CALM_DAYS = 11, 60, 30  # a crash, then every 60 days, after 30 calm days
ENV = {"COINBOT_TELEGRAM_BOT_TOKEN": "123:soak-token", "COINBOT_TELEGRAM_CHAT_ID": "42",
       "COINBOT_EXCHANGE_API_KEY": "soak-key", "COINBOT_EXCHANGE_API_SECRET": "soak-secret"}
MAX_TARGET_AGE_MS = 26 * MS_PER_HOUR
PAPER_TIMEOUT_MS = 1500  # a spurious timeout on a loaded machine is retried: reads only, orders are paper
FOREIGN = {"XRP": Decimal(500)}  # testnet: a coin in the account that is not the bot's (not in data.symbols)
DEPOSIT_QUOTE, WITHDRAW_FRAC = Decimal(800), Decimal("0.35")  # both recorded with `cashflow`; 35 % > the 12 % halt
TESTNET_TIMEOUT_MS = 5000  # an order that times out fails its run: keep loopback replies well inside it
OWNERS_QUOTE, SHARED_BOOK = Decimal(4000), {"capital_quote": 1000}  # shared: the owner's USDT, the bot's capital
SHARED_TARGETS = {"BTC/USDT": 0.2, "ETH/USDT": 0.15}  # within the default risk.max_asset_weight_frac

PAPER_FAULTS = (*harness.TRANSIENT, "malformed_response", "bad_candle", "absurd_candle", "stale_feed", "sigkill",
                "overlap", "disk_full", "corrupt_state", "kill_switch", "drawdown_halt", "bad_benchmark_print",
                "dead_symbol")
EXCHANGE_STAGES = ("fetch_prices", "rebalance")
FAULT_STAGES = {**dict.fromkeys(harness.TRANSIENT, EXCHANGE_STAGES), "malformed_response": ("fetch_prices",),
                "bad_candle": ("fetch_prices",), "absurd_candle": ("fetch_prices",), "sigkill": harness.STAGES,
                "overlap": EXCHANGE_STAGES, "disk_full": harness.STAGES, "kill_switch": ("rebalance",),
                "corrupt_state": ("compute_signals", "rebalance", "report")}
"""The stages each scheduled fault may hit (the stale feed and the crash are episodes of the market)."""
TESTNET_FAULTS = ("lost_order_response", "order_http_error", "lookup_failure", "sigkill", "overlap",
                  "kill_switch", "network_error", "cash_flows")
EXTRA_FAULT_PROB = 0.5  # chance of one more random fault on a day, beyond the kinds never injected yet
ORDER_PATH = "/api/v3/order"


SMALL_WINDOWS = {
    "strategy": {"timeframe": "1d", "volatility_window_bars": 10},
    "signals": {"ema_fast_length": 5, "ema_slow_length": 20, "adx_length": 7, "roc_lengths": [3, 10, 30],
                "rsi_length": 7, "bbands_length": 10, "atr_length": 7, "realized_vol_length": 10,
                "obv_flow_length": 10, "norm_window_bars": 60, "norm_min_bars": 15},
    "ensemble": {"ic_window_bars": 60, "ic_min_bars": 20},
    "universe": {"min_history_bars": 60, "dollar_volume_window_bars": 10, "min_dollar_volume_quote": 0},
    "spot": {"regime_filter": False, "top_n": 3}, "orders": {"no_trade_band_frac": 0.01},  # trade often
}
"""Short windows, so that 300 daily bars warm every signal up and targets are non-trivial from day one."""


def config_text(fake: FakeBinance, telegram: FakeTelegram, *, mode: str, backfill_start: str,
                max_target_age_ms: int, timeout_ms: int, extra_symbols: tuple[str, ...] = (),
                book: dict[str, Any] | None = None) -> str:
    """A small paper book, a 12 % drawdown halt, one bar of staleness tolerated (so a quarantined jump is decided
    by one later candle), the fakes' URLs."""
    sections: dict[str, dict[str, Any]] = {
        "exchange": {"id": "binance", "mode": mode, "rest_base_url": fake.base_url, "enable_rate_limit": False,
                     "timeout_ms": timeout_ms, "retry_base_delay_ms": 1},
        "data": {"symbols": [*SYMBOLS, *extra_symbols], "timeframes": ["1d"], "backfill_start": backfill_start,
                 "max_staleness_bars": 1, "jump_confirm_bars": 1},
        **SMALL_WINDOWS,
        "risk": {"max_order_notional_quote": 2000, "max_drawdown_frac": 0.12, "max_target_age_ms": max_target_age_ms},
        "health": {"fetch_prices_max_age_ms": 26 * MS_PER_HOUR},
        "paper": {"starting_cash_quote": 1000, "fee_bps": 10, "slippage_bps": 5},
        "alerts": {"telegram_base_url": telegram.base_url},
        **({"book": book} if book else {}),
    }
    return "".join(f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
                   for name, values in sections.items())


def build_truth(rng: np.random.Generator, *, start_ms: int, days: int,
                crash_ms: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Daily candles per symbol: a steady rise (so the strategy is invested), then every price halves in the
    candle opening at each ``crash_ms`` (even a book 25 % invested breaches the 12 % drawdown), then a wild
    walk until the rise that precedes the next crash."""
    times = np.arange(start_ms, start_ms + days * MS_PER_DAY, MS_PER_DAY, dtype=np.int64)
    calm = times < crash_ms[0]
    for crash in crash_ms[1:]:
        calm |= (times >= crash - CALM_DAYS * MS_PER_DAY) & (times < crash)
    truth = {}
    for symbol, first_price in zip(SYMBOLS, START_PRICES, strict=True):
        log_returns = rng.normal(np.where(calm, 0.008, 0.0), np.where(calm, 0.012, 0.03))
        log_returns[np.isin(times, crash_ms)] = math.log(0.5)
        close = np.round(first_price * np.exp(np.cumsum(log_returns)), 4)
        open_ = np.concatenate([[first_price], close[:-1]])
        high = np.round(np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, len(times)))), 4)
        low = np.round(np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, len(times)))), 4)
        volume = np.round(rng.lognormal(9, 0.3, len(times)), 3)
        truth[symbol] = np.column_stack([times.astype(float), open_, high, low, close, volume])
    return truth


def write_project(root: Path, config: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    Project(root).write_config(config)
    Project(root).write_env(**ENV)


@dataclass(frozen=True, slots=True)
class Gates:  # what stopped trading as a rebalance started
    kill_switch: bool
    halt: HaltRecord | None
    halt_file: bool


class PaperSoak(harness.Driver):
    """Days of fetch_prices -> compute_signals -> rebalance -> report on a paper account, with faults."""

    label, kinds = "paper", PAPER_FAULTS

    def __init__(self, root: Path, fake: FakeBinance, telegram: FakeTelegram, *, seed: int, days: int,
                 rules: harness.PaperRules, crash_days: tuple[int, ...], backfill_start_ms: int,
                 bad_print_days: tuple[int, ...] = ()) -> None:
        super().__init__(root, fake, telegram, seed=seed, timeout_ms=PAPER_TIMEOUT_MS)
        self.days, self.rules, self.crash_days, self.backfill_start_ms = days, rules, crash_days, backfill_start_ms
        self.bad_print_days, self.day = bad_print_days, 0
        self.span = f"{days} simulated days"
        starts = [int(self.rng.integers(max(2, crash - 9), crash - 2)) for crash in crash_days]
        self.stale_days = {day for start in starts for day in (start, start + 1)}  # the benchmark's feed is broken
        self.now_ms, self.reset_pending, self.events = FIRST_DAY_MS, False, []

    @property
    def last_closed_ms(self) -> int:  # the open time of the newest closed daily candle
        return self.now_ms - self.now_ms % MS_PER_DAY - MS_PER_DAY

    def run_all(self) -> None:
        for day in range(self.days):
            self.now_ms, self.day = FIRST_DAY_MS + day * MS_PER_DAY, day
            self.fake.set_now_ms(self.now_ms)
            self.operator_morning()
            plan = self.plan(day)
            for script in harness.STAGES:
                kind = "stale_feed" if script == "fetch_prices" and day in self.stale_days else plan.get(script)
                self.where, self.faults_now = f"day {day} ({format_ms(self.now_ms)}) {script}", kind or ""
                self.stage(script, kind)
                self.fake.clear_faults()  # a fault the run never reached must not leak into the next one

    def operator_morning(self) -> None:
        """A person clears a drawdown halt once it has held a full day, accepting the book as the new peak."""
        halt_path = self.state / "halt.json"
        if halt_path.exists() and halt_path not in self.corrupt_paths:
            halt = HaltRecord.from_dict(read_json(halt_path))
            if halt.flattened and self.now_ms - halt.created_ms >= 2 * MS_PER_DAY:
                halt_path.unlink()
                self.reset_pending = True

    def plan(self, day: int) -> dict[str, str]:
        """Stage -> fault: first the kinds never injected (spread so all fit before the two quiet final days),
        sometimes one more at random. Crash days and the days before them stay quiet."""
        quiet = {d for crash in self.crash_days for d in (crash - 1, crash)} | {
            d for bad in self.bad_print_days for d in (bad, bad + 1)}  # the bad print's two days: checked exactly
        if day in quiet or day >= self.days - 2:
            return {}
        wanted = [kind for kind in FAULT_STAGES if not self.injected[kind]]
        days_left = max(1, self.days - 2 - day - (2 if day < self.crash_days[0] else 0))
        count = math.ceil(len(wanted) / days_left) + int(self.rng.random() < EXTRA_FAULT_PROB)
        plan: dict[str, str] = {}
        busy = {"fetch_prices"} if day in self.stale_days else set()
        for kind in [*self.rng.permutation(wanted), *self.rng.permutation(list(FAULT_STAGES))]:
            free = [stage for stage in FAULT_STAGES[str(kind)] if stage not in busy]
            if len(plan) < count and free and kind not in plan.values():
                stage = free[int(self.rng.integers(len(free)))]
                plan[stage], busy = str(kind), busy | {stage}
        return plan

    def stage(self, script: str, kind: str | None) -> None:
        resetting = script == "rebalance" and self.reset_pending  # the operator accepted the book as the peak
        args = ["--as-of", str(self.now_ms), *(["--reset-high-water-mark"] if resetting else [])]
        if kind in ("sigkill", "disk_full", "corrupt_state"):
            run = {"sigkill": self.killed, "disk_full": self.disk_full, "corrupt_state": self.corrupted}[kind](
                script, args)
            if run is None or run.exit_code not in (0, EXIT_PARTIAL):  # cron's next run, or the operator, runs it again
                self.faults_now += " (re-run)"
                self.run(script, args)
        elif kind == "overlap":
            path, match = self.exchange_path(script)
            self.overlapped(script, args, path=path, match=match)
        elif kind == "kill_switch":
            (self.state / "KILL").touch()
            run = self.run(script, args)
            (self.state / "KILL").unlink()
            self.note_outcome(kind, script, run)
            self.expect(run.exit_code == EXIT_HALTED, f"{run.name} with state/KILL present did not exit 4")
        else:
            self.stage_with_exchange_fault(script, kind, args)

    def stage_with_exchange_fault(self, script: str, kind: str | None, args: list[str]) -> None:
        if kind is not None:
            path, match = self.exchange_path(script)
            if kind in harness.TRANSIENT and self.rng.random() < 0.3:
                path, match = "/api/v3/exchangeInfo", {}
            symbol = SYMBOLS[0] if kind == "stale_feed" else match.get("symbol", "").replace("USDT", "/USDT")
            harness.inject_exchange_fault(self.fake, kind, self.rng, path=path, match=match, held_s=self.held_s,
                                          symbol=symbol or None, at_ms=self.last_closed_ms)
        run = self.run(script, args)
        if kind is not None and (kind == "stale_feed" or self.fake.pending_faults() == 0):  # it was reached
            self.note_outcome(kind, script, run)
            marker = "ExchangeUnavailable" if kind in harness.TRANSIENT else "after a re-fetch"
            if kind in harness.TRANSIENT or kind in ("bad_candle", "absurd_candle"):  # a retry or re-fetch absorbs it
                self.expect(marker not in run.error, f"one {kind} failed {run.name}: {run.error}")

    def exchange_path(self, script: str) -> tuple[str, dict[str, str]]:
        if script == "fetch_prices":
            return "/api/v3/klines", {"symbol": exchange_id(SYMBOLS[int(self.rng.integers(len(SYMBOLS)))])}
        return "/api/v3/ticker/24hr", {}

    def before_run(self, script: str) -> Gates:
        halt_path = self.state / "halt.json"
        halt = None
        if halt_path.exists() and halt_path not in self.corrupt_paths:
            halt = HaltRecord.from_dict(read_json(halt_path))
        return Gates((self.state / "KILL").exists(), halt, halt_path.exists())

    def after_run(self, run: harness.Run, gates: Any) -> None:
        state, expect = self.state, self.expect
        targets = self.load(state / "targets.json", lambda p: Targets.from_dict(read_json(p)))
        positions = self.load(state / "positions.json", lambda p: Positions.from_dict(read_json(p)))
        self.load(state / "halt.json", lambda p: HaltRecord.from_dict(read_json(p)))
        self.load(state / "runs.jsonl", harness.read_run_records)
        self.load(state / "equity.csv", lambda p: parse_equity_csv(p.read_text())[0])
        events = self.load(state / "orders.jsonl", harness.read_journal)
        if targets is not None:
            weights = list(targets.weights.values())
            cap = RiskLimits().max_asset_weight_frac  # the soak runs the default [risk] and the default strategy
            expect(all(-1e-12 <= w <= cap + 1e-9 for w in weights) and sum(weights) <= 1 + 1e-9,
                   f"targets.json weights out of bounds: {targets.weights}")
        for symbol in SYMBOLS:
            frame = self.load(self.candle_path(symbol), lambda p: read_parquet(p, columns=OHLCV_COLUMNS,
                                                                               dtypes=OHLCV_DTYPES))
            if frame is not None:
                harness.check_candles(expect, self.candle_path(symbol).name, frame, self.rules.truth[symbol],
                                      backfill_start_ms=self.backfill_start_ms, last_closed_ms=self.last_closed_ms)
        if events is not None:
            self.events = events
            harness.check_journal(expect, events)
            if positions is not None:
                snapshot = self.load(state / "positions.json", lambda _: PaperSnapshot.from_dict(positions.paper))
                if snapshot is not None:
                    harness.check_paper_book(expect, events, positions, snapshot, self.rules)
            elif not (state / "positions.json").exists():
                expect(not any(e.event == "filled" for e in events), "fills journaled but no positions.json")
        if run.script == "rebalance":
            self.after_rebalance(run, gates)
        self.check_data_episodes(run, targets)
        if run.script == "fetch_prices" and run.exit_code in (0, EXIT_PARTIAL):
            partly = next((line for line in run.stderr.splitlines() if " partly done: " in line), "")
            for symbol in (s for s in SYMBOLS if f" {s}: " not in partly):  # success means up to date
                frame = read_parquet(self.candle_path(symbol), columns=OHLCV_COLUMNS)
                newest = None if frame is None else int(frame["timestamp"].iloc[-1])
                expect(newest == self.last_closed_ms, f"{run.name} exited 0 but {symbol} ends at "
                                                      f"{newest and format_ms(newest)}")
        if run.script == "report" and run.exit_code is not None:
            self.check_equity_row()

    def after_rebalance(self, run: harness.Run, gates: Gates) -> None:
        """No order under the kill switch or a finished drawdown halt; under an unfinished one only the flatten."""
        if self.state / "orders.jsonl" not in self.corrupt_paths:
            sent = [e for e in self.events if e.event == "sent" and e.run_id.endswith(f"-{run.pid}")]
            self.expect(not (sent and (gates.kill_switch or (gates.halt and gates.halt.flattened))),
                        f"{run.name} sent {len(sent)} order(s) under the kill switch or a drawdown halt")
            self.expect(gates.halt is None or all(e.rebalance_id.endswith("-flat") and e.requested_side == "sell"
                                                  for e in sent), f"{run.name} sent more than a flatten under a halt")
        if not gates.halt_file and (self.state / "halt.json").exists():
            self.note_outcome("drawdown_halt", "rebalance", run)
            self.expect(run.exit_code == EXIT_HALTED, f"{run.name} wrote halt.json but did not exit 4")
        if run.exit_code == 0:
            self.reset_pending = False

    def check_data_episodes(self, run: harness.Run, targets: Targets | None) -> None:
        """The bad benchmark print is quarantined, then refuted; the dead symbol never stops the chain."""
        expect, quarantined = self.expect, None if targets is None else targets.hold.get(SYMBOLS[0], "")
        if run.script == "fetch_prices" and run.exit_code == EXIT_PARTIAL:  # alerted by the first partial run only
            dead = [text for text in self.telegram.texts
                    if text.startswith("coinbot: fetch_prices cannot") and DEAD_SYMBOL in text]
            expect(len(dead) == 1 and DEAD_SYMBOL in dead[0], f"{run.name}: {DEAD_SYMBOL} alerted {len(dead)} times")
        expect(not (run.script == "fetch_prices" and run.exit_code == 0),
               f"{run.name} exited 0 although {DEAD_SYMBOL} cannot be fetched (expected 5, partial)")
        if run.script == "compute_signals" and run.exit_code == 0 and targets is not None:
            expect(targets.hold.get(DEAD_SYMBOL) == "stale", f"{run.name}: {DEAD_SYMBOL} not held as stale")
            self.injected["dead_symbol"] += 1  # one more day the chain went past it
            if self.day in self.bad_print_days:
                self.injected["bad_benchmark_print"] += 1
                expect(bool(quarantined and quarantined.startswith("quarantined price jump")),
                       f"{run.name}: the x{BAD_PRINT_MULT} benchmark print was not quarantined ({targets.hold})")
            if self.day - 1 in self.bad_print_days:
                refuted = any("refuted by the next 1 candle(s)" in note for note in targets.notes)
                expect(refuted and not quarantined, f"{run.name}: the bad print was not refuted: {targets.notes}")
                self.recovered["bad_benchmark_print"] += int(refuted)
        if run.script == "rebalance" and self.day in self.bad_print_days and run.exit_code is not None:
            sent = [e for e in self.events if e.event == "sent" and e.run_id.endswith(f"-{run.pid}")
                    and e.symbol == SYMBOLS[0]]
            expect(not sent, f"{run.name} traded {SYMBOLS[0]} on a quarantined print: {len(sent)} order(s)")

    def candle_path(self, symbol: str) -> Path:
        return self.root / "data" / "ohlcv" / "binance" / "1d" / f"{to_slug(symbol)}.parquet"

    def check_equity_row(self) -> None:
        """report's row at this time = starting cash + PnL - fees, to the cent, from the journal and candles."""
        path, positions_path = self.state / "equity.csv", self.state / "positions.json"
        if not path.exists() or not positions_path.exists() or {path, positions_path} & self.corrupt_paths:
            return
        history, _ = parse_equity_csv(path.read_text())
        row = history[history["time_ms"] == self.now_ms]
        if row.empty:
            return
        snapshot = PaperSnapshot.from_dict(Positions.from_dict(read_json(positions_path)).paper)
        closes = {}
        for symbol in snapshot.amounts_base:
            frame = read_parquet(self.candle_path(symbol), columns=OHLCV_COLUMNS)
            assert frame is not None
            closes[symbol] = float(frame.loc[frame["timestamp"] <= self.last_closed_ms, "close"].iloc[-1])
        expected = harness.expected_equity_quote(harness.executed_fills(self.events, snapshot), snapshot, closes,
                                                 starting_cash_quote=self.rules.starting_cash_quote)
        equity = float(row["equity_quote"].iloc[0])
        self.expect(abs(equity - expected) < 0.005, f"equity.csv says {equity:.4f}, start + PnL - fees = "
                                                    f"{expected:.4f}")


def run_paper_soak(root: Path, *, days: int, seed: int) -> PaperSoak:
    rng, first_open_ms = np.random.default_rng(seed), FIRST_DAY_MS - FIRST_DAY_MS % MS_PER_DAY
    crash_days = tuple(range(FIRST_CRASH_DAY, days - 3, CRASH_EVERY_DAYS))
    assert crash_days, f"a paper soak needs at least {FIRST_CRASH_DAY + 4} days"
    bad_print_days = tuple(crash + BAD_PRINT_AFTER_CRASH_DAYS for crash in crash_days
                           if crash + BAD_PRINT_AFTER_CRASH_DAYS + 1 < days - 2)
    history_start_ms = first_open_ms - HISTORY_DAYS * MS_PER_DAY
    truth = build_truth(rng, start_ms=history_start_ms, days=HISTORY_DAYS + days + 1,
                        crash_ms=tuple(first_open_ms + day * MS_PER_DAY for day in crash_days))
    for day in bad_print_days:  # the exchange itself serves it, on every request: it persists after a re-fetch
        bad_row = truth[SYMBOLS[0]][:, 0] == first_open_ms + (day - 1) * MS_PER_DAY
        truth[SYMBOLS[0]][bad_row, 1:5] *= BAD_PRINT_MULT
    rules = harness.PaperRules(truth=truth, starting_cash_quote=Decimal(1000), fee_bps=10.0, slippage_bps=5.0,
                               max_target_age_ms=MAX_TARGET_AGE_MS)
    with FakeBinance(now_ms=FIRST_DAY_MS, candles={(s, "1d"): rows for s, rows in truth.items()}) as fake, \
            FakeTelegram() as telegram:
        backfill = datetime.fromtimestamp(history_start_ms / 1000, UTC).date().isoformat()
        write_project(root, config_text(fake, telegram, mode="paper", backfill_start=backfill,
                                        max_target_age_ms=MAX_TARGET_AGE_MS, timeout_ms=PAPER_TIMEOUT_MS,
                                        extra_symbols=(DEAD_SYMBOL,)))
        soak = PaperSoak(root, fake, telegram, seed=seed, days=days, rules=rules, crash_days=crash_days,
                         backfill_start_ms=history_start_ms, bad_print_days=bad_print_days)
        soak.run_all()
    soak.span += f", {sum(e.event == 'filled' for e in soak.events)} paper fills"
    return soak


# --- testnet: orders executed by the fake exchange ----------------------------------------------------------


class TestnetSoak(harness.Driver):
    """Cycles of deposit -> rebalance (with an order-path fault) on FakeBinance in testnet mode."""

    __test__ = False  # not a pytest class
    label, kinds = "testnet", TESTNET_FAULTS
    owners_quote: Decimal | None = None  # a shared account (SharedSoak): the owner's USDT, not the bot's

    def __init__(self, root: Path, fake: FakeBinance, telegram: FakeTelegram, *, seed: int, cycles: int) -> None:
        super().__init__(root, fake, telegram, seed=seed, timeout_ms=TESTNET_TIMEOUT_MS)
        self.cycles, self.span = cycles, f"{cycles} cycles"
        self.flow_cycle = max(1, cycles // 2)  # a recorded deposit on this cycle, a recorded withdrawal on the next
        self.withdrawn_frac = 0.0

    def run_all(self) -> None:
        for script in harness.STAGES:
            self.where = f"set-up {script}"
            self.expect(self.run(script, []).exit_code == 0, f"the first {script} run failed")
        for cycle in range(1, self.cycles + 1):
            faults = [kind for kind in TESTNET_FAULTS if kind != "cash_flows"]
            wanted = [kind for kind in faults if not self.injected[kind]]
            kind = str(self.rng.choice(wanted if wanted else faults))
            self.where, self.faults_now = f"cycle {cycle}", kind
            if cycle == self.flow_cycle:
                self.recorded_flow(DEPOSIT_QUOTE, {"USDT": DEPOSIT_QUOTE})
            elif cycle == self.flow_cycle + 1:
                self.recorded_withdrawal()
            else:
                self.deposit()
            self.cycle(kind)
            self.fake.clear_faults()
        self.where, self.faults_now = "final report", ""
        self.run("report", [])

    def deposit(self) -> None:
        """The operator moves funds in: quote (the plan buys) or a coin (the plan sells), so every cycle trades."""
        targets = Targets.from_dict(read_json(self.state / "targets.json"))
        held = [symbol for symbol, weight in targets.weights.items() if weight > 0]
        unheld = [symbol for symbol in SYMBOLS if symbol not in held]
        symbol = "USDT/USDT" if held and self.rng.random() < 0.5 else str(self.rng.choice(unheld or held))
        price, step = (Decimal(1), Decimal("0.01")) if symbol == "USDT/USDT" else (
            self.fake.last_price(symbol), self.fake.rules(symbol).amount_step)
        amount = (Decimal(str(self.rng.uniform(150, 300))) / price).quantize(step, ROUND_DOWN)
        base, balances = symbol.split("/")[0], self.fake.spot_balances
        balances[base] = balances.get(base, Decimal(0)) + amount

    def recorded_flow(self, amount_quote: Decimal, balances: dict[str, Decimal]) -> None:
        """The operator moves money (``balances``: asset -> signed change) and records its quote value."""
        self.faults_now += f" + cash flow {amount_quote:+.2f}"
        for asset, change in balances.items():
            self.fake.spot_balances[asset] += change
        run = self.run("cashflow", ["--note", "soak", "--", str(amount_quote)])
        self.expect(run.exit_code == 0, f"{run.name} could not record a cash flow: {run.stderr[-300:]}")
        self.injected["cash_flows"] += 1

    def recorded_withdrawal(self) -> None:
        """WITHDRAW_FRAC of the bot's equity leaves: all of it from USDT if there is enough, else the rest in coins
        valued at the exchange's last price (the book's own valuation, give or take seconds of drift)."""
        equity = Decimal(str(Positions.from_dict(read_json(self.state / "positions.json")).equity_quote))
        left, balances = (equity * WITHDRAW_FRAC).quantize(Decimal("0.01"), ROUND_DOWN), self.fake.spot_balances
        take = {"USDT": min(left, balances["USDT"])}
        value, left = take["USDT"], left - take["USDT"]
        for symbol in SYMBOLS:
            base, price = symbol.split("/")[0], self.fake.last_price(symbol)
            amount = min(balances.get(base, Decimal(0)), (left / price).quantize(self.fake.rules(symbol).amount_step,
                                                                                   ROUND_DOWN))
            if left > 0 and amount > 0:
                take[base], value, left = amount, value + amount * price, left - amount * price
        self.withdrawn_frac = float(value / equity)
        self.expect(self.withdrawn_frac > 0.3, f"only {self.withdrawn_frac:.1%} of the book could be withdrawn")
        self.recorded_flow(-value, {asset: -amount for asset, amount in take.items()})

    def cycle(self, kind: str) -> None:
        posts = lambda: self.fake.request_count(ORDER_PATH, method="POST")  # noqa: E731 - a tiny probe
        before = posts()
        if kind == "kill_switch":
            (self.state / "KILL").touch()
            run = self.run("rebalance", [])
            (self.state / "KILL").unlink()
            self.note_outcome(kind, "rebalance", run)
            self.expect(run.exit_code == EXIT_HALTED and posts() == before, f"{run.name} under state/KILL sent "
                                                                            f"{posts() - before} order(s)")
        elif kind == "overlap":
            run = self.overlapped("rebalance", [], path="/api/v3/account", match={})
        elif kind == "sigkill":  # while the order is in flight: the exchange still executes it
            self.fake.delay_next(ORDER_PATH, seconds=0.8, method="POST")
            orders = len(self.fake.orders)
            run = self.killed("rebalance", [], kill_when=lambda: posts() > before)
            deadline = time.monotonic() + 5
            while run.exit_code is None and len(self.fake.orders) == orders and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            run = self.faulted_run(kind)
        if run.exit_code != 0:  # cron's next run must settle whatever was left open
            self.faults_now += " (re-run)"
            rerun = self.run("rebalance", [])
            self.expect(rerun.exit_code == 0, f"the run after a failed {kind} did not recover: {rerun.error}")

    def faulted_run(self, kind: str) -> harness.Run:
        fake = self.fake
        if kind == "lost_order_response":
            how = str(self.rng.choice(LOST_RESPONSE_MODES))
            fake.lose_next_order_response(how=how, seconds=self.held_s)
        elif kind == "order_http_error":  # refused before execution: the outcome is unknown until looked up
            fake.fail_next(ORDER_PATH, status=int(self.rng.choice([429, 418, 503])), method="POST")
        elif kind == "lookup_failure":  # executed, reply lost, and every lookup fails: the next run settles it
            fake.lose_next_order_response(how="http_502")
            fake.fail_next(ORDER_PATH, status=503, method="GET", times=MAX_NETWORK_RETRIES + 1)
        else:
            harness.inject_exchange_fault(fake, kind, self.rng, path="/api/v3/account", match={}, held_s=self.held_s)
        run = self.run("rebalance", [])
        if fake.pending_faults() == 0:
            self.note_outcome(kind, "rebalance", run)
            if kind in ("lost_order_response", "network_error"):
                self.expect(run.exit_code == 0, f"{run.name} did not absorb a {kind}: {run.error}")
        return run

    def after_run(self, run: harness.Run, context: Any) -> None:
        self.load(self.state / "targets.json", lambda p: Targets.from_dict(read_json(p)))
        self.load(self.state / "runs.jsonl", harness.read_run_records)
        positions = self.load(self.state / "positions.json", lambda p: Positions.from_dict(read_json(p)))
        events = self.load(self.state / "orders.jsonl", harness.read_journal) or []
        harness.check_journal(self.expect, events)
        harness.check_exchange_book(self.expect, events, self.fake, positions=positions, foreign=FOREIGN,
                                    settled=run.script == "rebalance" and run.exit_code == 0,
                                    owners_quote=self.owners_quote)
        halted = (self.state / "halt.json").exists()  # the fake's prices are calm: only a misread flow could halt
        self.expect(not halted, f"{run.name} left state/halt.json (after {self.injected['cash_flows']} cash flows)")
        if run.script == "rebalance" and run.exit_code == 0 and positions is not None:
            self.expect(set(positions.ignored_base) == {f"{asset}/USDT" for asset in FOREIGN},
                        f"{run.name}: positions.json ignored_base {positions.ignored_base}, expected the foreign coin")
            if self.injected["cash_flows"] == 2:
                self.recovered["cash_flows"] = 1  # a rebalance after the withdrawal traded on without a halt


class SharedSoak(TestnetSoak):
    """The testnet cycles in a shared account: the bot's 1,000 (book.capital_quote) next to the owner's USDT and
    the foreign coin; spot buys pay their commission in the coin bought (Binance without BNB fees). The wall-clock
    market may well be bearish (all targets 0: only sells), so the operator sets the book to SHARED_TARGETS once,
    as compute_signals would write them, and the bot buys too."""

    __test__ = False
    label = "shared"

    def __init__(self, root: Path, fake: FakeBinance, telegram: FakeTelegram, *, seed: int, cycles: int) -> None:
        super().__init__(root, fake, telegram, seed=seed, cycles=cycles)
        self.owners_quote, self.targets_set = OWNERS_QUOTE, False

    def deposit(self) -> None:
        """The operator puts a coin of the bot's universe in (USDT would be the owner's): the plan trades it."""
        if not self.targets_set:  # compute_signals' targets.json with the operator's weights
            targets = Targets.from_dict(read_json(self.state / "targets.json"))
            write_json_atomic(self.state / "targets.json", replace(targets, weights=SHARED_TARGETS).to_dict())
            self.targets_set = True
        symbol = str(self.rng.choice(SYMBOLS))
        amount = (Decimal(str(self.rng.uniform(150, 300))) / self.fake.last_price(symbol)).quantize(
            self.fake.rules(symbol).amount_step, ROUND_DOWN)
        base = symbol.split("/")[0]
        self.fake.spot_balances[base] = self.fake.spot_balances.get(base, Decimal(0)) + amount

    def recorded_flow(self, amount_quote: Decimal, balances: dict[str, Decimal]) -> None:
        """``cashflow`` moves capital between the owner's and the bot's cash inside the account: nothing moves on
        the exchange; the owner's part of the USDT changes by it."""
        self.faults_now += f" + capital {amount_quote:+.2f}"
        run = self.run("cashflow", ["--note", "soak", "--", str(amount_quote)])
        if self.expect(run.exit_code == 0, f"{run.name} could not record a cash flow: {run.stderr[-300:]}"):
            self.owners_quote = (self.owners_quote or Decimal(0)) - amount_quote
        self.injected["cash_flows"] += 1

    def recorded_withdrawal(self) -> None:
        """The owner takes back WITHDRAW_FRAC of the bot's equity, at most 90 % of the bot's own cash."""
        book = Positions.from_dict(read_json(self.state / "positions.json"))
        equity = Decimal(str(book.equity_quote))
        amount = min(equity * WITHDRAW_FRAC, Decimal(str(book.cash_quote)) * Decimal("0.9")).quantize(
            Decimal("0.01"), ROUND_DOWN)
        self.withdrawn_frac = float(amount / equity)
        self.recorded_flow(-amount, {})


def run_testnet_soak(root: Path, *, cycles: int, seed: int, shared: bool = False) -> TestnetSoak:
    backfill = (datetime.now(UTC) - timedelta(days=HISTORY_DAYS)).date().isoformat()
    quote = Decimal(1000) + (OWNERS_QUOTE if shared else 0)
    with FakeBinance(now_ms=None, spot_balances={"USDT": quote, **FOREIGN}) as fake, FakeTelegram() as telegram:
        write_project(root, config_text(fake, telegram, mode="testnet", backfill_start=backfill,  # wall-clock
                                        max_target_age_ms=50 * MS_PER_HOUR, timeout_ms=TESTNET_TIMEOUT_MS,
                                        book=SHARED_BOOK if shared else None))
        if shared:
            fake.spot_fee_asset = "received"
        soak = (SharedSoak if shared else TestnetSoak)(root, fake, telegram, seed=seed, cycles=cycles)
        soak.run_all()
        soak.span += (f", {sum(order.accepted for order in fake.orders)} orders executed by the exchange, "
                      f"{soak.withdrawn_frac:.0%} of the book withdrawn (recorded)")
        if shared:
            in_coin = sum(trade["commissionAsset"] != "USDT" for trade in fake._trades["spot"])
            soak.span += f", {in_coin} buys paid their commission in the coin bought"
    return soak


def soak_both(root: Path, *, days: int, cycles: int) -> list[harness.Driver]:
    """The variants at once (the paper one on a core, the two testnet ones, mostly waiting on loopback, on the
    other); the summaries are printed before anything is asserted."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        paper = pool.submit(run_paper_soak, root / "paper", days=days, seed=SEED)
        testnet = pool.submit(run_testnet_soak, root / "testnet", cycles=cycles, seed=SEED + 1)
        shared = pool.submit(run_testnet_soak, root / "shared", cycles=cycles, seed=SEED + 2, shared=True)
        soaks = [paper.result(), testnet.result(), shared.result()]
    for soak in soaks:
        print("\n" + soak.summary())
    return soaks


def assert_survived(soaks: list[harness.Driver]) -> None:
    for soak in soaks:
        missing = [kind for kind in soak.kinds if not soak.injected[kind]]
        assert not missing, f"{soak.label} soak (seed {soak.seed}) never injected {missing}"
    violations = [line for soak in soaks for line in soak.violations]
    assert not violations, f"{len(violations)} invariant violation(s):\n" + "\n".join(violations[:30])


def test_the_book_checkers_are_not_vacuous() -> None:
    """A fill journaled twice, and a paper cash balance that is not start - cost - fees, are both caught."""
    found: list[str] = []
    expect = lambda ok, what: ok or bool(found.append(what))  # noqa: E731 - collects what the checkers flag
    run = {"time_ms": FIRST_DAY_MS, "run_id": "rebalance-x-1", "mode": "paper", "venue": "binance",
           "rebalance_id": f"spot_long_only-{FIRST_DAY_MS - FIRST_DAY_MS % MS_PER_DAY - MS_PER_DAY}"}
    order = {"symbol": "BTC/USDT", "client_order_id": "cb-1", "requested_side": "buy",
             "requested_amount_base": Decimal("0.01"), "reference_price": 25_000.0}
    fill = JournalEvent(event="filled", **run, **order, filled_amount_base=Decimal("0.01"), average_price=25_012.5,
                        fee_quote=0.250125, exchange_time_ms=FIRST_DAY_MS)  # 5 bps slippage, 10 bps fee: right
    harness.check_journal(expect, [JournalEvent(event="sent", **run, **order), fill, fill])
    positions = Positions(mode="paper", venue="binance", updated_ms=FIRST_DAY_MS, cash_quote=1000.0,
                          amounts_base={"BTC/USDT": 0.01}, marks={"BTC/USDT": 25_000.0}, equity_quote=1250.0,
                          high_water_mark_quote=1250.0, day_start_ms=0, day_start_equity_quote=1250.0,
                          inception_ms=0, inception_equity_quote=1000.0, fees_paid_quote=0.250125)
    snapshot = PaperSnapshot(cash_quote=Decimal(1000), amounts_base={"BTC/USDT": Decimal("0.01")})  # paid nothing
    rules = harness.PaperRules(truth={"BTC/USDT": np.array([[0.0, 25_000, 25_000, 25_000, 25_000, 1]])},
                               starting_cash_quote=Decimal(1000), fee_bps=10.0, slippage_bps=5.0,
                               max_target_age_ms=MAX_TARGET_AGE_MS)
    harness.check_paper_book(expect, [JournalEvent(event="sent", **run, **order), fill], positions, snapshot, rules)
    assert [what.split(" ")[0] for what in found] == ["journal", "executed", "paper"], found


@pytest.mark.soak
def test_soak_survives_weeks_of_faults(tmp_path: Path) -> None:
    assert_survived(soak_both(tmp_path, days=CI_DAYS, cycles=CI_CYCLES))


@pytest.mark.soak_long
def test_soak_survives_months_of_faults(tmp_path: Path) -> None:
    assert_survived(soak_both(tmp_path, days=LONG_DAYS, cycles=LONG_CYCLES))

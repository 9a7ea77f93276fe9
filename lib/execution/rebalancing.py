"""Edge: talks to a Broker (paper account or ccxt venue) and writes rebalance's state files via lib.core.storage.
One rebalance: reconcile the journal with the venue, value the book, plan, carry out the risk verdict.

Invariants, in the order they protect money:
- an order is journaled ``sent`` (fsync'ed) before the call that places it: no order escapes the journal;
- after ANY failure of that call the venue is asked by client id before anything is decided; an order whose
  outcome is still unknown stays open (``sent`` only), sending stops, and the next run asks again;
- every id journaled ``sent`` without a final event is looked up before the next plan is made;
- an id that filled is never sent again; an id sent before is looked up before it is sent again;
- paper mode saves the account (inside positions.json) after each fill and before its ``filled`` line, so the
  paper account is as durable as an exchange and a re-run finds its orders by client id.
What may be sent is decided by lib.execution.risk; this module only carries the verdict out.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from loguru import logger

from lib.core import errors, storage
from lib.core.state import HaltRecord, Positions, RiskBaselines, Targets, roll_baselines
from lib.core.symbols import is_perpetual, quote_of
from lib.core.timeframes import MS_PER_DAY
from lib.core.venue import Broker, Holdings, MarketData, MarketRules, OrderResult
from lib.execution import exchange
from lib.execution import journal as records
from lib.execution.journal import JournalEvent, RunInfo
from lib.execution.orders import OrderParams, OrderPlan, PlannedOrder, SkippedOrder, compute_equity_quote, plan_orders
from lib.execution.paper import PaperBroker, PaperSnapshot
from lib.execution.risk import RiskLimits, RiskVerdict, check_halt, check_kill_switch, check_reduces_risk
from lib.ops.config import Config, Secrets

PERP_MARGIN_MODE = "cross"
"""Set on every perp before an order that opens or grows it: one margin pool for the whole book."""
PAPER_ORDER_RETENTION_MS = 7 * MS_PER_DAY
"""Paper order records older than this leave the snapshot at the end of a run (the journal keeps them)."""
FLATTEN_SUFFIX = "flat"
"""A flatten plans with rebalance id ``<rebalance_id>-flat``: its client ids never collide with a plan's."""
SKIP_ALREADY_FILLED = "already filled"
SKIP_FOUND_ON_EXCHANGE = "found on the exchange"
HOW_TO_RESUME = ("to resume: delete state/KILL (kill switch), or delete state/halt.json and run "
                 "rebalance --reset-high-water-mark once (drawdown halt)")


def rebalance_id_of(targets: Targets) -> str:
    """``<strategy>-<as_of_ms>``: a re-run on the same targets regenerates the same client order ids."""
    return f"{targets.strategy}-{targets.as_of_ms}"


# --- state files --------------------------------------------------------------------------------------------


class Journal:
    """state/orders.jsonl: the events read at start plus this run's, and the one fsync'ing appender.

    ``write=False`` (dry run) keeps new events in memory. A torn final line (a crash mid-append) is
    repaired before the first append, so the next line never lands glued to it.
    """

    def __init__(self, path: Path, *, write: bool) -> None:
        self.path, self.write = path, write
        lines, torn = storage.read_jsonl(path)
        if torn:
            logger.warning("{}: the final line was torn by an interrupted write; {}", path,
                           "repairing it" if write else "ignoring it (dry run)")
            if write:
                _repair_torn_tail(path)
        self.history: list[JournalEvent] = records.parse_journal(lines)
        self.appended: list[JournalEvent] = []

    def append(self, event: JournalEvent) -> None:
        if self.write:
            storage.append_jsonl(self.path, event.to_dict())
        self.history.append(event)
        self.appended.append(event)


def _repair_torn_tail(path: Path) -> None:
    """Terminate a final line that parses (only its newline was lost); cut one that does not."""
    raw = path.read_bytes()
    cut = raw.rfind(b"\n") + 1
    try:
        json.loads(raw[cut:])
    except ValueError:
        logger.warning("dropping the torn fragment of {}: {!r}", path, raw[cut:][:200])
        with open(path, "r+b") as handle:
            handle.truncate(cut)
            os.fsync(handle.fileno())
        return
    storage.append_line(path, "")  # the lost newline


def read_targets(path: Path, config: Config) -> Targets:
    """targets.json; refused (StateError) when missing, malformed or made for another strategy or venue."""
    if not path.exists():
        raise errors.StateError(f"{path} does not exist: run compute_signals first")
    targets = Targets.from_dict(storage.read_json(path))
    wanted = (config.strategy.name, config.exchange.market_type, config.exchange.id)
    found = (targets.strategy, targets.market_type, targets.exchange)
    if found != wanted:
        raise errors.StateError(f"{path} is for strategy/market/exchange {'/'.join(found)} but the config "
                                f"trades {'/'.join(wanted)}: run compute_signals with this config")
    return targets


def read_positions(path: Path, *, config: Config, venue: str, journal: Journal) -> Positions | None:
    """The last run's positions.json, or None on a genuine first run.

    Raises:
        StateError: invalid file, a file of another mode or venue, or (paper) a missing file although the
            journal records fills: the paper account would silently restart from cash.
    """
    mode = config.exchange.mode
    if not path.exists():
        if mode == "paper" and any(event.event == "filled" for event in journal.history):
            raise errors.StateError(f"{path} is missing but {journal.path} records fills: restore it (it holds "
                                    "the paper account) or move the journal aside to start over")
        return None
    previous = Positions.from_dict(storage.read_json(path))
    if (previous.mode, previous.venue) != (mode, venue):
        raise errors.StateError(f"{path} was written for mode={previous.mode} venue={previous.venue}, this "
                                f"config trades mode={mode} venue={venue}: use another paths.state_dir")
    if mode == "paper" and previous.paper is None:
        raise errors.StateError(f"{path} has no paper account snapshot; refusing to restart the paper account")
    return previous


def read_halt(path: Path) -> HaltRecord | None:
    """The drawdown halt in force, if any. An unreadable halt file halts too (fail closed)."""
    if not path.exists():
        return None
    try:
        return HaltRecord.from_dict(storage.read_json(path))
    except errors.StateError as error:
        raise errors.TradingHalted(f"{path} exists but cannot be read ({error}): trading stays halted until a "
                                   "person checks and deletes it") from None


def check_gates(*, kill_switch_present: bool, halt: HaltRecord | None, journal: Journal, run: RunInfo) -> bool:
    """Stop before touching any venue when a person stopped trading or a finished halt is in force.

    Returns True when a drawdown halt's flatten is unfinished: the run must finish it and do nothing else.
    Raises:
        TradingHalted: the kill switch file exists, or a drawdown halt whose flatten is done.
    """
    rejections = check_kill_switch(kill_switch_present)
    if halt is not None and (halt.flattened or rejections):
        rejections += check_halt(True)
    for rejection in rejections:
        journal.append(records.to_risk_rejected_event(rejection, run))
    if rejections:
        raise errors.TradingHalted(f"{records.describe_rejections(rejections)}; {HOW_TO_RESUME}")
    return halt is not None


# --- the venue ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """Where this run trades: the broker, the market data, its markets, and prices fetched so far."""

    broker: Broker
    market_data: MarketData
    markets: dict[str, MarketRules]
    quote: str
    paper: PaperBroker | None = None  # the same object as ``broker`` in paper mode
    client: Any = None  # the ccxt client (perp settings); None in paper mode
    prices: dict[str, float] = field(default_factory=dict)

    def fetch_prices(self, symbols: Iterable[str]) -> dict[str, float]:
        """Last prices (paper: the ones its account was opened with)."""
        missing = sorted(set(symbols) - set(self.prices))
        if missing and self.paper is None:
            self.prices.update(self.market_data.fetch_last_prices(missing))
        return {symbol: self.prices[symbol] for symbol in sorted(set(symbols)) if symbol in self.prices}

    def fetch_holdings(self) -> Holdings:
        """Holdings in the book's quote only: other pairs a ccxt account holds are not ours to trade."""
        holdings = self.broker.fetch_holdings()
        amounts = {s: a for s, a in holdings.amounts_base.items() if a != 0 and quote_of(s) == self.quote}
        return Holdings(cash_quote=holdings.cash_quote, amounts_base=amounts)


def connect(config: Config, secrets: Secrets, *, previous: Positions | None, target_symbols: Iterable[str],
            now_ms: int) -> Session:
    """Paper: a PaperBroker on the saved account at this run's prices; otherwise the ccxt venue.

    The caller has checked that the mode is allowed (keys, live opt-in).
    """
    section, quote = config.exchange, quote_of(config.data.symbols[0])
    if section.mode == "paper":
        market_data = exchange.connect_market_data(section, secrets, now_ms=now_ms, simulated=config.simulated)
        snapshot = PaperSnapshot.initial(config.paper) if previous is None else PaperSnapshot.from_dict(previous.paper)
        markets = market_data.load_markets()
        prices = market_data.fetch_last_prices(sorted(set(target_symbols) | set(snapshot.amounts_base)))
        paper = PaperBroker(snapshot, prices=prices, now_ms=now_ms, params=config.paper)
        return Session(broker=paper, market_data=market_data, markets=markets, quote=quote, paper=paper,
                       prices=dict(prices))
    venue = exchange.CcxtVenue(exchange.create_client(section, secrets), quote=quote)
    markets = venue.load_markets()
    return Session(broker=venue, market_data=venue, markets=markets, quote=quote, client=venue.client)


def prepare_perps(session: Session, orders: Iterable[PlannedOrder], *, limits: RiskLimits) -> None:
    """Cross margin, and leverage enough for the book's ``max_gross_leverage``, on every perp an order opens
    or grows (ccxt venues; idempotent).

    "Already cross" is fine (ccxt's documented option ``throwMarginModeAlreadySet`` is turned off). An
    isolated position cannot be switched: that error stops the run before any order, for a person to see.
    """
    client = session.client
    symbols = sorted({o.symbol for o in orders if is_perpetual(o.symbol) and not o.reduce_only})
    if client is None or not symbols:
        return
    leverage = max(1, math.ceil(limits.max_gross_leverage))
    client.options["setMarginMode"] = {**client.options.get("setMarginMode", {}), "throwMarginModeAlreadySet": False}
    for symbol in symbols:
        exchange.call(client, f"set_margin_mode {PERP_MARGIN_MODE} {symbol}",
                      lambda s=symbol: client.set_margin_mode(PERP_MARGIN_MODE, s))
        exchange.call(client, f"set_leverage {leverage} {symbol}",
                      lambda s=symbol: client.set_leverage(leverage, s))


def reconcile_open_orders(broker: Broker, journal: Journal, run: RunInfo) -> list[JournalEvent]:
    """Ask the venue about every order journaled ``sent`` without an outcome, and journal its answer.

    Raises:
        ExchangeUnavailable: the venue cannot be asked, or an order is still working: plan nothing yet.
    """
    settled = []
    for sent in records.find_open_orders(journal.history):
        assert sent.symbol is not None and sent.client_order_id is not None
        found = broker.fetch_order_by_client_id(sent.symbol, sent.client_order_id)
        if found is not None and found.status == "open":
            raise errors.ExchangeUnavailable(f"order {sent.client_order_id} ({sent.symbol}) is still open on "
                                             "the exchange: nothing is planned until it is final")
        event = records.to_failed_event(
            sent, run, reason="not_found", detail="never reached the exchange: not found by client id"
        ) if found is None else records.to_result_event(
            sent, found, run, detail="reconciled: found by client id after an interrupted run")
        journal.append(event)
        settled.append(event)
        logger.warning("reconciled {} {}: {} {}", sent.client_order_id, sent.symbol, event.event, event.detail)
    return settled


@dataclass(frozen=True, slots=True, kw_only=True)
class Book:
    """The account valued at this run's prices (stamped ``now_ms``: fetched live), with the risk baselines."""

    holdings: Holdings
    prices: dict[str, float]
    price_times_ms: dict[str, int]
    equity_quote: float
    baselines: RiskBaselines


def value_book(session: Session, *, previous: Positions | None, target_symbols: Iterable[str], now_ms: int,
               reset_baseline: bool) -> Book:
    """Holdings, prices of the targets and holdings, equity, and the baselines (lib.core.state.roll_baselines)."""
    holdings = session.fetch_holdings()
    prices = session.fetch_prices(set(target_symbols) | set(holdings.amounts_base))
    equity = compute_equity_quote(holdings, prices)
    if reset_baseline and previous is not None:
        logger.warning("high-water mark reset from {:.2f} to {:.2f} and the day restarted (by request)",
                       previous.high_water_mark_quote, equity)
    return Book(holdings=holdings, prices=prices, price_times_ms={symbol: now_ms for symbol in prices},
                equity_quote=equity,
                baselines=roll_baselines(previous, equity_quote=equity, now_ms=now_ms, reset=reset_baseline))


def plan_rebalance(session: Session, book: Book, *, target_weights: Mapping[str, float], params: OrderParams,
                   journal: Journal, run: RunInfo) -> OrderPlan:
    """lib.execution.orders.plan_orders minus orders whose client id already filled; journals planned and skipped."""
    plan = plan_orders(target_weights=target_weights, holdings=book.holdings, prices=book.prices,
                       markets=session.markets, equity_quote=book.equity_quote, params=params,
                       rebalance_id=run.rebalance_id)
    filled = records.find_filled_ids(journal.history)
    done = tuple(SkippedOrder(symbol=o.symbol, side=o.side, reason=SKIP_ALREADY_FILLED,
                              detail=f"client id {o.client_order_id} filled in an earlier run",
                              target_weight=o.target_weight, current_weight=o.current_weight)
                 for o in plan.orders if o.client_order_id in filled)
    plan = OrderPlan(orders=tuple(o for o in plan.orders if o.client_order_id not in filled),
                     skipped=plan.skipped + done)
    for order in plan.orders:
        journal.append(records.to_planned_event(order, run))
    for skipped in plan.skipped:
        journal.append(records.to_skipped_event(skipped, run))
    return plan


def send_orders(orders: Sequence[PlannedOrder], broker: Broker, journal: Journal, run: RunInfo, *,
                on_fill: Callable[[], None] | None = None) -> records.SendOutcome:
    """Send ``orders`` in order, each journaled ``sent`` first and its outcome after; stop at an unknown one.

    ``on_fill()`` runs after a fill and before its ``filled`` line (paper: save the account first).
    """
    if orders and not journal.write:
        raise errors.StateError("refusing to send orders whose journal is not written to disk (a dry run)")
    outcome = records.SendOutcome()
    sent_before = records.find_sent_ids(journal.history)
    for order in orders:
        if order.client_order_id in sent_before:
            try:
                if _found_before_resend(order, broker, journal, run, outcome):
                    continue
            except errors.CoinbotError as error:
                outcome.unresolved = f"cannot look up {order.client_order_id} before resending it: {error}"
                break
        sent = records.to_sent_event(order, run)
        journal.append(sent)
        placement = _place(order, broker)
        if placement.unknown:
            outcome.unresolved = (f"order {order.client_order_id} ({order.side} {order.amount_base} "
                                  f"{order.symbol}) has an unknown outcome ({placement.unknown}); sending "
                                  "stopped, the next run looks it up by client id before anything else")
            break
        if placement.result is None:
            event = records.to_rejected_event(sent, run, reason="rejected", detail=placement.rejected)
        else:
            if placement.result.filled_amount_base > 0 and on_fill is not None:
                on_fill()
            event = records.to_result_event(sent, placement.result, run)
        journal.append(event)
        (outcome.filled if event.event == "filled" else outcome.rejected).append(event)
    return outcome


@dataclass(frozen=True, slots=True)
class _Placement:
    result: OrderResult | None = None  # what the venue holds for the order (final)
    rejected: str = ""  # the venue said no and holds no such order
    unknown: str = ""  # nobody can tell yet whether it executed


def _place(order: PlannedOrder, broker: Broker) -> _Placement:
    """Place one order; after ANY failure ask the venue by client id before deciding what happened."""
    try:
        result = broker.create_market_order(order.symbol, order.side, order.amount_base,
                                            client_order_id=order.client_order_id, reduce_only=order.reduce_only)
    except (errors.OrderRejected, errors.ExchangeError) as error:  # said no; "duplicate id" = it exists
        said_no = f"{type(error).__name__}: {error}"
        found, lookup_error = _lookup(order, broker)
        if found is None:
            return _Placement(unknown=f"{said_no}; {lookup_error}") if lookup_error else _Placement(rejected=said_no)
        result = found
    except errors.CoinbotError as error:  # timeout, 5xx, unreadable reply: it may have executed
        why = f"{type(error).__name__}: {error}"
        logger.warning("order {} outcome unknown ({}); looking it up by client id", order.client_order_id, why)
        found, lookup_error = _lookup(order, broker)
        if found is None:
            return _Placement(unknown=f"{why}; {lookup_error or 'not found by client id right after'}")
        result = found
    if result.status == "open":  # a market order still working: ask once more
        found, lookup_error = _lookup(order, broker)
        if found is None or found.status == "open":
            return _Placement(unknown=lookup_error or "the venue reports it still open")
        result = found
    return _Placement(result=result)


def _lookup(order: PlannedOrder, broker: Broker) -> tuple[OrderResult | None, str]:
    try:
        return broker.fetch_order_by_client_id(order.symbol, order.client_order_id), ""
    except errors.CoinbotError as error:
        return None, f"lookup failed: {type(error).__name__}: {error}"


def _found_before_resend(order: PlannedOrder, broker: Broker, journal: Journal, run: RunInfo,
                         outcome: records.SendOutcome) -> bool:
    """An id sent in an earlier run (settled failed/rejected) is looked up first; True = do not send it."""
    found = broker.fetch_order_by_client_id(order.symbol, order.client_order_id)
    if found is None:
        return False
    logger.warning("{} was journaled as not executed but the venue has it ({}): not sending it again",
                   order.client_order_id, found.status)
    if found.filled_amount_base > 0:
        event = records.to_result_event(records.to_sent_event(order, run), found, run,
                                        detail="found by client id before resending: it reached the venue late")
        journal.append(event)
        outcome.filled.append(event)
    journal.append(records.to_skipped_event(SkippedOrder(
        symbol=order.symbol, side=order.side, reason=SKIP_FOUND_ON_EXCHANGE,
        detail=f"client id {order.client_order_id} exists on the venue ({found.status})",
        target_weight=order.target_weight, current_weight=order.current_weight), run))
    return True


# --- carrying out the verdict -------------------------------------------------------------------------------


class PositionsWriter:
    """positions.json from the venue's holdings, after each paper fill (the paper account lives in it) and
    at the end of the run. ``enabled=False`` (dry run) writes nothing."""

    def __init__(self, path: Path, session: Session, book: Book, journal: Journal, run: RunInfo, *,
                 enabled: bool) -> None:
        self.path, self.session, self.book, self.journal, self.run = path, session, book, journal, run
        self.enabled = enabled

    def after_fill(self) -> None:
        if self.session.paper is not None:
            self.write(final=False)

    def write(self, *, final: bool) -> None:
        """``final`` drops paper order records older than PAPER_ORDER_RETENTION_MS (none is open then)."""
        if not self.enabled:
            return
        book, run, paper = self.book, self.run, self.session.paper
        holdings = self.session.fetch_holdings()
        equity = compute_equity_quote(holdings, book.prices)
        snapshot = None if paper is None else paper.to_snapshot(
            keep_orders_since_ms=run.time_ms - PAPER_ORDER_RETENTION_MS if final else None).to_dict()
        fees = records.compute_fees_quote(e for e in self.journal.history if (e.mode, e.venue) == (run.mode, run.venue))
        baselines = replace(book.baselines, high_water_mark_quote=max(book.baselines.high_water_mark_quote, equity),
                            fees_paid_quote=fees)  # from the journal, so a crash between fill and write loses none
        positions = Positions(mode=run.mode, venue=run.venue, updated_ms=run.time_ms, cash_quote=holdings.cash_quote,
                              amounts_base=dict(holdings.amounts_base), marks=dict(book.prices), equity_quote=equity,
                              last_rebalance_id=run.rebalance_id, paper=snapshot, **asdict(baselines))
        storage.write_json_atomic(self.path, positions.to_dict())


def carry_out(verdict: RiskVerdict, *, session: Session, book: Book, journal: Journal, run: RunInfo,
              writer: PositionsWriter, halt_path: Path, limits: RiskLimits, params: OrderParams) -> records.SendOutcome:
    """Journal every rejection, then: halt -> raise; flatten_and_halt -> halt.json FIRST, flatten, raise;
    reduce_only -> send the allowed orders, raise; trade -> send. positions.json is written after sending.

    Raises:
        TradingHalted, RiskCheckFailed, OrderRejected, ExchangeUnavailable: the run fails (and alerts).
    """
    for rejection in verdict.rejections:
        journal.append(records.to_risk_rejected_event(rejection, run))
    if verdict.decision == "halt":
        halted = any(r.check in ("kill_switch", "halt") for r in verdict.rejections)
        error = errors.TradingHalted if halted else errors.RiskCheckFailed
        raise error(f"nothing sent: {records.describe_rejections(verdict.rejections)}")
    if verdict.decision == "flatten_and_halt":
        halt = HaltRecord(created_ms=run.time_ms, run_id=run.run_id, reason="drawdown",
                          detail=records.describe_rejections(verdict.rejections), equity_quote=book.equity_quote,
                          high_water_mark_quote=book.baselines.high_water_mark_quote)
        storage.write_json_atomic(halt_path, halt.to_dict())
        flatten(session, book, journal=journal, run=run, writer=writer, halt_path=halt_path, halt=halt,
                params=params)
    prepare_perps(session, verdict.allowed_orders, limits=limits)
    outcome = send_orders(verdict.allowed_orders, session.broker, journal, run, on_fill=writer.after_fill)
    _finish(outcome, writer)
    if verdict.decision == "reduce_only":
        raise errors.RiskCheckFailed(f"reduce-only: sent {len(outcome.filled)} risk-reducing order(s); "
                                     + records.describe_rejections(verdict.rejections))
    return outcome


def flatten(session: Session, book: Book, *, journal: Journal, run: RunInfo, writer: PositionsWriter,
            halt_path: Path, halt: HaltRecord, params: OrderParams) -> None:
    """Close every position with risk-reducing orders; mark the halt ``flattened`` once all went through.

    No fat-finger cap here: an order proven to only reduce a position (check_reduces_risk) cannot be a
    sizing bug that adds risk, and a cap would keep the book exposed. Always raises TradingHalted.
    """
    run = replace(run, rebalance_id=f"{run.rebalance_id}-{FLATTEN_SUFFIX}")
    plan = plan_rebalance(session, book, target_weights={}, params=params, journal=journal, run=run)
    rejections = check_reduces_risk(plan.orders, book.holdings)
    for rejection in rejections:
        journal.append(records.to_risk_rejected_event(rejection, run))
    blocked = {rejection.symbol for rejection in rejections}
    outcome = send_orders([o for o in plan.orders if o.symbol not in blocked], session.broker, journal, run,
                          on_fill=writer.after_fill)
    complete = not (rejections or outcome.rejected or outcome.unresolved)
    try:
        _finish(outcome, writer)
    except errors.CoinbotError as error:  # reported below through the halt message and the journal
        logger.error("after the flatten orders: {}: {}", type(error).__name__, error)
    if complete and writer.enabled:
        storage.write_json_atomic(halt_path, replace(halt, flattened=True, flattened_ms=run.time_ms).to_dict())
    state = "complete" if complete else "INCOMPLETE (the next run retries it)"
    raise errors.TradingHalted(f"drawdown halt: {halt.detail}; flatten {state}, {len(outcome.filled)} "
                               f"order(s) filled; {HOW_TO_RESUME}")


def _finish(outcome: records.SendOutcome, writer: PositionsWriter) -> None:
    """Record positions, then report what went wrong; a failed write never hides an order problem."""
    try:
        writer.write(final=not outcome.unresolved)
    except errors.CoinbotError as error:
        if not (outcome.unresolved or outcome.rejected):
            raise
        logger.error("positions.json not updated: {}: {}", type(error).__name__, error)
    outcome.raise_if_failed()

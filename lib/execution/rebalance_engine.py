"""Edge: the rebalance engine: reconcile the journal with the venue, plan, send, carry out the risk verdict
(flatten included). Talks to a Broker; state files go through lib.execution.state_files.

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from loguru import logger

from lib.core import errors
from lib.core.state import HaltRecord, Targets
from lib.core.venue import Broker, OrderResult
from lib.execution import journal as records
from lib.execution.book import Book
from lib.execution.journal import JournalEvent, RunInfo
from lib.execution.order_split import split_reducing_orders
from lib.execution.orders import (
    SKIP_LOCKED,
    OrderParams,
    OrderPlan,
    PlannedOrder,
    SkippedOrder,
    locked_exits_alert,
    plan_orders,
)
from lib.execution.risk import RiskLimits, RiskVerdict, check_halt, check_kill_switch, check_reduces_risk
from lib.execution.state_files import Journal, PositionsWriter, write_halt
from lib.execution.venue_session import Session, prepare_perps

FLATTEN_SUFFIX = "flat"
"""A flatten plans with rebalance id ``<rebalance_id>-flat``: its client ids never collide with a plan's."""
SKIP_ALREADY_FILLED = "already filled"
SKIP_FOUND_ON_EXCHANGE = "found on the exchange"
HOW_TO_RESUME = ("to resume: delete state/KILL (kill switch), or delete state/halt.json and run "
                 "rebalance --reset-high-water-mark once (drawdown halt)")


SKIP_NO_LIVE_PRICE = "no live price"


def rebalance_id_of(targets: Targets) -> str:
    """``<strategy>-<as_of_ms>``: a re-run on the same targets regenerates the same client order ids."""
    return f"{targets.strategy}-{targets.as_of_ms}"


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


def keep_held(target_weights: Mapping[str, float], hold: Mapping[str, str], book: Book) -> dict[str, float]:
    """Targets with every ``hold`` symbol (late, stale or quarantined data) at its current weight: not traded.

    Why: a symbol without a trustworthy bar this run has no signal; selling or buying it on no data is a trade
    nobody decided. Its position stays until its data are back (or a person acts); a held one is logged.
    """
    kept = {symbol: weight for symbol, weight in target_weights.items() if symbol not in hold}
    for symbol, why in sorted(hold.items()):
        amount = book.holdings.amounts_base.get(symbol, 0.0)
        price = book.prices.get(symbol)
        if not amount:
            continue
        if price is None or book.sizing_quote <= 0:  # the risk check halts on a held asset without a price
            logger.warning("{} is held ({}) but has no live price", symbol, why)
            continue
        kept[symbol] = amount * price / book.sizing_quote  # weights are fractions of the sized (bot) capital
        logger.warning("{} kept as it is ({}): position {} not traded this run", symbol, why, amount)
    return kept


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


def plan_rebalance(session: Session, book: Book, *, target_weights: Mapping[str, float], params: OrderParams,
                   limits: RiskLimits, journal: Journal, run: RunInfo) -> OrderPlan:
    """lib.execution.orders.plan_orders, risk-reducing orders split under the fat-finger cap
    (lib.execution.order_split), minus orders whose client id already filled; journals planned and skipped."""
    holdings = replace(book.holdings,  # an unpriced symbol is left out: never planned
                       amounts_base={s: a for s, a in book.holdings.amounts_base.items() if s not in book.unpriced})
    plan = plan_orders(target_weights={s: w for s, w in target_weights.items() if s not in book.unpriced},
                       holdings=holdings, prices=book.prices, markets=session.markets,
                       equity_quote=book.sizing_quote, params=params, rebalance_id=run.rebalance_id)
    plan = split_reducing_orders(plan, holdings=holdings, markets=session.markets,
                                 max_order_notional_quote=limits.max_order_notional_quote,
                                 rebalance_id=run.rebalance_id, prefix=params.client_order_id_prefix,
                                 min_order_notional_quote=params.min_order_notional_quote)
    dead = tuple(SkippedOrder(symbol=o.symbol, side=o.side, reason=SKIP_NO_LIVE_PRICE,
                              detail="valued at its last stored close: a person must act",
                              target_weight=o.target_weight, current_weight=o.current_weight)
                 for o in plan.orders if o.symbol in book.unpriced)
    plan = OrderPlan(orders=tuple(o for o in plan.orders if o.symbol not in book.unpriced),
                     skipped=plan.skipped + dead)
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
        if skipped.reason == SKIP_LOCKED:  # a shared account: the owner's open orders lock part of the coin
            logger.warning("{} {}: {} ({})", skipped.symbol, skipped.side, skipped.reason, skipped.detail)
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


def dry_run_failure(verdict: RiskVerdict) -> errors.CoinbotError | None:
    """The error the real run would end with (same exit code), or None when it would trade."""
    described = records.describe_rejections(verdict.rejections)
    if verdict.decision == "trade":
        return None
    halted = verdict.decision == "flatten_and_halt" or any(r.check in ("kill_switch", "halt")
                                                          for r in verdict.rejections)
    error = errors.TradingHalted if halted else errors.RiskCheckFailed
    return error(f"dry run: the risk verdict is {verdict.decision}: {described}")


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
        write_halt(halt_path, halt)
        flatten(session, book, journal=journal, run=run, writer=writer, halt_path=halt_path, halt=halt,
                params=params, limits=limits)
    prepare_perps(session, verdict.allowed_orders, limits=limits)
    outcome = send_orders(verdict.allowed_orders, session.broker, journal, run, on_fill=writer.after_fill)
    _finish(outcome, writer)
    if verdict.decision == "reduce_only":
        raise errors.RiskCheckFailed(f"reduce-only: sent {len(outcome.filled)} risk-reducing order(s); "
                                     + records.describe_rejections(verdict.rejections))
    return outcome


def flatten(session: Session, book: Book, *, journal: Journal, run: RunInfo, writer: PositionsWriter,
            halt_path: Path, halt: HaltRecord, params: OrderParams, limits: RiskLimits) -> None:
    """Close every position with risk-reducing orders; mark the halt ``flattened`` once all went through.

    No fat-finger cap blocks it: an order proven to only reduce a position (check_reduces_risk) cannot be a
    sizing bug that adds risk; it is split into children under the cap (plan_rebalance). Always raises
    TradingHalted.
    """
    run = replace(run, rebalance_id=f"{run.rebalance_id}-{FLATTEN_SUFFIX}")
    plan = plan_rebalance(session, book, target_weights={}, params=params, limits=limits, journal=journal,
                          run=run)
    rejections = check_reduces_risk(plan.orders, book.holdings)
    for rejection in rejections:
        journal.append(records.to_risk_rejected_event(rejection, run))
    blocked = {rejection.symbol for rejection in rejections}
    outcome = send_orders([o for o in plan.orders if o.symbol not in blocked], session.broker, journal, run,
                          on_fill=writer.after_fill)
    locked = locked_exits_alert(plan.skipped)  # coins locked by a person's open orders: not all sold
    complete = not (rejections or outcome.rejected or outcome.unresolved or locked)
    try:
        _finish(outcome, writer)
    except errors.CoinbotError as error:  # reported below through the halt message and the journal
        logger.error("after the flatten orders: {}: {}", type(error).__name__, error)
    if complete and writer.enabled:
        write_halt(halt_path, replace(halt, flattened=True, flattened_ms=run.time_ms))
    state = "complete" if complete else "INCOMPLETE (the next run retries it)"
    raise errors.TradingHalted(f"drawdown halt: {halt.detail}; flatten {state}, {len(outcome.filled)} "
                               f"order(s) filled; {locked + '; ' if locked else ''}{HOW_TO_RESUME}")


def _finish(outcome: records.SendOutcome, writer: PositionsWriter) -> None:
    """Record positions, then report what went wrong; a failed write never hides an order problem."""
    try:
        writer.write(final=not outcome.unresolved)
    except errors.CoinbotError as error:
        if not (outcome.unresolved or outcome.rejected):
            raise
        logger.error("positions.json not updated: {}: {}", type(error).__name__, error)
    outcome.raise_if_failed()

"""The rebalance engine (lib/execution/rebalance_engine.py, state_files.py, venue_session.py, book.py) over a
real PaperBroker: journal-before-send, lookup after every failure, no resend of
an id that may have executed, reconciliation, crash-at-every-step convergence, the verdict's side effects.

The venue faults are scripted by ``Venue`` (a PaperBroker behind injectable failures); the journal and the
state files live in ``tmp_path``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lib.core.errors import ExchangeUnavailable, OrderRejected, RiskCheckFailed, StateError, TradingHalted
from lib.core.state import HaltRecord, Positions, Targets
from lib.core.storage import read_json, read_jsonl, write_json_atomic
from lib.core.venue import Holdings, MarketRules, OrderResult, Side
from lib.execution.book import Book, value_book
from lib.execution.journal import (
    JournalEvent,
    RunInfo,
    compute_fees_quote,
    compute_fill_positions,
    find_open_orders,
    find_problems,
    to_failed_event,
    to_sent_event,
)
from lib.execution.orders import OrderParams, OrderPlan, PlannedOrder
from lib.execution.paper import PaperBroker, PaperParams, PaperSnapshot
from lib.execution.rebalance_engine import carry_out, check_gates, plan_rebalance, reconcile_open_orders, send_orders
from lib.execution.risk import RiskLimits, check_all
from lib.execution.state_files import Journal, PositionsWriter, read_halt, read_positions, read_targets
from lib.execution.venue_session import Session
from lib.ops.config import Config

D = Decimal
LIMITS = RiskLimits(max_order_notional_quote=D("5000"))
DAY_MS = 86_400_000
NOW_MS = 1_767_225_600_000 + 3_600_000  # 2026-01-01T01:00Z
PRICES = {"BTC/USDT": 100.0, "ETH/USDT": 10.0}
PAPER = PaperParams(starting_cash_quote=D("1000"), fee_bps=10.0, slippage_bps=5.0)
ORDERS = OrderParams(no_trade_band_frac=0.02, slippage_allowance_bps=25.0)
WEIGHTS = {"BTC/USDT": 0.3, "ETH/USDT": 0.2}


def rules(symbol: str) -> MarketRules:
    return MarketRules(symbol=symbol, base=symbol.split("/")[0], quote="USDT", is_perpetual=False,
                       amount_step=D("0.001"), price_step=D("0.01"), min_amount_base=D("0.001"),
                       max_amount_base=None, min_notional_quote=D("5"), taker_fee_frac=0.001)


MARKETS = {symbol: rules(symbol) for symbol in PRICES}


class Venue:
    """A PaperBroker behind scripted faults, keyed by client id (or "*" for every order)."""

    def __init__(self, paper: PaperBroker, *, fail_before: set[str] = frozenset(),  # type: ignore[assignment]
                 lose_reply: set[str] = frozenset(), reject: set[str] = frozenset(),  # type: ignore[assignment]
                 lookup_fails: bool = False, before_call: Callable[[str], None] | None = None) -> None:
        self.paper, self.fail_before, self.lose_reply, self.reject = paper, fail_before, lose_reply, reject
        self.lookup_fails, self.before_call = lookup_fails, before_call
        self.calls: list[str] = []

    def fetch_holdings(self) -> Holdings:
        return self.paper.fetch_holdings()

    def create_market_order(self, symbol: str, side: Side, amount_base: Decimal, *, client_order_id: str,
                            reduce_only: bool = False) -> OrderResult:
        self.calls.append(client_order_id)
        if self.before_call is not None:
            self.before_call(client_order_id)
        if {client_order_id, "*"} & self.fail_before:
            raise ExchangeUnavailable("create_order: RequestTimeout")  # never reached the exchange
        if {client_order_id, "*"} & self.reject:
            raise OrderRejected("create_order: InsufficientFunds")
        result = self.paper.create_market_order(symbol, side, amount_base, client_order_id=client_order_id,
                                                reduce_only=reduce_only)
        if {client_order_id, "*"} & self.lose_reply:
            raise ExchangeUnavailable("create_order: ExchangeNotAvailable 502")  # executed, reply lost
        return result

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> OrderResult | None:
        if self.lookup_fails:
            raise ExchangeUnavailable("fetch_order: RequestTimeout after 4 retries")
        return self.paper.fetch_order_by_client_id(symbol, client_order_id)


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after it runs, nothing catches it."""


def paper(snapshot: PaperSnapshot | None = None, prices: dict[str, float] = PRICES) -> PaperBroker:
    return PaperBroker(snapshot or PaperSnapshot.initial(PAPER), prices=prices, now_ms=NOW_MS, params=PAPER)


PRICE_TIME_MS = NOW_MS - 3 * 60_000  # the venue's time of PRICES


def session_of(broker: Any, account: PaperBroker) -> Session:
    return Session(broker=broker, market_data=None, markets=MARKETS, quote="USDT", paper=account,  # type: ignore[arg-type]
                   prices=dict(PRICES), price_times_ms={symbol: PRICE_TIME_MS for symbol in PRICES})


def run_info(rebalance_id: str = "spot_long_only-1767139200000", run_id: str = "rebalance-1") -> RunInfo:
    return RunInfo(time_ms=NOW_MS, run_id=run_id, rebalance_id=rebalance_id, mode="paper", venue="simulated")


def events_of(path: Path) -> list[JournalEvent]:
    return Journal(path, write=False).history


def kinds(events: list[JournalEvent], client_id: str | None = None) -> list[str]:
    return [e.event for e in events if client_id is None or e.client_order_id == client_id]


def plan_for(session: Session, journal: Journal, run: RunInfo, weights: dict[str, float] = WEIGHTS) -> OrderPlan:
    book = value_book(session, previous=None, target_symbols=weights, now_ms=NOW_MS, reset_baseline=False)
    return plan_rebalance(session, book, target_weights=weights, params=ORDERS, limits=LIMITS, journal=journal, run=run)


# --- sending ------------------------------------------------------------------------------------------------


def test_every_order_is_journaled_sent_and_fsynced_before_the_call(tmp_path: Path) -> None:
    journal_path = tmp_path / "orders.jsonl"
    journal, account = Journal(journal_path, write=True), paper()
    seen_on_disk: list[str] = []
    venue = Venue(account, before_call=lambda cid: seen_on_disk.append(events_of(journal_path)[-1].event + cid))
    run = run_info()
    plan = plan_for(session_of(venue, account), journal, run)
    outcome = send_orders(plan.orders, venue, journal, run)
    assert [o.client_order_id for o in plan.orders] == venue.calls and len(venue.calls) == 2
    assert seen_on_disk == [f"sent{cid}" for cid in venue.calls]
    assert [e.event for e in outcome.filled] == ["filled", "filled"] and not outcome.rejected
    assert find_problems(events_of(journal_path)) == []


def test_nothing_is_sent_without_a_journal_on_disk(tmp_path: Path) -> None:
    account = paper()
    journal, venue = Journal(tmp_path / "j.jsonl", write=False), Venue(account)
    plan = plan_for(session_of(venue, account), journal, run_info())
    with pytest.raises(StateError, match="dry run"):
        send_orders(plan.orders, venue, journal, run_info())
    assert venue.calls == [] and not (tmp_path / "j.jsonl").exists()


def test_fills_are_journaled_with_the_paper_cost_model(tmp_path: Path) -> None:
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    plan = plan_for(session_of(account, account), journal, run)
    outcome = send_orders(plan.orders, account, journal, run)
    for event in outcome.filled:
        price = event.reference_price * (1 + 5 / 10_000)
        assert event.average_price == pytest.approx(price, rel=1e-12)
        assert event.fee_quote == pytest.approx(float(event.filled_amount_base) * price * 10 / 10_000, rel=1e-12)
    assert compute_fill_positions(journal.history) == {
        symbol: D(repr(amount)) for symbol, amount in account.fetch_holdings().amounts_base.items()}


def test_lost_reply_is_looked_up_and_never_sent_twice(tmp_path: Path) -> None:
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    plan = plan_for(session_of(account, account), journal, run)
    first = plan.orders[0].client_order_id
    venue = Venue(account, lose_reply={first})
    outcome = send_orders(plan.orders, venue, journal, run)
    assert venue.calls == [o.client_order_id for o in plan.orders]  # each once; sending went on
    assert kinds(journal.history, first) == ["planned", "sent", "filled"]
    assert len(outcome.filled) == 2 and not outcome.unresolved
    outcome.raise_if_failed()


def test_ambiguous_failure_not_found_stops_sending_and_leaves_the_order_open(tmp_path: Path) -> None:
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    plan = plan_for(session_of(account, account), journal, run)
    first = plan.orders[0].client_order_id
    venue = Venue(account, fail_before={first})
    outcome = send_orders(plan.orders, venue, journal, run)
    assert venue.calls == [first]  # the second order was not sent
    assert [e.client_order_id for e in find_open_orders(journal.history)] == [first]
    with pytest.raises(ExchangeUnavailable, match="unknown outcome.*next run looks it up"):
        outcome.raise_if_failed()


def test_a_failed_lookup_after_a_lost_reply_also_stops(tmp_path: Path) -> None:
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    plan = plan_for(session_of(account, account), journal, run)
    venue = Venue(account, lose_reply={"*"}, lookup_fails=True)
    outcome = send_orders(plan.orders, venue, journal, run)
    assert len(venue.calls) == 1 and "lookup failed" in outcome.unresolved
    assert len(find_open_orders(journal.history)) == 1


def test_a_refusal_is_journaled_and_the_rest_still_goes(tmp_path: Path) -> None:
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    plan = plan_for(session_of(account, account), journal, run)
    first = plan.orders[0].client_order_id
    outcome = send_orders(plan.orders, Venue(account, reject={first}), journal, run)
    assert kinds(journal.history, first) == ["planned", "sent", "rejected"]
    assert len(outcome.filled) == 1 and len(outcome.rejected) == 1
    with pytest.raises(OrderRejected, match="1 order\\(s\\) rejected.*InsufficientFunds"):
        outcome.raise_if_failed()


def test_a_refusal_for_an_order_the_venue_holds_records_its_fill(tmp_path: Path) -> None:
    """"Duplicate order" is a refusal of an id that executed: the lookup turns it into the facts."""
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    plan = plan_for(session_of(account, account), journal, run)
    order = plan.orders[0]
    account.create_market_order(order.symbol, order.side, order.amount_base, client_order_id=order.client_order_id)
    outcome = send_orders(plan.orders[:1], Venue(account, reject={order.client_order_id}), journal, run)
    assert [e.event for e in outcome.filled] == ["filled"] and not outcome.rejected


# --- reconciliation and resending ---------------------------------------------------------------------------


def test_reconcile_settles_every_open_order_from_the_venue(tmp_path: Path) -> None:
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    plan = plan_for(session_of(account, account), journal, run)
    executed, lost = plan.orders
    for order in plan.orders:
        journal.append(to_sent_event(order, run))
    account.create_market_order(executed.symbol, executed.side, executed.amount_base,
                                client_order_id=executed.client_order_id)
    settled = reconcile_open_orders(account, journal, run_info(run_id="rebalance-2"))
    assert [(e.client_order_id, e.event) for e in settled] == [(executed.client_order_id, "filled"),
                                                                (lost.client_order_id, "failed")]
    assert settled[1].reason == "not_found" and find_open_orders(journal.history) == []
    assert reconcile_open_orders(account, journal, run) == []  # settled ids are not asked again


def test_reconcile_refuses_to_plan_while_the_venue_cannot_answer(tmp_path: Path) -> None:
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    journal.append(to_sent_event(plan_for(session_of(account, account), journal, run).orders[0], run))
    with pytest.raises(ExchangeUnavailable):
        reconcile_open_orders(Venue(account, lookup_fails=True), journal, run)
    assert len(find_open_orders(journal.history)) == 1


def test_an_id_that_filled_is_never_planned_again(tmp_path: Path) -> None:
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    first_plan = plan_for(session_of(account, account), journal, run)
    send_orders(first_plan.orders[:1], account, journal, run)
    # an account that does not show the fill (as after a lost positions write) re-plans the same ids
    second = plan_for(session_of(paper(), paper()), journal, run)
    assert [o.client_order_id for o in second.orders] == [first_plan.orders[1].client_order_id]
    assert [s.reason for s in second.skipped] == ["already filled"]


def test_an_id_that_failed_is_looked_up_before_it_is_sent_again(tmp_path: Path) -> None:
    journal, account = Journal(tmp_path / "j.jsonl", write=True), paper()
    run = run_info()
    order = plan_for(session_of(account, account), journal, run).orders[0]
    sent = to_sent_event(order, run)
    journal.append(sent)
    journal.append(to_failed_event(sent, run, reason="not_found", detail="never reached the exchange"))
    account.create_market_order(order.symbol, order.side, order.amount_base,  # ... but it arrived late
                                client_order_id=order.client_order_id)
    venue = Venue(account)
    outcome = send_orders([order], venue, journal, run)
    assert venue.calls == [] and [e.event for e in outcome.filled] == ["filled"]
    assert kinds(journal.history, order.client_order_id)[-1] == "filled"
    assert journal.history[-1].reason == "found on the exchange"
    assert find_problems(journal.history) == []
    # not found -> it is sent
    fresh = Venue(paper())
    (tmp_path / "copy.jsonl").write_bytes((tmp_path / "j.jsonl").read_bytes())
    send_orders([order], fresh, Journal(tmp_path / "copy.jsonl", write=True), run)
    assert fresh.calls == [order.client_order_id]


# --- crash at every step: a re-run converges, nothing fills twice -------------------------------------------


def one_run(state: Path, *, crash_at: str | None = None, crash_order: int = 0) -> None:
    """What scripts/rebalance.py does in paper mode, with a simulated SIGKILL at ``crash_at``."""
    config = Config()
    journal = Journal(state / "orders.jsonl", write=True)
    previous = read_positions(state / "positions.json", mode=config.exchange.mode, venue="simulated", journal=journal)
    snapshot = PaperSnapshot.initial(PAPER) if previous is None else PaperSnapshot.from_dict(previous.paper)
    account = paper(snapshot)
    calls = {"n": 0}

    def before_call(client_id: str) -> None:
        if crash_at == "after_sent" and calls["n"] == crash_order:
            raise Crash
        calls["n"] += 1

    venue = Venue(account, before_call=before_call)
    session = session_of(venue, account)
    run = run_info()
    reconcile_open_orders(venue, journal, run)
    book = value_book(session, previous=previous, target_symbols=WEIGHTS, now_ms=NOW_MS, reset_baseline=False)
    writer = PositionsWriter(state / "positions.json", session, book, journal, run, enabled=True)
    plan = plan_rebalance(session, book, target_weights=WEIGHTS, params=ORDERS, limits=LIMITS, journal=journal, run=run)

    def after_fill() -> None:
        writer.after_fill()
        if crash_at == "after_fill_saved" and calls["n"] == crash_order + 1:
            raise Crash

    outcome = send_orders(plan.orders, venue, journal, run, on_fill=after_fill)
    if crash_at == "before_positions":
        raise Crash
    writer.write(final=True)
    outcome.raise_if_failed()


@pytest.mark.parametrize(("crash_at", "crash_order"), [
    ("after_sent", 0), ("after_sent", 1), ("after_fill_saved", 0), ("after_fill_saved", 1),
    ("before_positions", 0),
])
def test_a_crash_at_any_step_then_a_rerun_reaches_the_targets_once(tmp_path: Path, crash_at: str,
                                                                    crash_order: int) -> None:
    with pytest.raises(Crash):
        one_run(tmp_path, crash_at=crash_at, crash_order=crash_order)
    one_run(tmp_path)
    one_run(tmp_path)  # and a third run changes nothing
    events = events_of(tmp_path / "orders.jsonl")
    assert find_problems(events) == [] and find_open_orders(events) == []
    positions = Positions.from_dict(read_json(tmp_path / "positions.json"))
    snapshot = PaperSnapshot.from_dict(positions.paper)
    assert compute_fill_positions(events) == dict(snapshot.amounts_base)  # journal and account agree exactly
    assert positions.fees_paid_quote == pytest.approx(compute_fees_quote(events), rel=1e-12)
    equity = float(snapshot.cash_quote) + sum(float(a) * PRICES[s] for s, a in snapshot.amounts_base.items())
    for symbol, target in WEIGHTS.items():  # targets reached (a re-plan may differ from a clean run by fees)
        assert abs(float(snapshot.amounts_base[symbol]) * PRICES[symbol] / equity - target) < ORDERS.no_trade_band_frac
    assert snapshot.cash_quote >= 0
    filled_ids = [e.client_order_id for e in events if e.event == "filled"]
    assert len(filled_ids) == len(set(filled_ids)) == 2


# --- the book ---------------------------------------------------------------------------------------------


def previous_positions(**changes: Any) -> Positions:
    base = Positions(mode="paper", venue="simulated", updated_ms=NOW_MS - 3_600_000, cash_quote=900.0,
                     amounts_base={}, marks={}, equity_quote=900.0, high_water_mark_quote=1200.0,
                     day_start_ms=NOW_MS - NOW_MS % DAY_MS, day_start_equity_quote=950.0,
                     inception_ms=1, inception_equity_quote=1000.0, fees_paid_quote=3.0,
                     paper=PaperSnapshot(cash_quote=D("1000")).to_dict())
    return replace(base, **changes)


@pytest.mark.parametrize(("previous", "reset", "expected"), [
    (None, False, (1000.0, 1000.0)),  # first run: everything starts at today's equity
    (previous_positions(), False, (1200.0, 950.0)),  # same UTC day: peak and day start kept
    (previous_positions(day_start_ms=NOW_MS - NOW_MS % DAY_MS - DAY_MS), False, (1200.0, 900.0)),  # new day
    (previous_positions(high_water_mark_quote=800.0), False, (1000.0, 950.0)),  # a new peak
    (previous_positions(), True, (1000.0, 1000.0)),  # a person reset the baseline
])
def test_book_baselines(previous: Positions | None, reset: bool, expected: tuple[float, float]) -> None:
    account = paper()
    book = value_book(session_of(account, account), previous=previous, target_symbols=WEIGHTS, now_ms=NOW_MS,
                      reset_baseline=reset)
    assert (book.baselines.high_water_mark_quote, book.baselines.day_start_equity_quote) == expected
    # each price carries the venue's time of it, not the run's clock (risk.max_price_age_ms must be able to fire)
    assert book.equity_quote == 1000.0 and book.price_times_ms == {s: PRICE_TIME_MS for s in PRICES}


# --- the verdict ---------------------------------------------------------------------------------------------


def verdict_run(tmp_path: Path, *, equity_drop_frac: float, day_start: float, weights: dict[str, float],
                before_call: Callable[[str], None] | None = None) -> tuple[Any, Venue, Journal, Book]:
    """A book holding BTC and ETH, valued after prices fell by ``equity_drop_frac``."""
    held = PaperSnapshot(cash_quote=D("100"), amounts_base={"BTC/USDT": D("6"), "ETH/USDT": D("30")})
    prices = {symbol: price * (1 - equity_drop_frac) for symbol, price in PRICES.items()}
    account = paper(held, prices)
    venue = Venue(account, before_call=before_call)
    session = replace(session_of(venue, account), prices=prices)
    journal = Journal(tmp_path / "orders.jsonl", write=True)
    run = run_info()
    previous = previous_positions(high_water_mark_quote=1000.0, day_start_equity_quote=day_start)
    book = value_book(session, previous=previous, target_symbols=weights, now_ms=NOW_MS, reset_baseline=False)
    plan = plan_rebalance(session, book, target_weights=weights, params=ORDERS, limits=LIMITS, journal=journal, run=run)
    verdict = check_all(plan=plan, target_weights=weights, holdings=book.holdings, prices=book.prices,
                        equity_quote=book.equity_quote, start_of_day_equity_quote=book.baselines.day_start_equity_quote,
                        high_water_mark_quote=book.baselines.high_water_mark_quote, targets_as_of_ms=NOW_MS - 3_600_000,
                        price_times_ms=book.price_times_ms, now_ms=NOW_MS, kill_switch_present=False,
                        halt_active=False, limits=RiskLimits(max_order_notional_quote=D("5000")))
    writer = PositionsWriter(tmp_path / "positions.json", session, book, journal, run, enabled=True)

    def go() -> Any:
        return carry_out(verdict, session=session, book=book, journal=journal, run=run, writer=writer,
                         halt_path=tmp_path / "halt.json", limits=RiskLimits(), params=ORDERS)
    return go, venue, journal, book


def test_drawdown_writes_the_halt_file_before_the_first_flatten_order(tmp_path: Path) -> None:
    halt_seen: list[bool] = []
    go, venue, journal, _ = verdict_run(tmp_path, equity_drop_frac=0.4, day_start=1000.0, weights=WEIGHTS,
                                        before_call=lambda cid: halt_seen.append((tmp_path / "halt.json").exists()))
    with pytest.raises(TradingHalted, match="drawdown.*flatten complete"):
        go()
    assert halt_seen == [True, True]  # both positions closed, each after halt.json existed
    assert Positions.from_dict(read_json(tmp_path / "positions.json")).amounts_base == {}
    halt = read_halt(tmp_path / "halt.json")
    assert halt is not None and halt.flattened and halt.reason == "drawdown"
    assert all(e.reduce_only is not None for e in journal.history if e.event == "sent")
    assert {e.rebalance_id for e in journal.history if e.event == "sent"} == {"spot_long_only-1767139200000-flat"}


def test_daily_loss_sends_only_risk_reducing_orders_then_fails(tmp_path: Path) -> None:
    weights = {"BTC/USDT": 0.3, "ETH/USDT": 0.34}  # BTC (now 0.60) must be sold, ETH (0.30) bought
    go, venue, journal, _ = verdict_run(tmp_path, equity_drop_frac=0.06, day_start=1000.0, weights=weights)
    with pytest.raises(RiskCheckFailed, match="reduce-only: sent 1"):
        go()
    sent = [e for e in journal.history if e.event == "sent"]
    assert [(e.symbol, e.requested_side) for e in sent] == [("BTC/USDT", "sell")]
    assert any(e.event == "risk_rejected" and e.reason == "daily_loss" and e.symbol == "ETH/USDT"
               for e in journal.history)
    assert (tmp_path / "positions.json").exists()


def test_a_halt_verdict_sends_and_writes_nothing(tmp_path: Path) -> None:
    go, venue, journal, _ = verdict_run(tmp_path, equity_drop_frac=0.0, day_start=1000.0,
                                        weights={"BTC/USDT": 0.9})
    with pytest.raises(RiskCheckFailed, match="nothing sent: asset_weight"):
        go()
    assert venue.calls == [] and not (tmp_path / "positions.json").exists()
    assert [e.reason for e in journal.history if e.event == "risk_rejected"][:1] == ["asset_weight"]


def test_gates(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "orders.jsonl", write=True)
    halt = HaltRecord(created_ms=1, run_id="r", reason="drawdown", detail="-30%", equity_quote=700.0,
                      high_water_mark_quote=1000.0)
    assert check_gates(kill_switch_present=False, halt=None, journal=journal, run=run_info()) is False
    assert check_gates(kill_switch_present=False, halt=halt, journal=journal, run=run_info()) is True
    with pytest.raises(TradingHalted, match="kill_switch"):
        check_gates(kill_switch_present=True, halt=None, journal=journal, run=run_info())
    with pytest.raises(TradingHalted, match="halt: drawdown halt in force"):
        check_gates(kill_switch_present=False, halt=replace(halt, flattened=True), journal=journal, run=run_info())
    assert [e.reason for e in events_of(tmp_path / "orders.jsonl")] == ["kill_switch", "halt"]
    (tmp_path / "halt.json").write_text("{not json")
    with pytest.raises(TradingHalted, match="cannot be read"):
        read_halt(tmp_path / "halt.json")


# --- state files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tail", "expected_lines"), [
    (b'{"event": "sen', 1),  # cut mid-line: dropped
    (json.dumps(to_sent_event(PlannedOrder(
        symbol="BTC/USDT", side="buy", amount_base=D("1"), reference_price=1.0, notional_quote=D("1"),
        reduce_only=False, client_order_id="cb-2", target_weight=0.1, current_weight=0.0),
        run_info()).to_dict()).encode(), 2),  # only the newline was lost: kept
])
def test_a_torn_final_journal_line_is_repaired_before_appending(tmp_path: Path, tail: bytes,
                                                                expected_lines: int) -> None:
    path = tmp_path / "orders.jsonl"
    first = to_sent_event(PlannedOrder(symbol="ETH/USDT", side="buy", amount_base=D("1"), reference_price=1.0,
                                       notional_quote=D("1"), reduce_only=False, client_order_id="cb-1",
                                       target_weight=0.1, current_weight=0.0), run_info())
    path.write_bytes(json.dumps(first.to_dict()).encode() + b"\n" + tail)
    journal = Journal(path, write=True)
    journal.append(to_failed_event(first, run_info(), reason="not_found", detail="x"))
    records, torn = read_jsonl(path)
    assert not torn and len(records) == expected_lines + 1


def write_targets(path: Path, **changes: Any) -> None:
    targets = Targets(as_of_ms=NOW_MS - 3_600_000, created_ms=NOW_MS, strategy="spot_long_only",
                      exchange="simulated", market_type="spot", timeframe="1d", weights=dict(WEIGHTS))
    write_json_atomic(path, replace(targets, **changes).to_dict())


@pytest.mark.parametrize(("changes", "message"), [
    ({"exchange": "binance"}, "run compute_signals with this config"),
    ({"strategy": "perp_market_neutral"}, "perp_market_neutral/spot/simulated"),
    (None, "does not exist"),
])
def test_targets_for_another_venue_or_missing_are_refused(tmp_path: Path, changes: dict[str, Any] | None,
                                                          message: str) -> None:
    if changes is not None:
        write_targets(tmp_path / "targets.json", **changes)
    with pytest.raises(StateError, match=message):
        read_targets(tmp_path / "targets.json", strategy=Config().strategy.name, exchange=Config().exchange)


@pytest.mark.parametrize(("changes", "message"), [
    ({"timeframe": "1h"}, "computed on 1h candles"),  # another config's targets (an hourly research run, say)
    ({"weights": {"BTC/USDT": 0.3, "SOL/USDC": 0.2}}, "SOL/USDC"),  # sized in USDT, would be bought with USDC
])
def test_targets_for_another_timeframe_or_quote_are_refused(tmp_path: Path, changes: dict[str, Any],
                                                            message: str) -> None:
    """A weight in another quote currency was planned in the book's quote (its amount = weight x USDT equity / a
    USDC or BTC price), its purchase never showed in the book's holdings, so every run bought it again."""
    write_targets(tmp_path / "targets.json", strategy=Config().strategy.name, **changes)
    with pytest.raises(StateError, match=message):
        read_targets(tmp_path / "targets.json", strategy=Config().strategy.name, exchange=Config().exchange,
                     timeframe="1d", quote="USDT")
    zero = {"weights": {"BTC/USDT": 0.3, "SOL/USDC": 0.0}, "strategy": Config().strategy.name}  # no trade: no harm
    write_targets(tmp_path / "targets.json", **zero)
    assert read_targets(tmp_path / "targets.json", strategy=Config().strategy.name, exchange=Config().exchange,
                        timeframe="1d", quote="USDT").weights["BTC/USDT"] == 0.3


def test_positions_from_another_mode_or_a_lost_paper_account_are_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "orders.jsonl", write=True)
    assert read_positions(tmp_path / "positions.json", mode="paper", venue="simulated", journal=journal) is None
    sent = to_sent_event(PlannedOrder(symbol="BTC/USDT", side="buy", amount_base=D("1"), reference_price=1.0,
                                      notional_quote=D("1"), reduce_only=False, client_order_id="cb-1",
                                      target_weight=0.1, current_weight=0.0), run_info())
    journal.append(sent)
    from lib.execution.journal import to_result_event
    journal.append(to_result_event(sent, OrderResult(
        client_order_id="cb-1", exchange_order_id="p", symbol="BTC/USDT", side="buy", status="closed",
        requested_amount_base=D("1"), filled_amount_base=D("1"), average_price=1.0, fee_quote=0.0,
        timestamp_ms=NOW_MS), run_info()))
    with pytest.raises(StateError, match="records fills"):
        read_positions(tmp_path / "positions.json", mode="paper", venue="simulated", journal=journal)
    write_json_atomic(tmp_path / "positions.json", previous_positions(mode="testnet", paper=None).to_dict())
    with pytest.raises(StateError, match="mode=testnet"):
        read_positions(tmp_path / "positions.json", mode="paper", venue="simulated", journal=journal)

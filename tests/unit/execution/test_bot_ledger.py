"""The bot's own cash ledger in a shared account (lib.execution.bot_ledger): start, fills, flows, reconciliation,
with hand-computed values."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from lib.core.state import CashLedger, FlaggedHolding, Positions
from lib.core.timeframes import MS_PER_DAY
from lib.execution import bot_ledger
from lib.execution.bot_ledger import (
    add_flows,
    book_fills,
    fill_cash_quote,
    reconcile,
    start_capital,
    start_ledger,
)
from lib.execution.journal import JournalEvent
from lib.execution.managed_book import BookParams

NOW = 1_767_225_600_000
D = Decimal


def fill(cid: str, side: str, amount: str, price: float | None, fee: float, *, time_ms: int = NOW,
         mode: str = "live", venue: str = "binance", reference: float = 99.0,
         paid: dict[str, str] | None = None) -> JournalEvent:
    """A fill; ``paid`` None is a journal line written before ``fees_paid`` existed."""
    return JournalEvent(event="filled", time_ms=time_ms, run_id="r", rebalance_id="rb", mode=mode, venue=venue,
                        symbol="BTC/USDT", client_order_id=cid, requested_side=side, requested_amount_base=D(amount),
                        reference_price=reference, filled_amount_base=D(amount), average_price=price, fee_quote=fee,
                        fees_paid=None if paid is None else tuple(sorted((c, D(a)) for c, a in paid.items())),
                        status="closed")


def ledger(cash: str = "1000", *, since: int = NOW - 1, booked: dict[str, int] | None = None) -> CashLedger:
    return CashLedger(cash_quote=D(cash), started_ms=since, start_quote=D(cash), flows_quote=D(0),
                      booked_since_ms=since, booked=booked or {})


@pytest.mark.parametrize(("cash", "coins", "params", "expected"), [
    ("5000", "0", BookParams(capital_quote=D(1000)), "1000"),  # a 5,000 account, the bot's 1,000
    ("5000", "0", BookParams(capital_frac=0.25), "1250"),  # a quarter of 5,000
    ("1500", "500", BookParams(capital_frac=0.5, capital_quote=D(2000)), "1000"),  # half of 2,000 < the cap
    ("800", "200", BookParams(capital_quote=D(5000)), "1000"),  # the cap is a ceiling: never more than there is
])
def test_start_capital(cash: str, coins: str, params: BookParams, expected: str) -> None:
    assert start_capital(account_cash=D(cash), coins_value=D(coins), params=params) == D(expected)


@pytest.mark.parametrize(("cash", "coins", "cap", "bot_cash", "start"), [
    ("5000", "300", "1000", "700", "1000"),  # the managed coins (300) are the bot's; its cash is the rest
    ("5000", "1200", "1000", "0", "1200"),  # coins above the capital: no cash, the coins stay the bot's
    ("400", "0", "1000", "400", "400"),  # never more cash than the account holds
])
def test_start_ledger(cash: str, coins: str, cap: str, bot_cash: str, start: str) -> None:
    started = start_ledger(account_cash=D(cash), coins_value=D(coins), params=BookParams(capital_quote=D(cap)),
                           now_ms=NOW, fills=[])
    assert (started.cash_quote, started.start_quote) == (D(bot_cash), D(start))
    assert (started.started_ms, started.booked_since_ms, started.booked, started.flows_quote) == (NOW, NOW, {}, 0)


def test_a_new_ledger_counts_fills_this_run_already_found_as_booked() -> None:
    """A fill this run's reconciliation journaled (at its time) is in the balances the ledger starts from."""
    found, old = fill("cb-found", "buy", "1", 100.0, 0.1), fill("cb-old", "buy", "1", 100.0, 0.1, time_ms=NOW - 5)
    started = start_ledger(account_cash=D(900), coins_value=D(100), params=BookParams(capital_quote=D(500)),
                           now_ms=NOW, fills=[old, found])
    assert started.booked == {"cb-found": NOW}
    assert book_fills(started, [old, found], mode="live", venue="binance", now_ms=NOW).cash_quote == D(400)


@pytest.mark.parametrize(("event", "expected"), [
    (fill("a", "buy", "0.5", 100.2, 0.0501), "-50.1501"),  # 0.5 x 100.2 = 50.1 spent, fee 0.0501
    (fill("b", "sell", "2", 30.5, 0.061), "60.939"),  # 2 x 30.5 = 61 received, fee 0.061
    (fill("c", "buy", "3", None, 0.0), "-297"),  # no average price reported: the reference price 99
])
def test_fill_cash(event: JournalEvent, expected: str) -> None:
    assert fill_cash_quote(event) == D(expected)


@pytest.mark.parametrize(("event", "expected"), [
    # a buy of 0.5 at 100.2 = 50.1 spent; its 0.1 % commission is 0.0501 USDT = 0.0005 BTC = 0.0000626 BNB at 600
    (fill("q", "buy", "0.5", 100.2, 0.0501, paid={"USDT": "0.0501"}), "-50.1501"),  # quote: out of the cash
    (fill("b", "buy", "0.5", 100.2, 0.0501, paid={"BTC": "0.0005"}), "-50.1"),  # base: the coin came in net of it
    (fill("n", "buy", "0.5", 100.2, 0.03756, paid={"BNB": "0.0000626"}), "-50.1"),  # BNB: not the bot's cash
    (fill("m", "buy", "0.5", 100.2, 0.04, paid={"BNB": "0.00005", "USDT": "0.01"}), "-50.11"),  # mixed: 0.01
    (fill("s", "sell", "2", 30.5, 0.061, paid={"BTC": "0.002"}), "61"),  # a sell's fee in the coin sold
    (fill("o", "buy", "0.5", 100.2, 0.0501), "-50.1501"),  # an old line: all of fee_quote from the cash, as then
])
def test_only_fees_paid_in_the_quote_leave_the_bots_cash(event: JournalEvent, expected: str) -> None:
    assert fill_cash_quote(event) == D(expected)


def test_a_buy_with_its_commission_in_the_coin_bought_costs_the_bot_the_commission_once() -> None:
    """1,000 of cash buys 0.1 BTC at 2,000 (200); the exchange keeps 0.1 % of the coin: 0.0999 BTC arrive. At
    2,000 the bot holds 800 + 199.8 = 999.8: it lost the 0.2 commission, once (the old ledger also took 0.2 of
    cash: 999.6)."""
    event = fill("b", "buy", "0.1", 2000.0, 0.2, paid={"BTC": "0.0001"})
    booked = book_fills(ledger(), [event], mode="live", venue="binance", now_ms=NOW)
    held = D("0.1") - D("0.0001")
    assert booked.cash_quote == D(800) and booked.cash_quote + held * 2000 == D("999.8")
    old_line = fill("b", "buy", "0.1", 2000.0, 0.2)
    old = book_fills(ledger(), [old_line], mode="live", venue="binance", now_ms=NOW)
    assert old.cash_quote + held * 2000 == D("999.6")


def test_book_fills_books_each_fill_once_and_only_the_bots() -> None:
    events = [fill("a", "buy", "0.5", 100.2, 0.0501), fill("b", "sell", "2", 30.5, 0.061),
              fill("paper", "buy", "1", 100.0, 0.1, mode="paper"),  # another mode's journal lines
              fill("before", "buy", "1", 100.0, 0.1, time_ms=NOW - 10)]  # before the ledger: in its start
    booked = book_fills(ledger(), events, mode="live", venue="binance", now_ms=NOW)
    assert booked.cash_quote == D("1000") - D("50.1501") + D("60.939") == D("1010.7889")
    assert booked.booked == {"a": NOW, "b": NOW}
    assert book_fills(booked, events, mode="live", venue="binance", now_ms=NOW) == booked  # a re-run: no change
    late = [*events, fill("c", "sell", "1", 101.0, 0.101, time_ms=NOW + 7)]  # reconciled after a crash
    assert book_fills(booked, late, mode="live", venue="binance", now_ms=NOW + 7).cash_quote == D("1111.6879")


def test_booked_ids_are_kept_for_the_window_then_older_fills_count_as_booked() -> None:
    events = [fill("a", "buy", "1", 100.0, 0.1)]
    booked = book_fills(ledger(), events, mode="live", venue="binance", now_ms=NOW)
    month_later = NOW + bot_ledger.BOOKED_WINDOW_MS + MS_PER_DAY
    pruned = book_fills(booked, events, mode="live", venue="binance", now_ms=month_later)
    assert pruned.booked == {} and pruned.booked_since_ms == NOW + MS_PER_DAY
    assert pruned.cash_quote == booked.cash_quote == D("899.9")  # the pruned fill is not booked again


def test_flows_move_the_bots_cash_and_are_summed() -> None:
    moved = add_flows(add_flows(ledger(), D(500)), D(-200))
    assert (moved.cash_quote, moved.flows_quote) == (D(1300), D(300))


@pytest.mark.parametrize(("account", "cash", "shortfall"), [
    ("2000", "1000", "0"),  # the owner's cash on top: nothing to do
    ("1000", "1000", "0"),
    ("999.5", "999.5", "0.5"),  # half a USDT is not there: the ledger drops to what is (a loss)
    ("-3", "0", "1000"),
])
def test_reconcile_never_leaves_more_than_the_account_holds(account: str, cash: str, shortfall: str) -> None:
    result = reconcile(ledger(), account_cash=D(account))
    assert (result.ledger.cash_quote, result.shortfall_quote) == (D(cash), D(shortfall))


def test_positions_carry_the_ledger_and_the_flagged_holdings_through_json() -> None:
    positions = Positions(mode="live", venue="binance", updated_ms=NOW, cash_quote=700.0, amounts_base={"X/USDT": 5.0},
                          marks={"X/USDT": 0.5}, equity_quote=702.5, high_water_mark_quote=1000.0, day_start_ms=NOW,
                          day_start_equity_quote=1000.0, inception_ms=NOW, inception_equity_quote=1000.0,
                          account_cash_quote=4700.0, ledger=ledger("700.123456789", booked={"a": NOW}),
                          unpriced={"X/USDT": FlaggedHolding(amount_base=5.0, last_close=0.5, since_ms=NOW - 1)})
    again = Positions.from_dict(json.loads(json.dumps(positions.to_dict())))
    assert again == positions and again.ledger is not None and again.ledger.cash_quote == D("700.123456789")
    old = {key: value for key, value in positions.to_dict().items()
           if key not in ("ledger", "account_cash_quote", "unpriced")}  # a file written before them
    assert Positions.from_dict(old).ledger is None and Positions.from_dict(old).unpriced == {}

"""Spot sells never exceed the free coins: coins locked by a person's open orders (a shared account) are owned
(valued in equity) but cannot be sold; the planner sells the free part, floored to the lot step, and records the
rest (lib.execution.orders SKIP_LOCKED); an exit held back this way is one alert (locked_exits_alert)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lib.core.venue import Holdings
from lib.execution.ccxt_venue import CcxtVenue
from lib.execution.orders import (
    SKIP_LOCKED,
    SKIP_MIN_NOTIONAL,
    OrderParams,
    OrderPlan,
    compute_equity_quote,
    locked_exits_alert,
    plan_orders,
)
from tests.unit.execution.test_ccxt_holdings import BalanceClient
from tests.unit.execution.test_orders import rules

D = Decimal
MARKETS = {"BTC/USDT": rules("BTC/USDT", "0.01", min_notional="5"),
           "ETH/USDT": rules("ETH/USDT", "0.1", min_notional="5")}
PRICES = {"BTC/USDT": 100.0, "ETH/USDT": 10.0}


def plan_with(targets: dict[str, float], held: dict[str, float], free: dict[str, float] | None,
              *, cash: float = 0.0) -> OrderPlan:
    holdings = Holdings(cash_quote=cash, amounts_base=held, free_base=free)
    return plan_orders(target_weights=targets, holdings=holdings, prices=PRICES, markets=MARKETS,
                       equity_quote=compute_equity_quote(holdings, PRICES), params=OrderParams(),
                       rebalance_id="r-free")


def test_free_of_defaults_to_the_whole_amount_and_never_exceeds_it() -> None:
    holdings = Holdings(cash_quote=0.0, amounts_base={"BTC/USDT": 2.0, "ETH/USDT": 3.0},
                        free_base={"BTC/USDT": 1.25, "ETH/USDT": 9.0})
    assert holdings.free_of("BTC/USDT") == 1.25 and holdings.free_of("ETH/USDT") == 3.0
    assert Holdings(cash_quote=0.0, amounts_base={"BTC/USDT": 2.0}).free_of("BTC/USDT") == 2.0
    assert holdings.free_of("SOL/USDT") == 0.0


def test_an_exit_sells_only_the_free_coins_and_is_alerted() -> None:
    # 2 BTC held, 0.757 free (a person's sell order locks 1.243): sell floor(0.757 / 0.01) * 0.01 = 0.75
    result = plan_with({}, {"BTC/USDT": 2.0}, {"BTC/USDT": 0.757})
    assert [(o.symbol, o.side, o.amount_base, o.notional_quote) for o in result.orders] == [
        ("BTC/USDT", "sell", D("0.75"), D("75.00"))]
    assert [(s.symbol, s.reason) for s in result.skipped] == [("BTC/USDT", SKIP_LOCKED)]
    assert "free 0.757" in result.skipped[0].detail and "selling 0.75" in result.skipped[0].detail
    alert = locked_exits_alert(result.skipped)
    assert alert is not None and "BTC/USDT" in alert and "locked by open orders" in alert


def test_equity_still_counts_the_locked_coins() -> None:
    holdings = Holdings(cash_quote=50.0, amounts_base={"BTC/USDT": 2.0}, free_base={"BTC/USDT": 0.5})
    assert compute_equity_quote(holdings, PRICES) == 250.0  # 50 + 2 x 100: the locked coins are owned


def test_a_sell_the_cap_makes_too_small_is_skipped_with_both_reasons() -> None:
    # free 0.04 BTC x 100 = 4 < the exchange's min notional 5: nothing is sent, both reasons recorded
    result = plan_with({}, {"BTC/USDT": 2.0}, {"BTC/USDT": 0.04})
    assert result.orders == ()
    assert [(s.symbol, s.reason) for s in result.skipped] == [("BTC/USDT", SKIP_LOCKED),
                                                              ("BTC/USDT", SKIP_MIN_NOTIONAL)]


def test_nothing_free_sends_nothing() -> None:
    result = plan_with({}, {"BTC/USDT": 2.0}, {"BTC/USDT": 0.0})
    assert result.orders == () and [s.reason for s in result.skipped] == [SKIP_LOCKED]
    assert "nothing to sell" in result.skipped[0].detail and locked_exits_alert(result.skipped) is not None


def test_a_partial_reduction_is_capped_but_not_an_exit_alert() -> None:
    # equity 2 x 100 = 200; target 0.25 -> 0.5 BTC, sell 1.5; only 1.0 free -> sell 1.00
    result = plan_with({"BTC/USDT": 0.25}, {"BTC/USDT": 2.0}, {"BTC/USDT": 1.0})
    assert [(o.side, o.amount_base) for o in result.orders] == [("sell", D("1.00"))]
    assert [s.reason for s in result.skipped] == [SKIP_LOCKED] and locked_exits_alert(result.skipped) is None


def test_a_sell_within_the_free_coins_is_unchanged_and_buys_ignore_locks() -> None:
    # sell 1.5 of 2 BTC with 1.6 free; buy ETH with the cash: the same plan as with no lock at all
    targets, held = {"BTC/USDT": 0.1, "ETH/USDT": 0.5}, {"BTC/USDT": 2.0, "ETH/USDT": 1.0}
    locked = plan_with(targets, held, {"BTC/USDT": 1.6, "ETH/USDT": 0.0}, cash=300.0)
    assert locked == plan_with(targets, held, None, cash=300.0)
    # equity 300 + 200 + 10 = 510: BTC 51 / 100 -> 0.51, sell 1.49; ETH 255 / 10 -> 25.5, buy 24.5
    assert [(o.symbol, o.side, o.amount_base) for o in locked.orders] == [
        ("BTC/USDT", "sell", D("1.49")), ("ETH/USDT", "buy", D("24.5"))]
    assert locked.skipped == ()


def test_free_equal_to_total_plans_exactly_what_no_free_figure_plans() -> None:
    """A normal run (nothing locked: free = total) sends the same orders as before free amounts existed."""
    for targets in ({}, {"BTC/USDT": 0.2}, {"BTC/USDT": 0.9, "ETH/USDT": 0.05}, {"ETH/USDT": 1.0}):
        held = {"BTC/USDT": 1.234567, "ETH/USDT": 7.77}
        assert plan_with(targets, held, dict(held), cash=120.0) == plan_with(targets, held, None, cash=120.0)


class LockedBalanceClient(BalanceClient):
    def fetch_balance(self) -> dict[str, Any]:  # ccxt's layout: a person's open order locks 0.2 ETH
        return {"USDT": {"free": 600.0, "used": 0.0, "total": 600.0},
                "ETH": {"free": 0.3, "used": 0.2, "total": 0.5}, "total": {"USDT": 600.0, "ETH": 0.5}}


def test_ccxt_holdings_report_the_free_coins_and_the_total_as_held() -> None:
    held = CcxtVenue(LockedBalanceClient()).fetch_holdings()
    assert held.amounts_base == {"ETH/USDT": 0.5} and held.free_base == {"ETH/USDT": 0.3}
    assert held.free_of("ETH/USDT") == 0.3
    plain = CcxtVenue(BalanceClient()).fetch_holdings()  # a reply without "free": all of it is free
    assert plain.free_base is None and plain.free_of("ETH/USDT") == 0.5

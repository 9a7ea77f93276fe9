"""lib/execution/order_split.py: split children respect our own minimum order (orders.min_order_notional_quote) as
well as the exchange's; before, only the exchange minimum applied to children. Hand-computed at BTC = 100 USDT,
step 0.001, exchange min notional 5 (tests.unit.execution.test_order_split.MARKETS)."""

from __future__ import annotations

from decimal import Decimal

from lib.core.venue import Holdings
from lib.execution.order_split import split_reducing_orders
from lib.execution.orders import SKIP_MIN_NOTIONAL, OrderParams, OrderPlan, plan_orders
from tests.unit.execution.test_order_split import MARKETS, PRICES

D = Decimal


def split(held_btc: float, *, cap: str, our_min: str) -> OrderPlan:
    holdings = Holdings(cash_quote=0.0, amounts_base={"BTC/USDT": held_btc})
    params = OrderParams(min_order_notional_quote=D(our_min))
    raw = plan_orders(target_weights={}, holdings=holdings, prices=PRICES, markets=MARKETS,
                      equity_quote=held_btc * 100, params=params, rebalance_id="r-1")
    return split_reducing_orders(raw, holdings=holdings, markets=MARKETS, max_order_notional_quote=D(cap),
                                 rebalance_id="r-1", prefix="cb", min_order_notional_quote=D(our_min))


def test_equal_children_below_our_minimum_become_cap_sized_and_the_small_rest_is_a_recorded_skip() -> None:
    # exit 1.1 BTC = 110 USDT, cap 100: equal children 2 x 0.55 = 55 USDT < our 60 (the exchange's 5 passes).
    # Instead: 1 child of floor(100 / 100) = 1.000 BTC (100 USDT); the rest 0.1 BTC = 10 USDT < 60, and 1.1 BTC
    # in one child would be 110 > the cap: kept, recorded
    result = split(1.1, cap="100", our_min="60")
    assert [(o.amount_base, o.notional_quote) for o in result.orders] == [(D("1.000"), D("100.000"))]
    assert [(s.symbol, s.reason) for s in result.skipped] == [("BTC/USDT", SKIP_MIN_NOTIONAL)]
    assert "split remainder 0.100" in result.skipped[0].detail and "min order 60" in result.skipped[0].detail


def test_children_above_our_minimum_are_the_same_as_without_it() -> None:
    # exit 2.2 BTC = 220 USDT, cap 100: 3 children 0.733, 0.733, 0.734 (73.3+ USDT >= 60): unchanged
    with_min, without = split(2.2, cap="100", our_min="60"), split(2.2, cap="100", our_min="0")
    assert [o.amount_base for o in with_min.orders] == [D("0.733"), D("0.733"), D("0.734")]
    assert with_min == without and with_min.skipped == ()


def test_a_cap_below_our_minimum_keeps_the_order_whole_for_the_fat_finger_check() -> None:
    # cap 50 < our minimum 60: no child can be both; the parent stays (the fat-finger check rejects it: fail closed)
    result = split(1.1, cap="50", our_min="60")
    assert [o.amount_base for o in result.orders] == [D("1.1")] and result.skipped == ()


def test_our_minimum_zero_keeps_todays_children_exactly() -> None:
    # exit 1.1 BTC at cap 100 with no minimum of ours: 2 equal children of 0.55 (55 >= the exchange's 5), as today
    result = split(1.1, cap="100", our_min="0")
    assert [o.amount_base for o in result.orders] == [D("0.55"), D("0.55")] and result.skipped == ()

"""The combined carry book's pure execution logic, hand-computed: targets split into carry pairs (C = -perp weight,
D = spot weight - C) and directional-only coins, the cap on a coin's total, the hedge as the spot above the
directional target, one spot order per coin for both parts (perp leg first), and directional-only orders."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from lib.core.errors import StateError
from lib.execution.carry_combo import (
    directional_amount,
    hedge_spot,
    naked_short_quote,
    only_reducing,
    sales_first,
    split_targets,
    spot_only_orders,
)
from lib.execution.carry_combo_risk import book_weights
from lib.execution.carry_legs import PairTarget, mismatch_orders, plan_pair
from lib.execution.risk import RiskLimits
from tests.unit.execution.test_carry_legs import PARAMS, PERP, PRICES, RULES, SPOT

LIMITS = RiskLimits(max_asset_weight_frac=0.5)
ETH = "ETH/USDT"


def test_targets_split_into_pairs_and_directional_only_coins() -> None:
    pairs, spot_only, clips = split_targets({SPOT: 0.4, PERP: -0.25, ETH: 0.1, "ETH/USDT:USDT": 0.0},
                                            held=(), hold={}, limits=LIMITS)
    assert pairs == {SPOT: PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.25,
                                      directional_weight=pytest.approx(0.15))}
    assert spot_only == {ETH: PairTarget(spot_symbol=ETH, perp_symbol="ETH/USDT:USDT", spot_weight=0.0,
                                         directional_weight=0.1)}
    assert clips == []


def test_held_coins_without_targets_are_closed_and_a_held_short_makes_a_pair() -> None:
    pairs, spot_only, _ = split_targets({SPOT: 0.0}, held=("BTC/USDT:USDT", "XRP/USDT"), hold={}, limits=LIMITS)
    assert pairs[SPOT].spot_weight == pairs[SPOT].directional_weight == 0.0
    assert spot_only["XRP/USDT"].directional_weight == 0.0 and ETH not in spot_only


def test_held_on_purpose_coins_are_left_out() -> None:
    pairs, spot_only, _ = split_targets({SPOT: 0.4, PERP: -0.25, ETH: 0.1}, held=(), hold={SPOT: "late"},
                                        limits=LIMITS)
    assert pairs == {} and set(spot_only) == {ETH}


def test_a_coin_over_the_cap_loses_directional_weight_first() -> None:
    pairs, _, clips = split_targets({SPOT: 0.7, PERP: -0.3}, held=(), hold={}, limits=LIMITS)
    assert pairs[SPOT].spot_weight == 0.3 and pairs[SPOT].directional_weight == pytest.approx(0.2)  # 0.5 - 0.3
    assert [c.symbol for c in clips] == [SPOT]


@pytest.mark.parametrize("weights", [{SPOT: 0.2, PERP: -0.3}, {SPOT: -0.1}, {PERP: -0.1}, {SPOT: 0.2, PERP: 0.1}])
def test_weights_that_leave_a_short_unhedged_are_refused(weights: dict[str, float]) -> None:
    with pytest.raises(StateError):
        split_targets(weights, held=(), hold={}, limits=LIMITS)


def test_the_directional_amount_is_floored_to_the_spot_lot() -> None:
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.25, directional_weight=0.15)
    # 0.15 x 1,000 / 20,000 = 0.0075 BTC on the 0.00001 grid
    assert directional_amount(pair, sizing_quote=1000, spot_price=20_000, step=D("0.00001")) == D("0.0075")
    assert directional_amount(pair, sizing_quote=1000, spot_price=30_000, step=D("0.001")) == D("0.005")  # 0.005
    assert directional_amount(PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.2),
                              sizing_quote=1000, spot_price=20_000, step=D("0.001")) == 0


def test_the_hedge_is_the_spot_above_the_directional_target() -> None:
    assert hedge_spot(D("0.03"), D("0.01")) == D("0.02")
    assert hedge_spot(D("0.005"), D("0.01")) == 0  # a directional shortfall is no negative hedge
    assert naked_short_quote(D("0.01"), D("-0.03"), 20_000.0) == D("400")  # 0.02 BTC of the short uncovered
    assert naked_short_quote(D("0.05"), D("-0.03"), 20_000.0) == 0


def test_one_spot_order_for_both_parts_perp_leg_first() -> None:
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.3, directional_weight=0.2)
    orders, skipped = plan_pair(pair, amount=D("0.015"), spot_held=D("0.002"), perp_held=D(0), prices=PRICES,
                                rules=RULES, params=PARAMS, rebalance_id="combined-1", prefix="cb",
                                directional_amount=D("0.01"))
    assert skipped == []
    assert [(o.symbol, o.side, o.amount_base) for o in orders] == [(PERP, "sell", D("0.015")),
                                                                    (SPOT, "buy", D("0.023"))]  # 0.015 + 0.01 - 0.002


def test_a_directional_sale_stops_at_the_hedge() -> None:
    """Held 0.025 BTC spot against a 0.015 short; the directional target drops to 0: sell 0.01, keep the hedge."""
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.3, directional_weight=0.0)
    orders, _ = plan_pair(pair, amount=D("0.015"), spot_held=D("0.025"), perp_held=D("-0.015"), prices=PRICES,
                          rules=RULES, params=PARAMS, rebalance_id="combined-2", prefix="cb")
    assert [(o.symbol, o.side, o.amount_base) for o in orders] == [(SPOT, "sell", D("0.01"))]


def test_a_rejected_perp_entry_is_a_mismatch_of_the_hedge_not_of_the_directional_part() -> None:
    """Perp refused, the spot order filled 0.025 (0.01 directional + 0.015 hedge): the fix is the 0.015 short,
    else selling 0.015 of spot (down to the directional part), never the directional part itself."""
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.3, directional_weight=0.2)
    fixes = mismatch_orders(pair, spot_held=hedge_spot(D("0.025"), D("0.01")), perp_held=D(0), prices=PRICES,
                            rules=RULES, params=PARAMS, rebalance_id="combined-3", prefix="cb")
    assert [(o.symbol, o.side, o.amount_base, o.reduce_only) for o in fixes] == [
        (PERP, "sell", D("0.015"), False), (SPOT, "sell", D("0.015"), False)]


def test_directional_only_coins_get_one_spot_order() -> None:
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.0, directional_weight=0.2)
    orders, skipped = spot_only_orders(pair, spot_held=D("0.002"), directional=D("0.01"), prices=PRICES,
                                       rules=RULES, params=PARAMS, rebalance_id="combined-4", prefix="cb")
    assert skipped == [] and [(o.side, o.amount_base) for o in orders] == [("buy", D("0.008"))]
    orders, skipped = spot_only_orders(pair, spot_held=D("0.0102"), directional=D("0.01"), prices=PRICES,
                                       rules=RULES, params=PARAMS, rebalance_id="combined-5", prefix="cb")
    assert orders == [] and len(skipped) == 1  # 0.0002 BTC = 4 USDT < carry.min_leg_quote: not churned
    assert spot_only_orders(pair, spot_held=D("0.01"), directional=D("0.01"), prices=PRICES, rules=RULES,
                            params=PARAMS, rebalance_id="combined-6", prefix="cb") == ([], [])


def test_a_refused_combined_book_grows_nothing() -> None:
    """Held: BTC 0.025 spot / 0.015 short (0.01 above the short = 200 USDT = 0.2 of a 1,000 book), ETH 1 spot at
    100 (0.1 of the book). The targets want more of everything: each is capped at what it holds."""
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.5, directional_weight=0.3)
    alone = PairTarget(spot_symbol=ETH, perp_symbol="ETH/USDT:USDT", spot_weight=0.0, directional_weight=0.25)
    held = {SPOT: D("0.025"), PERP: D("-0.015"), ETH: D("1")}
    pairs, spot_only = only_reducing({SPOT: pair}, {ETH: alone}, held=held,
                                     prices={SPOT: 20_000.0, ETH: 100.0}, equity=1000.0)
    assert pairs[SPOT].max_amount_base == D("0.015") and pairs[SPOT].directional_weight == pytest.approx(0.2)
    assert spot_only[ETH].directional_weight == pytest.approx(0.1)
    smaller = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.1, directional_weight=0.05,
                         max_amount_base=D("0.005"))
    pairs, _ = only_reducing({SPOT: smaller}, {}, held=held, prices={SPOT: 20_000.0}, equity=1000.0)
    assert pairs[SPOT].max_amount_base == D("0.005") and pairs[SPOT].directional_weight == 0.05  # exits still go


def test_directional_sales_go_first() -> None:
    targets = {s: PairTarget(spot_symbol=s, perp_symbol=f"{s}:USDT", spot_weight=0.0, directional_weight=w)
               for s, w in ((ETH, 0.05), ("XRP/USDT", 0.2), ("ADA/USDT", 0.0))}
    held = {ETH: D("1"), "XRP/USDT": D("100"), "ADA/USDT": D("10")}
    sells, buys = sales_first(targets, held=held, prices={ETH: 100.0, "XRP/USDT": 1.0, "ADA/USDT": 0.5},
                              equity=1000.0)  # ETH 100 > 50, ADA 5 > 0: sales; XRP 100 < 200: a buy
    assert [p.spot_symbol for p in sells] == ["ADA/USDT", ETH] and [p.spot_symbol for p in buys] == ["XRP/USDT"]


def test_the_whole_book_for_its_tail_risk_has_both_parts() -> None:
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.25, directional_weight=0.15)
    alone = PairTarget(spot_symbol=ETH, perp_symbol="ETH/USDT:USDT", spot_weight=0.0, directional_weight=0.1)
    closed = PairTarget(spot_symbol="XRP/USDT", perp_symbol="XRP/USDT:USDT", spot_weight=0.0)
    assert book_weights({SPOT: pair}, {ETH: alone, "XRP/USDT": closed}) == {SPOT: 0.4, PERP: -0.25, ETH: 0.1}

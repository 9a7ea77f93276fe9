"""The pure carry-pair logic with hand-computed numbers: common lot grid, leg sizes and order, the mismatch fixes,
collateral from the short legs' initial margin, and the transfer plan."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from lib.core.errors import DataError, StateError
from lib.core.venue import MarketRules
from lib.execution.carry_legs import (
    SKIP_BELOW_MIN_LEG,
    CarrySection,
    PairTarget,
    collateral_needed,
    common_step,
    mismatch_orders,
    pair_amount,
    pair_targets,
    plan_pair,
    plan_transfer,
    transfer_id,
    unhedged_quote,
)
from lib.execution.orders import PlannedOrder, client_order_id

SPOT, PERP = "BTC/USDT", "BTC/USDT:USDT"
RULES = {
    SPOT: MarketRules(symbol=SPOT, base="BTC", quote="USDT", is_perpetual=False, amount_step=D("0.00001"),
                      price_step=D("0.01"), min_amount_base=D("0.00001"), max_amount_base=None,
                      min_notional_quote=D("5")),
    PERP: MarketRules(symbol=PERP, base="BTC", quote="USDT", is_perpetual=True, amount_step=D("0.001"),
                      price_step=D("0.1"), min_amount_base=D("0.001"), max_amount_base=None,
                      min_notional_quote=D("100")),
}
PRICES = {SPOT: 20_000.0, PERP: 20_010.0}
PAIR = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.3)
PARAMS = CarrySection()


def plan(amount: str, spot: str, perp: str) -> tuple[list[PlannedOrder], list]:
    return plan_pair(PAIR, amount=D(amount), spot_held=D(spot), perp_held=D(perp), prices=PRICES, rules=RULES,
                     params=PARAMS, rebalance_id="funding_carry-1", prefix="cb")


def test_pairs_from_targets_need_the_perp_at_minus_the_spot_weight() -> None:
    assert pair_targets({SPOT: 0.3, PERP: -0.3}) == [PAIR]
    with pytest.raises(StateError, match="perp weight = -spot"):
        pair_targets({SPOT: 0.3, PERP: -0.2})
    with pytest.raises(StateError, match="without a spot leg"):
        pair_targets({PERP: -0.3})


def test_the_common_lot_step_is_the_coarser_one_when_it_fits_both() -> None:
    assert common_step(D("0.00001"), D("0.001")) == D("0.001")
    with pytest.raises(DataError, match="share no grid"):
        common_step(D("0.003"), D("0.002"))


def test_pair_amount_floors_weight_times_equity_over_price_to_the_common_step() -> None:
    # 0.3 x 1000 / 20000 = 0.015; 0.3 x 1000 / 70000 = 0.0042857.. -> 0.004
    assert pair_amount(PAIR, sizing_quote=1000.0, spot_price=20_000.0, step=D("0.001")) == D("0.015")
    assert pair_amount(PAIR, sizing_quote=1000.0, spot_price=70_000.0, step=D("0.001")) == D("0.004")


def test_opening_a_pair_sends_the_perp_short_first_then_the_spot_buy() -> None:
    orders, skipped = plan("0.015", "0", "0")
    assert skipped == []
    assert [(o.symbol, o.side, o.amount_base, o.reduce_only) for o in orders] == [
        (PERP, "sell", D("0.015"), False), (SPOT, "buy", D("0.015"), False)]
    assert orders[0].notional_quote == D("300.150")  # 0.015 x 20010
    assert orders[1].notional_quote == D("300.000")
    assert orders[0].client_order_id == client_order_id("funding_carry-1", PERP, "sell", D("0.015"), prefix="cb")


def test_closing_a_pair_buys_the_perp_back_reduce_only_first_then_sells_the_spot() -> None:
    orders, _ = plan("0", "0.015", "-0.015")
    assert [(o.symbol, o.side, o.amount_base, o.reduce_only) for o in orders] == [
        (PERP, "buy", D("0.015"), True), (SPOT, "sell", D("0.015"), False)]


def test_a_resize_below_the_market_minimum_is_skipped_with_its_reason() -> None:
    orders, skipped = plan("0.015", "0.015", "-0.014")  # perp short 0.001 more = 20.01 quote < 100 minimum
    assert orders == [] and [(s.symbol, s.reason) for s in skipped] == [(PERP, SKIP_BELOW_MIN_LEG)]


def test_a_long_perp_is_not_a_carry_pair() -> None:
    with pytest.raises(DataError, match="not a carry pair"):
        plan("0.015", "0", "0.001")


def test_unhedged_notional_is_the_net_base_at_the_spot_price() -> None:
    assert unhedged_quote(D("0.015"), D("-0.010"), 20_000.0) == D("100.000")  # 0.005 x 20000
    assert unhedged_quote(D("0.015"), D("-0.015"), 20_000.0) == 0


def test_mismatch_fixes_retry_the_missing_leg_first_then_unwind_the_filled_one() -> None:
    def fixes(spot: str, perp: str) -> list[tuple[str, str, D, bool]]:
        return [(o.symbol, o.side, o.amount_base, o.reduce_only) for o in mismatch_orders(
            PAIR, spot_held=D(spot), perp_held=D(perp), prices=PRICES, rules=RULES, params=PARAMS,
            rebalance_id="funding_carry-1", prefix="cb")]

    assert fixes("0", "-0.015") == [(SPOT, "buy", D("0.015"), False), (PERP, "buy", D("0.015"), True)]
    assert fixes("0.015", "0") == [(PERP, "sell", D("0.015"), False), (SPOT, "sell", D("0.015"), False)]
    # 0.0005 BTC of spot dust: under the perp's 0.001 step, so only the spot excess can go (10 quote >= 5 minimum)
    assert fixes("0.0155", "-0.015") == [(SPOT, "sell", D("0.0005"), False)]
    assert fixes("0.015", "-0.015") == []


def test_collateral_is_initial_margin_at_the_configured_leverage_plus_the_buffer() -> None:
    # (300.15 / 3 + 200 / 3) x 1.5 = 250.075 -> 250.08 (rounded up to the cent)
    assert collateral_needed({PERP: 300.15, "ETH/USDT:USDT": 200.0}, PARAMS) == D("250.08")
    assert collateral_needed({PERP: 0.0}, PARAMS) == 0
    with pytest.raises(DataError, match="no margin tiers"):
        collateral_needed({"DOGE/USDT:USDT": 100.0}, PARAMS)
    with pytest.raises(DataError, match="beyond the tiers"):
        collateral_needed({PERP: 300_000.0}, PARAMS)


def test_transfer_plan_tops_up_returns_only_beyond_the_buffer_and_skips_small_moves() -> None:
    def planned(futures: str, needed: str, spot: str = "1000") -> tuple[D, str, str] | None:
        found = plan_transfer(futures_balance_quote=D(futures), needed_quote=D(needed), spot_free_quote=D(spot),
                              params=PARAMS, rebalance_id="r")
        return None if found is None else (found.amount_quote, found.from_wallet, found.to_wallet)

    assert planned("0", "250.08") == (D("250.08"), "spot", "futures")
    assert planned("0", "250.08", spot="100") == (D("100.00"), "spot", "futures")  # what spot has
    assert planned("249.44", "249.72") is None  # 0.28 < min 5
    # excess 349.92 beyond the buffer 0.5 x 250.08 = 125.04 -> 224.88 back to spot
    assert planned("600", "250.08") == (D("224.88"), "futures", "spot")
    assert planned("300", "250.08") is None  # excess 49.92 <= 125.04


def test_a_spot_shortfall_takes_the_futures_excess_above_the_need_without_the_hysteresis() -> None:
    """Futures 300 against a need of 250.08 (inside the band: nothing comes back on its own). Spot short of 20.004:
    20.01 back (up to the cent); short of 80: only the 49.92 above the need; short of 2: the 5 minimum; excess 3.92
    (254 held): below the 5 minimum, nothing. Beyond the band (600) the hysteresis return 224.88 is at least what
    comes back; short of 300 there: 300; of 400: 349.92, down to the need."""
    def planned(futures: str, release: str) -> tuple[D, str, str] | None:
        found = plan_transfer(futures_balance_quote=D(futures), needed_quote=D("250.08"), spot_free_quote=D(1000),
                              params=PARAMS, rebalance_id="r", release_quote=D(release))
        return None if found is None else (found.amount_quote, found.from_wallet, found.to_wallet)

    assert planned("300", "0") is None
    assert planned("300", "20.004") == (D("20.01"), "futures", "spot")
    assert planned("300", "80") == (D("49.92"), "futures", "spot")
    assert planned("300", "2") == (D(5), "futures", "spot")
    assert planned("254", "80") is None
    assert planned("600", "20") == (D("224.88"), "futures", "spot")
    assert planned("600", "300") == (D("300.00"), "futures", "spot")
    assert planned("600", "400") == (D("349.92"), "futures", "spot")
    assert planned("200", "80") == (D("50.08"), "spot", "futures")  # below the need: the top-up, as always
    found = plan_transfer(futures_balance_quote=D(300), needed_quote=D("250.08"), spot_free_quote=D(0),
                          params=PARAMS, rebalance_id="r", release_quote=D(80))
    assert found is not None and found.transfer_id == transfer_id("r", "futures", "spot", D("49.92"))


def test_transfer_ids_are_deterministic_per_rebalance_direction_and_amount() -> None:
    first = transfer_id("r", "spot", "futures", D("250.00"))
    assert first == transfer_id("r", "spot", "futures", D("250")) and first.startswith("tr-")
    assert first != transfer_id("r", "futures", "spot", D("250")) != transfer_id("r2", "spot", "futures", D("250"))
    with pytest.raises(DataError):
        transfer_id("r", "spot", "spot", D("1"))

"""The carry book's pre-trade risk decisions (lib.execution.carry_risk), against hand-computed cases."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from lib.core.short_margin import assess_short
from lib.execution.carry_legs import pair_amount, pair_targets
from lib.execution.carry_risk import (
    check_targets,
    cut_unsafe,
    guard_top_up,
    leg_weights,
    reduce_only,
    would_hold,
)
from lib.execution.risk import RiskLimits

PAIRS = {p.spot_symbol: p for p in pair_targets({"BTC/USDT": 0.3, "BTC/USDT:USDT": -0.3, "ETH/USDT": 0.2,
                                                 "ETH/USDT:USDT": -0.2})}
DAYS = np.arange(31) * 86_400_000
FLAT = pd.Series(100.0, index=DAYS)
JUMP = pd.Series([100.0] * 30 + [130.0], index=DAYS)  # the perp alone +30 % on the last day: a basis move
TAIL = {"tail_risk_action": "scale", "max_var_99_frac": 0.03, "max_cvar_99_frac": 0.05}

# XYZ has no kept margin tiers: maintenance rate 5 %, no amount. A 1-unit short at 100 on 10 of margin:
# L = (10 + 100) / 1.05 = 104.762; ln(L / P) = 0.04652; sigma 0.1 -> P(24 h) = 2 (1 - Phi(0.4652)) = 64 %.
# The 0.5 % limit needs L* = 100 exp(0.1 x Phi^-1(0.9975) = 0.2807034) = 132.4061:
# collateral = L* x 1.05 - 100 - 10 = 29.0264; safe short = 10 / (132.4061 x 1.05 - 100) = 0.25624.
SHORT = assess_short("XYZ/USDT:USDT", 1.0, 100.0, 10.0, 0.1, max_probability=0.005, fallback_rate=0.05)


def test_the_hand_computed_short() -> None:
    assert SHORT.liquidation_price == pytest.approx(104.7619, abs=1e-4)
    assert SHORT.liquidation_prob_24h == pytest.approx(0.6418, abs=1e-3)
    assert SHORT.collateral_needed_quote == pytest.approx(29.0264, abs=1e-3)
    assert SHORT.safe_quantity == pytest.approx(0.25624, abs=1e-5)


def test_guard_top_up_is_the_largest_need_with_the_buffer_and_the_minimum() -> None:
    # cross margin: the largest single need (29.0264) covers both; x 1.5 = 43.5396 -> up to the cent 43.54 + 0.01
    smaller = assess_short("XYZ/USDT:USDT", 0.5, 100.0, 10.0, 0.1, max_probability=0.005, fallback_rate=0.05)
    assert 0 < smaller.collateral_needed_quote < SHORT.collateral_needed_quote
    assert guard_top_up([SHORT, smaller], buffer_frac=0.5, min_quote=Decimal(5)) == Decimal("43.55")
    assert guard_top_up([SHORT], buffer_frac=0.0, min_quote=Decimal(50)) == Decimal(50)
    safe = assess_short("XYZ/USDT:USDT", 1.0, 100.0, 100.0, 0.01, max_probability=0.005, fallback_rate=0.05)
    assert not safe.breaches and guard_top_up([safe], buffer_frac=0.5, min_quote=Decimal(5)) == 0


def test_cut_unsafe_cuts_both_legs_to_the_safe_size_on_the_lot_grid() -> None:
    pairs = {p.spot_symbol: p for p in pair_targets({"XYZ/USDT": 0.5, "XYZ/USDT:USDT": -0.5})}
    cut, rejections = cut_unsafe(pairs, [SHORT], prices={"XYZ/USDT": 100.0}, sizing_quote=200.0,
                                 steps={"XYZ/USDT": Decimal("0.01")}, limit=0.005)
    # safe 0.25624 -> 0.25 per leg = 25 of 200 sized: spot weight 0.125 (the perp leg follows: -0.125)
    assert cut["XYZ/USDT"].spot_weight == pytest.approx(0.125) and cut["XYZ/USDT"].max_amount_base == Decimal("0.25")
    assert leg_weights(cut) == pytest.approx({"XYZ/USDT": 0.125, "XYZ/USDT:USDT": -0.125})
    assert [(r.check, r.symbol) for r in rejections] == [("liquidation_risk", "XYZ/USDT:USDT")]


def test_would_hold_is_the_larger_of_held_and_target_on_the_grid() -> None:
    held = {"BTC/USDT:USDT": Decimal("-0.002"), "ETH/USDT:USDT": Decimal("-0.5"), "BTC/USDT": Decimal("0.002")}
    amounts = would_hold(PAIRS, held, sizing_quote=1000.0, prices={"BTC/USDT": 100_000.0, "ETH/USDT": 1000.0},
                         steps={"BTC/USDT": Decimal("0.001"), "ETH/USDT": Decimal("0.01")})
    # BTC target 300 / 100 000 = 0.003 > held 0.002; ETH target 200 / 1000 = 0.2 < held 0.5
    assert amounts == {"BTC/USDT:USDT": Decimal("-0.003"), "ETH/USDT:USDT": Decimal("-0.5")}


def test_the_hedged_book_is_scaled_on_its_basis_risk() -> None:
    # book return on the last day: 0.3 x 0 - 0.3 x 30 % = -9 %, every other day 0 (ETH's legs move together).
    # Historical 99 % VaR of 30 days = the worst = 9 %, CVaR 9 % (Gaussian: 4.1 % / 4.7 %): scale min(3/9, 5/9)
    closes = {"BTC/USDT": FLAT, "ETH/USDT": FLAT, "BTC/USDT:USDT": JUMP, "ETH/USDT:USDT": FLAT}
    checked = check_targets(PAIRS, closes, RiskLimits(**TAIL), current={})
    assert {s: p.spot_weight for s, p in checked.pairs.items()} == pytest.approx({"BTC/USDT": 0.1,
                                                                                   "ETH/USDT": 0.2 / 3})
    assert [r.check for r in checked.changed] == ["tail_risk_scaled"] and checked.refusals == ()


def test_legs_that_move_together_carry_no_tail_risk() -> None:
    closes = {"BTC/USDT": JUMP, "ETH/USDT": FLAT, "BTC/USDT:USDT": JUMP, "ETH/USDT:USDT": FLAT}
    checked = check_targets(PAIRS, closes, RiskLimits(**TAIL), current={})  # spot-only VaR would be 9 %: hedged 0
    assert checked.pairs == PAIRS and checked.changed == () and checked.refusals == ()


def test_a_refused_book_only_shrinks() -> None:
    refuse = RiskLimits(**{**TAIL, "tail_risk_action": "refuse"})
    closes = {"BTC/USDT": FLAT, "ETH/USDT": FLAT, "BTC/USDT:USDT": JUMP, "ETH/USDT:USDT": FLAT}
    checked = check_targets(PAIRS, closes, refuse, current={"BTC/USDT": 0.1, "ETH/USDT": 0.4},  # refused: capped
                            held={"BTC/USDT": Decimal("0.001"), "ETH/USDT": Decimal("0.4")})
    assert [r.check for r in checked.refusals] == ["tail_risk"]
    assert {s: p.max_amount_base for s, p in checked.pairs.items()} == {"BTC/USDT": Decimal("0.001"),
                                                                         "ETH/USDT": Decimal("0.4")}
    unknown = check_targets(PAIRS, {"BTC/USDT": FLAT}, refuse, current={})  # no perp history: unknown = refused
    assert [r.check for r in unknown.refusals] == ["tail_risk"]
    assert all(p.max_amount_base == 0 for p in unknown.pairs.values())  # nothing held: nothing bought


def test_the_asset_cap_clips_both_legs_and_exposure_refuses_growth() -> None:
    limits = RiskLimits(max_asset_weight_frac=0.25, tail_risk_action="off")
    checked = check_targets(PAIRS, {}, limits, current={})
    assert leg_weights(checked.pairs)["BTC/USDT:USDT"] == pytest.approx(-0.25)
    assert checked.pairs["BTC/USDT"].spot_weight == pytest.approx(0.25)
    assert [(r.check, r.symbol) for r in checked.changed] == [("asset_weight_clipped", "BTC/USDT"),
                                                                ("asset_weight_clipped", "BTC/USDT:USDT")]
    tight = RiskLimits(max_gross_exposure_frac=0.4, tail_risk_action="off")  # spot gross 0.5 > 0.4, grown from 0.1
    refused = check_targets(PAIRS, {}, tight, current={"BTC/USDT": 0.1}, held={"BTC/USDT": Decimal("0.003")})
    assert [r.check for r in refused.refusals] == ["exposure"]
    assert {s: p.max_amount_base for s, p in refused.pairs.items()} == {"BTC/USDT": Decimal("0.003"),
                                                                         "ETH/USDT": Decimal(0)}


def test_a_refused_pair_is_capped_at_its_held_amount() -> None:
    # held 0.02 ETH: the target 0.4 x 1000 / 7113.24 = 0.0562 -> 0.05 is capped at 0.02 (no growth); a target below
    # it still trades (0.01 x 1000 / 7113.24 = 0.0014 -> 0: the exit goes)
    pair = {p.spot_symbol: p for p in pair_targets({"ETH/USDT": 0.4, "ETH/USDT:USDT": -0.4})}
    capped = reduce_only(pair, {"ETH/USDT": Decimal("0.02")})["ETH/USDT"]
    assert capped.spot_weight == 0.4 and capped.max_amount_base == Decimal("0.02")
    assert pair_amount(capped, sizing_quote=1000.0, spot_price=7113.24, step=Decimal("0.01")) == Decimal("0.02")
    smaller = replace(capped, spot_weight=0.01)
    assert pair_amount(smaller, sizing_quote=1000.0, spot_price=7113.24, step=Decimal("0.01")) == Decimal(0)

"""lib.core.short_margin against hand-computed cases (values worked out step by step in the comments)."""

from __future__ import annotations

import math

import pytest

from lib.core.errors import DataError
from lib.core.short_margin import assess_short, assess_shorts

BTC = "BTC/USDT:USDT"


def test_a_safe_short_hand_computed() -> None:
    # 0.1 BTC short @ 50 000 = 5 000 notional: tier 1, MMR 0.4 %, amount 0 -> maintenance 20; balance 500
    # ratio 20 / 500 = 0.04; L = (500 + 5 000) / (0.1 x 1.004) = 54 780.8765; b = ln(L / 50 000) = 0.0913182
    # sigma 3 %: P = 2 (1 - Phi(0.0913182 / 0.03 = 3.04394)) = 0.0023350 <= 0.5 %: nothing to do
    short = assess_short(BTC, 0.1, 50_000.0, 500.0, 0.03, max_probability=0.005, fallback_rate=0.05)
    assert short.maintenance_margin_quote == pytest.approx(20.0)
    assert short.margin_ratio == pytest.approx(0.04)
    assert short.liquidation_price == pytest.approx(54_780.8765, abs=1e-3)
    assert short.liquidation_prob_24h == pytest.approx(0.0023350, abs=1e-7)
    assert not short.breaches and short.safe_quantity == 0.1 and short.collateral_needed_quote == 0.0


def test_a_short_near_liquidation_hand_computed() -> None:
    # the same short at sigma 5 %: P = 2 (1 - Phi(1.826363)) = 0.0677956 > 0.5 %
    # b* = 0.05 x Phi^-1(1 - 0.0025) = 0.05 x 2.807034 = 0.1403517; L* = 50 000 e^b* = 57 533.920
    # Q' = (500 + 0) / (57 533.920 x 1.004 - 50 000) = 0.0643993 (3 220 notional: still tier 1)
    # collateral = 57 533.920 x 0.1 x 1.004 - 5 000 - 0 - 500 = 276.406
    short = assess_short(BTC, 0.1, 50_000.0, 500.0, 0.05, max_probability=0.005, fallback_rate=0.05)
    assert short.liquidation_prob_24h == pytest.approx(0.0677956, abs=1e-7)
    assert short.breaches
    assert short.safe_quantity == pytest.approx(0.0643993, abs=1e-7)
    assert short.collateral_needed_quote == pytest.approx(276.406, abs=1e-3)
    # either remedy brings the probability to the limit exactly
    smaller = assess_short(BTC, short.safe_quantity, 50_000.0, 500.0, 0.05, max_probability=0.005, fallback_rate=0.05)
    funded = assess_short(BTC, 0.1, 50_000.0, 500.0 + short.collateral_needed_quote, 0.05, max_probability=0.005,
                          fallback_rate=0.05)
    assert smaller.liquidation_prob_24h == pytest.approx(0.005, rel=1e-9)
    assert funded.liquidation_prob_24h == pytest.approx(0.005, rel=1e-9)


def test_cross_margin_charges_the_other_positions_maintenance() -> None:
    # ETH long 1 @ 3 000: MMR 0.5 % -> 15 maintenance; the BTC short may lose 500 - 15 = 485
    # L = (485 + 5 000) / 0.1004 = 54 631.474
    shorts = assess_shorts({BTC: -0.1, "ETH/USDT:USDT": 1.0, "SOL/USDT": 5.0},
                           {BTC: 50_000.0, "ETH/USDT:USDT": 3_000.0, "SOL/USDT": 100.0}, 500.0, {BTC: 0.03},
                           max_probability=0.005, fallback_rate=0.05)
    assert [s.symbol for s in shorts] == [BTC]
    assert shorts[0].margin_balance_quote == pytest.approx(485.0)
    assert shorts[0].liquidation_price == pytest.approx(5_485.0 / 0.1004)


def test_a_coin_without_tiers_uses_the_fallback_rate() -> None:
    # SOL short 2 @ 100 = 200 notional at 5 %: maintenance 10; L = (100 + 200) / (2 x 1.05) = 142.857
    short = assess_short("SOL/USDT:USDT", 2.0, 100.0, 100.0, 0.05, max_probability=0.005, fallback_rate=0.05)
    assert short.maintenance_margin_quote == pytest.approx(10.0)
    assert short.liquidation_price == pytest.approx(300.0 / 2.1)


def test_under_water_and_unknown_risk() -> None:
    gone = assess_short(BTC, 0.1, 50_000.0, -6_000.0, 0.05, max_probability=0.005, fallback_rate=0.05)
    assert gone.liquidation_prob_24h == 1.0 and gone.safe_quantity == 0.0 and math.isinf(gone.margin_ratio)
    with pytest.raises(DataError, match="volatility"):
        assess_shorts({BTC: -0.1}, {BTC: 50_000.0}, 500.0, {}, max_probability=0.005, fallback_rate=0.05)
    with pytest.raises(DataError, match="no price"):
        assess_shorts({BTC: -0.1}, {}, 500.0, {BTC: 0.03}, max_probability=0.005, fallback_rate=0.05)

"""VaR / CVaR and the 24 h liquidation probability against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib.core import perp_margin, tail_risk
from lib.core.errors import DataError

# 20 days: five losing days (-5 % .. -1 %) and fifteen +1 % days
RETURNS = np.array([-0.05, -0.04, -0.03, -0.02, -0.01] + [0.01] * 15)


def test_historical_var_is_an_observed_loss_and_cvar_the_mean_beyond_it() -> None:
    # 5 % of 20 days = 1 day: the worst loss; 10 % = 2 days: the second worst, CVaR = mean of the two worst
    assert tail_risk.historical_var_cvar(RETURNS, 0.95) == pytest.approx((0.05, 0.05))
    assert tail_risk.historical_var_cvar(RETURNS, 0.90) == pytest.approx((0.04, 0.045))


def test_gaussian_var_cvar_by_hand() -> None:
    # z(0.99) = 2.326348, phi(z) = 0.026652: VaR = 0.02 z, CVaR = 0.02 phi / 0.01; the mean shifts both
    var, cvar = tail_risk.gaussian_var_cvar(0.0, 0.02, 0.99)
    assert var == pytest.approx(0.02 * 2.326348, abs=1e-6)
    assert cvar == pytest.approx(0.02 * 0.026652 / 0.01, abs=1e-5)
    shifted = tail_risk.gaussian_var_cvar(0.001, 0.02, 0.99)
    assert shifted == pytest.approx((var - 0.001, cvar - 0.001))


def test_cornish_fisher_is_gaussian_without_skew_and_widens_with_negative_skew() -> None:
    assert tail_risk.cornish_fisher_z(0.95, 0.0, 0.0) == pytest.approx(1.644854, abs=1e-6)
    # S = -1, K = 0: q = -1.644854, q + (q^2 - 1)(-1)/6 - (2q^3 - 5q)/36 = -1.929111 + 0.018790 = -1.910321
    assert tail_risk.cornish_fisher_z(0.95, -1.0, 0.0) == pytest.approx(1.910321, abs=1e-5)
    # fat tails (K = 3) at 99 %: q = -2.326348, + (q^3 - 3q) * 3 / 24 = + (-12.589936 + 6.979044) / 8 = -0.701362
    assert tail_risk.cornish_fisher_z(0.99, 0.0, 3.0) == pytest.approx(2.326348 + 0.701362, abs=1e-5)
    var, cvar = tail_risk.cornish_fisher_var_cvar(0.0, 0.02, 0.0, 0.0, 0.99)
    gauss = tail_risk.gaussian_var_cvar(0.0, 0.02, 0.99)
    assert var == pytest.approx(gauss[0]) and cvar == pytest.approx(gauss[1], rel=2e-3)  # midpoint-rule CVaR


def test_book_tail_risk_of_a_weight_vector() -> None:
    returns = pd.DataFrame({"A": RETURNS, "B": -RETURNS, "C": np.nan})
    # long A half, short B half = one A at full weight: the same losses as RETURNS
    risk = tail_risk.book_tail_risk({"A": 0.5, "B": -0.5, "C": 0.0}, returns)
    assert risk[0.95].historical_var == pytest.approx(0.05)
    assert risk[0.99].gaussian_var == pytest.approx(-RETURNS.mean() + RETURNS.std(ddof=1) * 2.326348, abs=1e-6)
    with pytest.raises(DataError, match="no return history"):
        tail_risk.book_returns({"D": 0.1}, returns)
    with pytest.raises(DataError, match=">= 20"):
        tail_risk.tail_risk(RETURNS[:19], 0.95)


def test_liquidation_probability_by_the_reflection_principle() -> None:
    # b / (sigma sqrt T) = 0.1 / 0.05 = 2: 2 (1 - Phi(2)) = 2 x 0.0227501
    assert tail_risk.liquidation_probability(0.1, 0.05) == pytest.approx(0.0455003, abs=1e-6)
    # four days: 0.1 / (0.05 x 2) = 1: 2 (1 - 0.841345)
    assert tail_risk.liquidation_probability(0.1, 0.05, horizon_days=4.0) == pytest.approx(0.317311, abs=1e-6)
    assert tail_risk.liquidation_probability(0.0, 0.05) == 1.0
    assert tail_risk.liquidation_probability(0.1, 0.0) == 0.0
    # the inverse: the buffer for 0.5 % at 5 %/day is 0.05 x Phi^-1(0.9975) = 0.05 x 2.807034
    buffer = tail_risk.buffer_for_probability(0.005, 0.05)
    assert buffer == pytest.approx(0.1403517, abs=1e-6)
    assert tail_risk.liquidation_probability(buffer, 0.05) == pytest.approx(0.005)


def test_short_buffer_from_the_binance_liquidation_price() -> None:
    # BTC short 1 unit at 100 with 50 USDT margin balance, tier 1 (MMR 0.4 %, amount 0): (50 + 100) / 1.004
    liquidation = perp_margin.short_liquidation_price("BTC", 1.0, 100.0, 50.0)
    assert liquidation == pytest.approx(150.0 / 1.004)
    assert tail_risk.short_buffer_log(100.0, liquidation) == pytest.approx(math.log(1.5 / 1.004))
    # at the liquidation price the margin balance equals the maintenance margin: ratio 1
    balance = 50.0 - 1.0 * (liquidation - 100.0)
    assert perp_margin.margin_ratio("BTC", liquidation, balance) == pytest.approx(1.0)


def test_margin_tiers_are_continuous_and_fail_closed_beyond_the_table() -> None:
    assert perp_margin.maintenance_margin("ETH", 20_000.0) == pytest.approx(20_000 * 0.0065 - 15.0)
    assert perp_margin.maintenance_margin("ETH", 10_000.0) == pytest.approx(50.0)  # both tiers agree at the cap
    assert perp_margin.maintenance_margin("XRP", 1_000.0) == pytest.approx(6.5)
    assert perp_margin.margin_ratio("BTC", 0.0, 0.0) == 0.0
    assert perp_margin.margin_ratio("BTC", 100.0, -1.0) == math.inf
    with pytest.raises(DataError, match="beyond the tiers"):
        perp_margin.tier_for("BTC", 300_000.0)
    with pytest.raises(DataError, match="no margin tiers"):
        perp_margin.tier_for("SOL", 10.0)
    with pytest.raises(DataError, match="leverage"):
        perp_margin.check_leverage("ADA", 1_000.0, 100.0)

"""Evaluation helpers of the regime research: hand-computed losses, exposure returns and bootstrap sanity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib.research.regime_study import (
    block_bootstrap_sharpe_difference,
    diebold_mariano_t,
    exposure_returns,
    forecast_losses,
)


def test_forecast_losses_score_the_next_return() -> None:
    sigma = pd.Series([0.1, 0.2, np.nan])
    returns = pd.Series([np.nan, 0.1, 0.4])
    out = forecast_losses(sigma, returns)
    assert list(out.index) == [0, 1]
    assert out.loc[0, "qlike"] == pytest.approx(math.log(0.01) + 0.01 / 0.01)
    assert out.loc[1, "qlike"] == pytest.approx(math.log(0.04) + 0.16 / 0.04)
    assert out.loc[1, "mse"] == pytest.approx((0.16 - 0.04) ** 2)


def test_diebold_mariano_sign_and_zero_lag_value() -> None:
    a, b = pd.Series([1.0, 2.0, 1.0, 2.0]), pd.Series([2.0, 2.0, 2.0, 2.0])
    # d = [-1, 0, -1, 0]: mean -0.5, population var 0.25, t = -0.5 / sqrt(0.25 / 4) = -2
    assert diebold_mariano_t(a, b, lags=0) == pytest.approx(-2.0)


def test_exposure_returns_pay_costs_on_trades() -> None:
    close = pd.Series([100.0, 110.0, 99.0, 99.0])
    weight = pd.Series([0.0, 1.0, 0.5, 0.5])
    out = exposure_returns(weight, close, cost_frac=0.01)
    # bar 1: held 0, no trade yet; bar 2: held 1 of -10 %, paid 1 % on buying 1.0 at bar 1;
    # bar 3: held 0.5 of 0 %, paid 1 % on selling 0.5 at bar 2
    assert out.tolist() == pytest.approx([0.0, 0.0, -0.1 - 0.01, -0.005])


def test_bootstrap_of_a_strategy_against_itself_is_zero() -> None:
    returns = pd.Series(np.random.default_rng(1).normal(0.001, 0.02, 300))
    out = block_bootstrap_sharpe_difference(returns, returns, n_samples=200)
    assert out["q05"] == 0.0 and out["q95"] == 0.0 and out["p_a_better"] == 0.0
    better = block_bootstrap_sharpe_difference(returns + 0.002, returns, n_samples=200)
    assert better["q05"] > 0 and better["p_a_better"] == 1.0

"""PBO (CSCV) and the deflated Sharpe ratio against cases whose answer is known by hand."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.research.protocol.overfitting import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    deflated_sharpe_report,
    expected_max_sharpe,
    probability_of_backtest_overfitting,
)
from tests.unit.research.protocol.helpers import days, noise


def _two_halves(first: tuple[float, float], second: tuple[float, float]) -> pd.DataFrame:
    """Two configs over 8 days; each half alternates mean +- 0.01 so the Sharpe is defined."""
    wiggle = np.array([0.01, -0.01, 0.01, -0.01])
    a = np.concatenate([first[0] + wiggle, second[0] + wiggle])
    b = np.concatenate([first[1] + wiggle, second[1] + wiggle])
    return pd.DataFrame({"a": a, "b": b}, index=days(8))


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample() -> None:
    # 2 blocks -> 2 combinations. a wins block 1, b wins block 2: the IS winner ranks 1 of 2 OOS,
    # omega = 1/3, logit = ln(1/2) < 0 in both combinations -> PBO = 1 exactly.
    outcome = probability_of_backtest_overfitting(_two_halves((0.005, 0.0), (0.0, 0.005)), blocks=2)
    assert outcome.pbo == 1.0
    np.testing.assert_allclose(outcome.logits, [math.log(0.5), math.log(0.5)])


def test_pbo_is_zero_for_a_dominant_column() -> None:
    # a beats b in both halves: rank 2 of 2 OOS, omega = 2/3, logit = ln 2 > 0 -> PBO = 0.
    outcome = probability_of_backtest_overfitting(_two_halves((0.005, 0.0), (0.004, 0.001)), blocks=2)
    assert outcome.pbo == 0.0
    np.testing.assert_allclose(outcome.logits, [math.log(2.0), math.log(2.0)])


def test_pbo_of_pure_noise_columns_is_about_one_half() -> None:
    # i.i.d. noise: the IS winner's OOS rank is uniform -> PBO is 0.5 on average (one sample varies a lot)
    values = [probability_of_backtest_overfitting(noise(400, 20, seed=seed), blocks=10).pbo for seed in range(20)]
    assert 0.4 <= float(np.mean(values)) <= 0.6


def test_pbo_is_near_zero_when_one_noise_column_has_a_real_edge() -> None:
    returns = noise(800, 20, seed=0)
    returns["c3"] += 0.003  # Sharpe ~ 0.3 a day: dominant
    assert probability_of_backtest_overfitting(returns, blocks=10).pbo < 0.02


def test_pbo_refuses_odd_blocks_and_a_single_column() -> None:
    with pytest.raises(ConfigError):
        probability_of_backtest_overfitting(noise(100, 3, seed=1), blocks=5)
    with pytest.raises(DataError):
        probability_of_backtest_overfitting(noise(100, 1, seed=1), blocks=4)


def test_expected_max_sharpe_matches_the_formula_by_hand() -> None:
    # N = 10, V = 0.0004 (std 0.02): Z^-1(0.9) = 1.2815516, Z^-1(1 - 1/(10e)) = Z^-1(0.9632121) = 1.7892418;
    # 0.02 * (0.4227843 * 1.2815516 + 0.5772157 * 1.7892418) = 0.02 * 1.574613 = 0.0314923
    normal = NormalDist()
    by_hand = 0.02 * ((1 - 0.5772156649) * normal.inv_cdf(0.9) + 0.5772156649 * normal.inv_cdf(1 - 1 / (10 * math.e)))
    assert expected_max_sharpe(10, 0.0004) == pytest.approx(by_hand, rel=1e-9)
    assert expected_max_sharpe(10, 0.0004) == pytest.approx(0.0314923, abs=1e-6)
    assert expected_max_sharpe(1, 0.0004) == 0.0 and expected_max_sharpe(5, 0.0) == 0.0
    assert pytest.approx(0.5772156649) == EULER_GAMMA


def test_deflated_sharpe_matches_the_formula_by_hand() -> None:
    # SR = 0.08/day, SR0 = 0.03, T = 1000, skew -0.5, kurtosis 6:
    # spread = 1 + 0.5*0.08 + 5/4*0.0064 = 1.048; z = 0.05*31.606961/1.023719 = 1.543733; Z(z) = 0.938673
    z = 0.05 * math.sqrt(999) / math.sqrt(1.048)
    assert z == pytest.approx(1.543733, abs=1e-6)
    dsr = deflated_sharpe_ratio(0.08, n_obs=1000, skew=-0.5, kurtosis=6.0, sr0=0.03)
    assert dsr == pytest.approx(NormalDist().cdf(z), rel=1e-12)
    assert dsr == pytest.approx(0.938673, abs=1e-6)


def test_deflated_sharpe_report_uses_trial_count_and_spread() -> None:
    returns = noise(500, 8, seed=3, mean=0.001)
    report = deflated_sharpe_report(returns["c0"], returns)
    sharpes = returns.mean() / returns.std(ddof=1)
    assert report["n_trials"] == 8 and report["n_obs"] == 500
    assert report["trial_sharpe_variance"] == pytest.approx(float(np.var(sharpes.to_numpy(), ddof=1)))
    assert report["sr0_per_period"] == pytest.approx(expected_max_sharpe(8, report["trial_sharpe_variance"]))
    alone = deflated_sharpe_report(returns["c0"], returns[["c0"]])  # one trial: no deflation
    assert alone["sr0_per_period"] == 0.0 and alone["dsr"] > report["dsr"]


def test_deflated_sharpe_report_with_the_project_trial_count_deflates_more() -> None:
    returns = noise(500, 8, seed=3, mean=0.001)
    mine = deflated_sharpe_report(returns["c0"], returns)
    project = deflated_sharpe_report(returns["c0"], returns, n_trials=300)
    assert project["n_trials"] == 300 and project["trial_sharpe_variance"] == mine["trial_sharpe_variance"]
    assert project["sr0_per_period"] == pytest.approx(expected_max_sharpe(300, mine["trial_sharpe_variance"]))
    assert project["sr0_per_period"] > mine["sr0_per_period"] and project["dsr"] < mine["dsr"]
    assert deflated_sharpe_report(returns["c0"], returns, n_trials=8) == mine
    with pytest.raises(ConfigError):
        deflated_sharpe_report(returns["c0"], returns, n_trials=7)  # fewer than the trials in the matrix

"""Risk model: the numpy Ledoit-Wolf and average-linkage clusters equal the kept implementations
(sklearn, scipy), effective bets by hand, and the row model's window and membership."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.covariance import ledoit_wolf

from lib.research.sleeves.risk import (
    correlation_clusters,
    effective_bets,
    ledoit_wolf_covariance,
    log_returns,
    row_risk,
    to_correlation,
)


def factor_returns(seed: int, n: int, p: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 3))
    return factors @ rng.normal(size=(3, p)) + rng.normal(size=(n, p)) * rng.uniform(0.2, 2.0, size=p)


@pytest.mark.parametrize(("seed", "n", "p"), [(0, 90, 25), (1, 30, 5), (2, 15, 20), (3, 120, 1), (4, 60, 2)])
def test_ledoit_wolf_equals_sklearn(seed, n, p):
    sample = factor_returns(seed, n, p)
    np.testing.assert_allclose(ledoit_wolf_covariance(sample), ledoit_wolf(sample)[0], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rho", [0.3, 0.5, 0.7])
def test_clusters_are_scipy_average_linkage_partition(seed, rho):
    covariance = ledoit_wolf_covariance(factor_returns(seed, 90, 12))
    ours = correlation_clusters(covariance, rho)
    distance = np.sqrt(np.clip((1 - to_correlation(covariance)) / 2, 0, 1))
    np.fill_diagonal(distance, 0.0)
    theirs = fcluster(linkage(squareform(distance, checks=False), "average"), t=math.sqrt((1 - rho) / 2),
                      criterion="distance")
    pairs = set(zip(ours.tolist(), theirs.tolist(), strict=True))
    assert len(pairs) == len(set(ours.tolist())) == len(set(theirs.tolist()))  # the same partition
    assert ours[0] == 1 and set(ours.tolist()) == set(range(1, ours.max() + 1))  # numbered by first member


def test_clusters_by_hand():
    # A and B correlate 0.9, C is independent: {A, B}, {C} at 0.7; three singletons at 0.95
    correlation = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    covariance = correlation * np.outer([0.5, 1.0, 2.0], [0.5, 1.0, 2.0])
    assert correlation_clusters(covariance, 0.7).tolist() == [1, 1, 2]
    assert correlation_clusters(covariance, 0.95).tolist() == [1, 2, 3]
    assert correlation_clusters(np.array([[0.04]]), 0.7).tolist() == [1]


def test_effective_bets_by_hand():
    identity = np.eye(4) * 0.25
    assert effective_bets(np.full(4, 0.25), identity) == pytest.approx(4.0)  # 4 equal independent bets
    assert effective_bets(np.array([1.0, 0, 0, 0]), identity) == pytest.approx(1.0)
    one_factor = np.full((4, 4), 0.25)  # perfectly correlated: shares are still equal by symmetry
    assert effective_bets(np.full(4, 0.25), one_factor) == pytest.approx(4.0)
    # two assets, weights 1 and 2, independent unit variance: contributions 1 and 4 -> shares .2/.8
    assert effective_bets(np.array([1.0, 2.0]), np.eye(2)) == pytest.approx(1 / (0.2**2 + 0.8**2))
    assert math.isnan(effective_bets(np.zeros(2), np.eye(2)))


def test_row_risk_uses_the_trailing_window_and_needs_enough_returns():
    returns = factor_returns(5, 40, 3)
    returns[:25, 2] = np.nan  # asset 2 has only 15 returns
    risk = row_risk(returns, 39, np.array([0, 1, 2]), window_bars=20, cluster_correlation=0.7, periods_per_year=365)
    assert risk is not None
    assert risk.members.tolist() == [0, 1]  # 15 of 20 < 90 %
    np.testing.assert_allclose(risk.covariance, ledoit_wolf_covariance(returns[20:40, :2]) * 365)
    assert row_risk(returns, 18, np.array([0, 1]), window_bars=20, cluster_correlation=0.7,
                    periods_per_year=365) is None  # window not full yet


@pytest.mark.parametrize("seed", range(5))
def test_log_returns_equal_pandas_ffill_formula_bit_for_bit(seed):
    """Gaps (NaN), zero and negative closes (not a price: a gap), leading gaps and all-gap columns."""
    rng = np.random.default_rng(seed)
    close = np.exp(rng.normal(0.0, 0.02, (300, 6)).cumsum(axis=0)) * 100.0
    close[rng.random(close.shape) < 0.2] = np.nan
    close[rng.random(close.shape) < 0.02] = 0.0
    close[rng.random(close.shape) < 0.02] = -1.0
    close[:40, 1] = np.nan
    close[:, 2] = np.nan
    wide = pd.DataFrame(close, columns=list("abcdef"))
    log_close = np.log(wide.where(wide > 0))
    expected = (log_close - log_close.ffill().shift(1)).to_numpy(dtype=float)
    got = log_returns(wide)
    np.testing.assert_array_equal(got, expected)
    assert got.flags["C_CONTIGUOUS"]


def test_log_returns_by_hand():
    wide = pd.DataFrame({"x": [100.0, np.nan, 121.0, 0.0, 133.1], "y": [np.nan, 50.0, 50.0, 25.0, np.nan]})
    got = log_returns(wide)
    expected = np.array([[np.nan, np.nan], [np.nan, np.nan], [math.log(1.21), 0.0], [np.nan, math.log(0.5)],
                         [math.log(1.1), np.nan]])
    np.testing.assert_allclose(got, expected, rtol=0.0, atol=1e-15)  # log(a) - log(b) vs log(a / b): last bits

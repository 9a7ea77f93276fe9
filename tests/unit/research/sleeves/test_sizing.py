"""Sizing: risk budgets, risk parity, the volatility target, the Kelly cap and the caps, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lib.core.errors import ConfigError
from lib.research.sleeves.risk import RowRisk
from lib.research.sleeves.sizing import SizingParams, risk_budgets, risk_parity_weights, size_row


def risk_of(vols: list[float], correlation: float = 0.0, clusters: list[int] | None = None) -> RowRisk:
    vol = np.asarray(vols)
    corr = np.full((vol.size, vol.size), correlation)
    np.fill_diagonal(corr, 1.0)
    labels = np.arange(1, vol.size + 1) if clusters is None else np.asarray(clusters)
    return RowRisk(members=np.arange(vol.size), covariance=corr * np.outer(vol, vol), clusters=labels)


def test_budgets_split_per_cluster_first():
    # 1 BTC-like asset alone + 3 alts in one cluster, all at full conviction: 1/2 vs 1/6 each
    budgets = risk_budgets(np.ones(4), np.array([1, 2, 2, 2]), cluster_aware=True)
    np.testing.assert_allclose(budgets, [0.5, 1 / 6, 1 / 6, 1 / 6])
    np.testing.assert_allclose(risk_budgets(np.ones(4), np.array([1, 2, 2, 2]), cluster_aware=False), [0.25] * 4)
    # conviction scales it; NaN = 0
    np.testing.assert_allclose(risk_budgets(np.array([0.5, np.nan, 1.0, 0.0]), np.array([1, 2, 2, 2]),
                                            cluster_aware=True), [0.25, 0.0, 1 / 6, 0.0])


def test_risk_parity_two_assets_is_inverse_vol_whatever_the_correlation():
    for rho in (-0.5, 0.0, 0.8):
        cov = np.array([[0.04, rho * 0.2 * 0.8], [rho * 0.2 * 0.8, 0.64]])  # vols 20 % and 80 %
        np.testing.assert_allclose(risk_parity_weights(cov, np.array([1.0, 1.0])), [0.8, 0.2], rtol=1e-9)


def test_risk_parity_contributions_follow_budgets():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    cov = a @ a.T + 0.1 * np.eye(6)
    budgets = np.array([1.0, 2.0, 3.0, 1.0, 1.0, 2.0])
    w = risk_parity_weights(cov, budgets)
    contributions = w * (cov @ w)
    np.testing.assert_allclose(contributions / contributions.sum(), budgets / budgets.sum(), rtol=1e-8)
    assert w.sum() == pytest.approx(1.0) and (w > 0).all()


def test_vol_target_scales_to_the_budget_in_use():
    # two independent assets, vols 50 % and 100 %, both full conviction, own clusters: budgets 1/2 each
    # inverse vol: direction (1, 0.5); book vol of direction = sqrt(.25 + .25) = .7071; target .4 x 1
    params = SizingParams(method="inverse_vol", target_vol_annual_frac=0.4, kelly_fraction=0.0,
                          max_asset_weight_frac=1.0)
    sized = size_row(np.array([1.0, 1.0]), risk_of([0.5, 1.0]), params)
    scale = 0.4 / np.sqrt(0.5)
    np.testing.assert_allclose(sized.weights, [scale * 1.0, scale * 0.5])
    assert sized.binding == "vol_target"
    # only the first in trend: budget 1/2 in use -> 20 % vol -> 40 % in the 50 %-vol asset
    half = size_row(np.array([1.0, 0.0]), risk_of([0.5, 1.0]), params)
    np.testing.assert_allclose(half.weights, [0.4, 0.0])


def test_kelly_cap_binds_when_the_prior_is_weak():
    # one asset, vol 80 %, conviction 1, target 40 % -> 0.5 by vol; Kelly: 0.5 x (0.25 x .8) / .64 = 0.15625
    params = SizingParams(target_vol_annual_frac=0.4, kelly_fraction=0.5, assumed_sharpe=0.25,
                          max_asset_weight_frac=1.0, cluster_aware=False)
    sized = size_row(np.array([1.0]), risk_of([0.8]), params)
    assert sized.weights[0] == pytest.approx(0.15625)
    assert sized.binding == "kelly" and sized.vol_scale == pytest.approx(0.5)


def test_asset_cap_and_no_leverage():
    capped = size_row(np.array([1.0]), risk_of([0.1]),
                      SizingParams(target_vol_annual_frac=0.4, kelly_fraction=0.0, max_asset_weight_frac=0.35))
    assert capped.weights.tolist() == [0.35] and capped.binding == "asset_cap"
    # two low-vol assets wanting 2 x 1.0 -> each capped at 1.0, then the sum scaled to 1
    params = SizingParams(method="inverse_vol", target_vol_annual_frac=1.0, kelly_fraction=0.0,
                          max_asset_weight_frac=1.0)
    book = size_row(np.array([1.0, 1.0]), risk_of([0.1, 0.1], correlation=1.0 - 1e-12), params)
    np.testing.assert_allclose(book.weights, [0.5, 0.5])
    assert book.binding == "no_leverage"


def test_nothing_wanted_is_all_cash():
    sized = size_row(np.array([0.0, np.nan]), risk_of([0.5, 0.5]), SizingParams())
    assert sized.weights.tolist() == [0.0, 0.0] and sized.binding == "none"


@pytest.mark.parametrize("kwargs", [{"method": "mean_variance"}, {"target_vol_annual_frac": 0.0},
                                    {"max_asset_weight_frac": 1.5}, {"window_bars": 5}, {"refresh_every_bars": 0},
                                    {"cluster_correlation": 1.0}, {"kelly_fraction": -1.0}])
def test_sizing_params_reject_nonsense(kwargs):
    with pytest.raises(ConfigError):
        SizingParams(**kwargs)

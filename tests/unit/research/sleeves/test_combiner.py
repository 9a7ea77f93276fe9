"""Combiner: budgets, the book volatility cap, caps, and contributions that add up (by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from lib.core.errors import ConfigError
from lib.research.sleeves.combiner import CombinerParams, combine_row, normalized_budgets


def test_budgets_are_normalized():
    assert normalized_budgets(("trend_core", "ensemble"), (3.0, 1.0)) == {"trend_core": 0.75, "ensemble": 0.25}


def test_book_is_the_budget_weighted_sum_with_contributions():
    cov = np.diag([0.25, 0.25])  # vols 50 %
    params = CombinerParams(max_book_vol_annual_frac=1.0, max_asset_weight_frac=1.0)
    row = combine_row({"trend_core": np.array([0.4, 0.0]), "ensemble": np.array([0.2, 0.6])},
                      {"trend_core": 0.75, "ensemble": 0.25}, cov, params)
    np.testing.assert_allclose(row.weights, [0.75 * 0.4 + 0.25 * 0.2, 0.25 * 0.6])  # 0.35, 0.15
    np.testing.assert_allclose(row.contributions["trend_core"], [0.3, 0.0])
    np.testing.assert_allclose(row.contributions["ensemble"], [0.05, 0.15])
    assert row.vol_scale == 1.0
    assert row.predicted_vol_annual_frac == pytest.approx(np.sqrt(0.35**2 * 0.25 + 0.15**2 * 0.25))


def test_book_vol_cap_scales_every_contribution():
    cov = np.array([[1.0]])  # 100 % vol
    params = CombinerParams(sleeves=("trend_core",), budgets=(1.0,), max_book_vol_annual_frac=0.3,
                            max_asset_weight_frac=1.0)
    row = combine_row({"trend_core": np.array([0.6])}, {"trend_core": 1.0}, cov, params)
    assert row.vol_scale == pytest.approx(0.5)
    np.testing.assert_allclose(row.weights, [0.3])
    np.testing.assert_allclose(row.contributions["trend_core"], [0.3])
    assert row.predicted_vol_annual_frac == pytest.approx(0.3)


def test_asset_cap_keeps_contributions_proportional():
    cov = np.diag([0.01, 0.01])
    params = CombinerParams(max_book_vol_annual_frac=5.0, max_asset_weight_frac=0.2)
    row = combine_row({"trend_core": np.array([0.4, 0.1]), "ensemble": np.array([0.4, 0.0])},
                      {"trend_core": 0.5, "ensemble": 0.5}, cov, params)
    np.testing.assert_allclose(row.weights, [0.2, 0.05])  # 0.4 capped at 0.2
    np.testing.assert_allclose(row.contributions["trend_core"], [0.1, 0.05])
    np.testing.assert_allclose(row.contributions["ensemble"], [0.1, 0.0])


@pytest.mark.parametrize("kwargs", [{"sleeves": ("momo",), "budgets": (1.0,)}, {"sleeves": (), "budgets": ()},
                                    {"budgets": (1.0,)}, {"budgets": (1.0, 0.0)},
                                    {"sleeves": ("trend_core", "trend_core"), "budgets": (1.0, 1.0)},
                                    {"max_book_vol_annual_frac": 0.0}, {"max_asset_weight_frac": 0.0}])
def test_combiner_params_reject_nonsense(kwargs):
    with pytest.raises(ConfigError):
        CombinerParams(**kwargs)

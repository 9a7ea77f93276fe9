"""Paired stationary block bootstrap of Sharpe(strategy) - Sharpe(benchmark): seeded, paired, covers the truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import DataError
from lib.research.protocol.bootstrap import BootstrapParams, sharpe_difference_interval, stationary_indices
from tests.unit.research.protocol.helpers import days


def _pair(seed: int, count: int = 3000) -> tuple[pd.Series, pd.Series]:
    """benchmark ~ N(0.001, 0.03) daily: Sharpe sqrt(365)/30 = 0.637; strategy = 0.5 x benchmark + own
    noise N(0.001, 0.01): mean 0.0015, std sqrt(0.015^2 + 0.01^2) = 0.018028 -> Sharpe 1.5896.
    True difference = (0.083205 - 0.033333) * 19.104973 = 0.9528."""
    rng = np.random.default_rng(seed)
    benchmark = rng.normal(0.001, 0.03, count)
    strategy = 0.5 * benchmark + rng.normal(0.001, 0.01, count)
    index = days(count, "2010-01-01")
    return pd.Series(strategy, index=index), pd.Series(benchmark, index=index)


TRUE_DIFFERENCE = (0.0015 / math.sqrt(0.015**2 + 0.01**2) - 0.001 / 0.03) * math.sqrt(365)


def test_interval_contains_the_true_difference_and_is_reproducible() -> None:
    assert pytest.approx(0.9528, abs=1e-4) == TRUE_DIFFERENCE
    strategy, benchmark = _pair(seed=7)
    params = BootstrapParams(resamples=500, mean_block_days=10, seed=11)
    interval = sharpe_difference_interval(strategy, benchmark, params)
    assert interval["low"] < TRUE_DIFFERENCE < interval["high"]
    assert interval["low"] < interval["difference"] < interval["high"]
    assert sharpe_difference_interval(strategy, benchmark, params) == interval  # seeded


def test_coverage_over_many_simulations_is_near_nominal() -> None:
    params = BootstrapParams(resamples=200, mean_block_days=5, confidence=0.9, seed=3)
    hits = [(lambda r: r["low"] < TRUE_DIFFERENCE < r["high"])(
        sharpe_difference_interval(*_pair(seed, count=1500), params)) for seed in range(30)]
    assert sum(hits) >= 22  # nominal 27 of 30; binomial 5 % tail is ~24


def test_a_series_against_itself_differs_by_exactly_zero_in_every_resample() -> None:
    strategy, _ = _pair(seed=1, count=400)
    interval = sharpe_difference_interval(strategy, strategy.copy(), BootstrapParams(resamples=100, seed=1))
    assert interval["low"] == interval["high"] == interval["difference"] == 0.0  # paired: same days drawn


def test_stationary_indices_run_in_wrapping_blocks() -> None:
    indices = stationary_indices(50, BootstrapParams(resamples=100, mean_block_days=10, seed=5))
    assert indices.shape == (100, 50) and indices.min() >= 0 and indices.max() < 50
    continues = np.diff(indices, axis=1) % 50 == 1
    assert 0.85 < continues.mean() < 0.95  # a new block starts with probability 1/10


def test_misaligned_series_are_refused() -> None:
    strategy, benchmark = _pair(seed=1, count=200)
    with pytest.raises(DataError):
        sharpe_difference_interval(strategy, benchmark.shift(1, freq="D"), BootstrapParams())

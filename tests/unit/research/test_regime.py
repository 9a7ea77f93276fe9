"""HMM regime and exposure scalers: regimes recovered on clearly two-regime data, labels stable across
refits, the forward filter checked by hand, and look-ahead (truncation leaves past probabilities
unchanged, across refits)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError
from lib.research.regime import HmmParams, filtered_probabilities, hmm_regime, regime_scale, vol_target_scale

BLOCK = 120
LAM = 0.7  # a short-memory volatility feature, so a block switch shows within ~10 bars


def two_regime_returns(n_blocks: int = 6, *, seed: int = 3) -> tuple[pd.Series, np.ndarray]:
    """Alternating blocks of calm (sd 1 %, drift +0.2 %) and wild (sd 6 %, drift -0.3 %) daily returns."""
    rng = np.random.default_rng(seed)
    calm = np.concatenate([np.full(BLOCK, k % 2 == 0) for k in range(n_blocks)])
    returns = np.where(calm, rng.normal(0.002, 0.01, len(calm)), rng.normal(-0.003, 0.06, len(calm)))
    returns[0] = np.nan
    return pd.Series(returns, index=pd.date_range("2019-01-01", periods=len(calm), freq="D")), calm


@pytest.fixture(scope="module")
def data() -> tuple[pd.Series, np.ndarray]:
    return two_regime_returns()


@pytest.fixture(scope="module")
def result(data: tuple[pd.Series, np.ndarray]):  # type: ignore[no-untyped-def]
    return hmm_regime(data[0], min_train=250, refit_every=120, lam=LAM)


def test_recovers_the_two_regimes_and_labels_state_0_calm(data, result) -> None:  # type: ignore[no-untyped-def]
    _, calm = data
    prob = result.bull_probability
    scored = prob.notna().to_numpy()
    settle = np.arange(len(calm)) % BLOCK >= 15  # the EWMA-vol feature needs a few bars after a switch
    hits = ((prob.to_numpy() > 0.5) == calm)[scored & settle]
    assert scored.sum() > 400
    assert hits.mean() > 0.95


def test_labels_are_stable_across_refits(data, result) -> None:  # type: ignore[no-untyped-def]
    assert len(result.fits) == 4 and result.failed_fit_positions == ()
    for fit in result.fits:
        return_variance = fit.covars[:, 0, 0] * fit.feature_std[0] ** 2
        assert return_variance[0] < return_variance[1] / 10
    # the calm blocks read calm right after every refit too (no flip at a refit bar)
    for fit in result.fits:
        t = fit.end_position
        assert (result.bull_probability.iloc[t] > 0.5) == data[1][t]


def test_mean_return_labelling_orders_by_drift(data) -> None:  # type: ignore[no-untyped-def]
    out = hmm_regime(data[0], min_train=250, refit_every=1000, label_by="mean_return")
    fit = out.fits[0]
    assert fit.means[0, 0] > fit.means[1, 0]


@pytest.mark.parametrize("cut", [259, 378, 379, 500])
def test_regime_has_no_look_ahead(data, result, cut: int) -> None:  # type: ignore[no-untyped-def]
    truncated = hmm_regime(data[0].iloc[:cut + 1], min_train=250, refit_every=120, lam=LAM)
    pd.testing.assert_frame_equal(truncated.probabilities, result.probabilities.iloc[:cut + 1])


def test_rolling_window_has_no_look_ahead(data) -> None:  # type: ignore[no-untyped-def]
    full = hmm_regime(data[0], min_train=250, refit_every=120, window=240)
    truncated = hmm_regime(data[0].iloc[:450], min_train=250, refit_every=120, window=240)
    pd.testing.assert_frame_equal(truncated.probabilities, full.probabilities.iloc[:450])


def test_forward_filter_by_hand() -> None:
    # 1-feature-like setup in 2-D: identity covariances, means (0,0) and (2,0), features already standardized
    params = HmmParams(end_position=0, start_position=0, feature_mean=np.zeros(2), feature_std=np.ones(2),
                       startprob=np.array([0.5, 0.5]), transmat=np.array([[0.9, 0.1], [0.2, 0.8]]),
                       means=np.array([[0.0, 0.0], [2.0, 0.0]]), covars=np.array([np.eye(2), np.eye(2)]),
                       log_likelihood=0.0)
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    out = filtered_probabilities(x, params)
    # row 0: likelihood ratio state1/state0 = exp(-2) -> P0 = 1 / (1 + e^-2)
    p0 = 1 / (1 + math.exp(-2))
    assert out[0, 0] == pytest.approx(p0)
    # row 1: prior = [p0, 1-p0] @ A; likelihood ratio state0/state1 = exp(-2)
    prior0 = 0.9 * p0 + 0.2 * (1 - p0)
    expected = prior0 * math.exp(-2) / (prior0 * math.exp(-2) + (1 - prior0))
    assert out[1, 0] == pytest.approx(expected)
    # filtered, not smoothed: appending a future row leaves the past unchanged
    longer = filtered_probabilities(np.vstack([x, [[5.0, 0.0]]]), params)
    np.testing.assert_array_equal(longer[:2], out)


def test_vol_target_scale_by_hand() -> None:
    sigma = pd.Series([0.02, 0.005, np.nan, 0.0])
    out = vol_target_scale(sigma, target_vol_annual=0.2, timeframe="1d", cap=1.0)
    assert out.iloc[0] == pytest.approx(0.2 / (0.02 * math.sqrt(365)))
    assert out.iloc[1] == 1.0  # 0.2 / 0.0955 capped
    assert out.iloc[2] == 0.0 and out.iloc[3] == 0.0  # no forecast: no exposure
    with pytest.raises(ConfigError):
        vol_target_scale(sigma, target_vol_annual=0.0, timeframe="1d")


def test_regime_scale_modes() -> None:
    p = pd.Series([0.0, 0.25, 0.8, np.nan])
    linear = regime_scale(p, floor=0.2)
    assert linear.tolist()[:3] == pytest.approx([0.2, 0.4, 0.84])
    assert linear.iloc[3] == 0.0
    step = regime_scale(p, mode="step", threshold=0.5, floor=0.1, missing=1.0)
    assert step.tolist() == [0.1, 0.1, 1.0, 1.0]


def test_gaussian_logpdf_by_hand() -> None:
    from lib.research.regime import gaussian_logpdf

    cov = np.array([[4.0, 0.0], [0.0, 1.0]])
    out = gaussian_logpdf(np.array([[0.0, 0.0], [2.0, 1.0]]), np.zeros(2), cov)
    assert out[0] == pytest.approx(-math.log(2 * math.pi) - 0.5 * math.log(4.0))
    assert out[1] == pytest.approx(-math.log(2 * math.pi) - 0.5 * math.log(4.0) - 0.5 * (1.0 + 1.0))


def test_stored_params_reproduce_the_probabilities(data, result) -> None:  # type: ignore[no-untyped-def]
    import json

    from lib.research.regime import params_from_dict, params_to_dict, regime_features

    fit = result.fits[-1]
    restored = params_from_dict(json.loads(json.dumps(params_to_dict(fit))))
    rows = regime_features(data[0], lam=LAM).dropna().to_numpy()
    np.testing.assert_allclose(filtered_probabilities(rows, restored), filtered_probabilities(rows, fit))
    start = fit.end_position - 20  # first feature row is bar 20: rows[i] is bar i + 20
    np.testing.assert_allclose(filtered_probabilities(rows, restored)[start:, 0],
                               result.bull_probability.iloc[fit.end_position:].to_numpy())


def test_a_missing_return_inside_the_series_does_not_break_the_filter(data, result) -> None:  # type: ignore[no-untyped-def]
    gappy = data[0].copy()
    gappy.iloc[300] = np.nan  # the return feature counts it as 0, the EWMA vol feature carries over it
    out = hmm_regime(gappy, min_train=250, refit_every=120, lam=LAM).probabilities
    pd.testing.assert_frame_equal(out.iloc[:300], result.probabilities.iloc[:300])
    assert out.iloc[300:].notna().all().all()


def test_works_under_copy_on_write(data, result) -> None:  # type: ignore[no-untyped-def]
    # importing pandas-ta (as the strategy does) switches pandas to copy-on-write: read-only numpy views
    from lib.research.volatility import garch_forecast
    from lib.research.xsection import momentum_weights

    with pd.option_context("mode.copy_on_write", True):
        out = hmm_regime(data[0], min_train=250, refit_every=120, lam=LAM)
        pd.testing.assert_frame_equal(out.probabilities, result.probabilities)
        assert garch_forecast(data[0], min_train=300, refit_every=400).sigma.iloc[-1] > 0
        closes = pd.DataFrame({"A": np.exp(data[0].fillna(0).cumsum()), "B": np.exp(-data[0].fillna(0).cumsum())})
        assert momentum_weights(closes, lookback=5, top_n=1).sum(axis=1).max() == 1.0

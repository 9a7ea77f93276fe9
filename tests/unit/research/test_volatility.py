"""Volatility estimators: hand-computed EWMA/range values, the GARCH recursion against arch's own
fit, fallbacks, and look-ahead (truncating the future leaves past forecasts unchanged, across refits)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from arch import arch_model

from lib.core.errors import ConfigError
from lib.research.volatility import (
    ewma_volatility,
    fit_garch,
    garch_forecast,
    garman_klass_volatility,
    log_returns,
    parkinson_volatility,
    refit_positions,
)


def simulated_garch_returns(n: int, *, seed: int = 7) -> pd.Series:
    """Returns from a known GARCH(1,1) (omega 2e-5, alpha 0.1, beta 0.85), daily index."""
    rng = np.random.default_rng(seed)
    omega, alpha, beta = 2e-5, 0.10, 0.85
    variance, out = omega / (1 - alpha - beta), np.empty(n)
    for t in range(n):
        out[t] = math.sqrt(variance) * rng.standard_normal()
        variance = omega + alpha * out[t] ** 2 + beta * variance
    return pd.Series(out, index=pd.date_range("2019-01-01", periods=n, freq="D"))


def test_log_returns_by_hand() -> None:
    out = log_returns(pd.Series([100.0, 110.0, 99.0]))
    assert math.isnan(out.iloc[0])
    assert out.iloc[1] == pytest.approx(math.log(1.1))
    assert out.iloc[2] == pytest.approx(math.log(0.9))
    gap = log_returns(pd.Series([100.0, np.nan, 121.0]))
    assert math.isnan(gap.iloc[1])
    assert gap.iloc[2] == pytest.approx(math.log(1.21))  # the move across the gap is kept


def test_ewma_volatility_by_hand() -> None:
    # seeded at the 2nd valid return: (0.01^2 + 0.02^2) / 2 = 0.00025; next 0.9*0.00025 + 0.1*0.03^2 = 0.000315
    returns = pd.Series([np.nan, 0.01, -0.02, 0.03])
    out = ewma_volatility(returns, lam=0.9, min_periods=2)
    assert out.iloc[:2].isna().all()
    assert out.iloc[2] == pytest.approx(math.sqrt(0.00025))
    assert out.iloc[3] == pytest.approx(math.sqrt(0.000315))


def test_ewma_missing_return_carries_the_variance() -> None:
    out = ewma_volatility(pd.Series([0.02, np.nan, 0.0]), lam=0.5, min_periods=1)
    assert out.iloc[1] == pytest.approx(0.02)
    assert out.iloc[2] == pytest.approx(math.sqrt(0.5 * 0.0004))


def test_ewma_rejects_bad_lambda() -> None:
    with pytest.raises(ConfigError):
        ewma_volatility(pd.Series([0.01]), lam=1.0)


def test_parkinson_and_garman_klass_by_hand() -> None:
    high, low = pd.Series([math.exp(0.1), math.exp(0.2)]), pd.Series([1.0, 1.0])
    open_, close = pd.Series([1.0, 1.0]), pd.Series([math.exp(0.05), 1.0])
    park = parkinson_volatility(high, low, window=2)
    assert math.isnan(park.iloc[0])
    assert park.iloc[1] == pytest.approx(math.sqrt((0.01 + 0.04) / 2 / (4 * math.log(2))))
    gk = garman_klass_volatility(open_, high, low, close, window=1)
    assert gk.iloc[0] == pytest.approx(math.sqrt(0.5 * 0.01 - (2 * math.log(2) - 1) * 0.0025))
    assert gk.iloc[1] == pytest.approx(math.sqrt(0.5 * 0.04))


def test_refit_grid_is_anchored_at_the_start() -> None:
    assert refit_positions(10, min_train=4, refit_every=3) == [3, 6, 9]
    assert refit_positions(3, min_train=4, refit_every=3) == []


@pytest.fixture(scope="module")
def returns() -> pd.Series:
    series = simulated_garch_returns(520)
    series.iloc[0] = np.nan  # like log_returns of a close series
    return series


@pytest.fixture(scope="module")
def forecast(returns: pd.Series):  # type: ignore[no-untyped-def]
    return garch_forecast(returns, min_train=300, refit_every=100)


def test_first_fit_matches_arch_and_its_forecast(returns: pd.Series, forecast) -> None:  # type: ignore[no-untyped-def]
    first = forecast.fits[0]
    window = returns.iloc[1:301].to_numpy() * 100  # first valid return is position 1; 300 returns
    result = arch_model(window, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off")
    assert first.end_position == 300
    assert first.omega == pytest.approx(result.params["omega"])
    assert first.alpha == pytest.approx(result.params["alpha[1]"])
    assert first.beta == pytest.approx(result.params["beta[1]"])
    arch_next_variance = float(result.forecast(horizon=1, reindex=False).variance.iloc[-1, 0])
    assert (forecast.sigma.iloc[300] * 100) ** 2 == pytest.approx(arch_next_variance, rel=1e-9)


def test_between_refits_the_recursion_runs_with_the_last_fit(returns: pd.Series, forecast) -> None:  # type: ignore[no-untyped-def]
    sigma2 = (forecast.sigma * 100) ** 2
    r = returns * 100
    for t in (301, 350, 399, 420, 519):
        fit = [f for f in forecast.fits if f.end_position <= t][-1]
        expected = fit.omega + fit.alpha * r.iloc[t] ** 2 + fit.beta * sigma2.iloc[t - 1]
        assert sigma2.iloc[t] == pytest.approx(expected, rel=1e-12)
    assert [f.end_position for f in forecast.fits] == [300, 400, 500]


def test_short_history_uses_ewma_then_garch(returns: pd.Series, forecast) -> None:  # type: ignore[no-untyped-def]
    assert forecast.source.iloc[300] == "garch" and forecast.source.iloc[299] == "ewma"
    pd.testing.assert_series_equal(forecast.sigma.iloc[:300], ewma_volatility(returns).iloc[:300])
    no_backup = garch_forecast(returns.iloc[:320], min_train=300, refit_every=100,
                               fallback=pd.Series(np.nan, index=returns.index))
    assert no_backup.sigma.iloc[:300].isna().all() and no_backup.sigma.iloc[300:].notna().all()


@pytest.mark.parametrize("cut", [300, 399, 400, 455])
def test_garch_has_no_look_ahead(returns: pd.Series, forecast, cut: int) -> None:  # type: ignore[no-untyped-def]
    truncated = garch_forecast(returns.iloc[:cut + 1], min_train=300, refit_every=100)
    pd.testing.assert_series_equal(truncated.sigma, forecast.sigma.iloc[:cut + 1])
    pd.testing.assert_series_equal(truncated.source, forecast.source.iloc[:cut + 1])


def test_rolling_window_has_no_look_ahead(returns: pd.Series) -> None:
    full = garch_forecast(returns, min_train=300, refit_every=100, window=250)
    truncated = garch_forecast(returns.iloc[:451], min_train=300, refit_every=100, window=250)
    pd.testing.assert_series_equal(truncated.sigma, full.sigma.iloc[:451])


def test_failed_first_fit_falls_back_to_ewma(returns: pd.Series) -> None:
    assert fit_garch(np.zeros(300), end_position=0) is None
    series = returns.copy()
    series.iloc[201:301] = 0.0  # the first 100-bar training window carries no variance: that fit fails
    out = garch_forecast(series, min_train=300, refit_every=100, window=100)
    assert out.failed_fit_positions == (300,)
    assert out.source.iloc[350] == "ewma"
    assert out.sigma.iloc[350] == pytest.approx(ewma_volatility(series).iloc[350])
    assert out.fits[0].end_position == 400 and out.source.iloc[400] == "garch"


def test_failed_later_fit_keeps_running_the_previous_one(returns: pd.Series) -> None:
    series = returns.copy()
    series.iloc[301:401] = 0.0  # the window of the refit at bar 400 is all zeros: that fit fails
    out = garch_forecast(series, min_train=300, refit_every=100, window=100)
    assert out.failed_fit_positions == (400,)
    assert [f.end_position for f in out.fits] == [300, 500]
    fit, sigma2 = out.fits[0], (out.sigma * 100) ** 2
    for t in (400, 401, 499):
        expected = fit.omega + fit.alpha * (series.iloc[t] * 100) ** 2 + fit.beta * sigma2.iloc[t - 1]
        assert sigma2.iloc[t] == pytest.approx(expected, rel=1e-12)


def test_a_stored_fit_run_forward_matches_the_walk(returns: pd.Series, forecast) -> None:  # type: ignore[no-untyped-def]
    import dataclasses
    import json

    from lib.research.volatility import GarchParams

    fit = forecast.fits[1]  # end_position 400
    stored = GarchParams(**json.loads(json.dumps(dataclasses.asdict(fit))))
    for t in (400, 450, 499):
        assert stored.forecast_after(returns.iloc[400:t + 1].to_numpy()) == pytest.approx(forecast.sigma.iloc[t],
                                                                                           rel=1e-12)

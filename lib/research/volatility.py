"""Pure: causal volatility estimates and one-step-ahead forecasts (EWMA, range-based, GARCH(1,1)).

Every series here is indexed like its input and the value at bar t uses data up to and including t
only: it is the forecast of the volatility of the return from t to t+1 (the bar a trade decided at
t is exposed to). Units are per-bar log-return standard deviations (not annualized; multiply by
``sqrt(periods_per_year)``). Returns are zero-mean in the EWMA (RiskMetrics convention).

GARCH(1,1) is fitted with ``arch`` on percent returns (its optimizer is tuned for that scale) on an
expanding or rolling window ending at the refit bar, refitted every ``refit_every`` bars on a grid
anchored at the first bar of the series (so truncating the future never moves a refit), and between
refits the last fit's parameters are run forward through the new returns:
``sigma2[t+1] = omega + alpha * (r[t] - mu)^2 + beta * sigma2[t]``. A fit that raises, does not
converge or is non-stationary (alpha + beta >= 1) is discarded and the previous fit is kept; before
the first good fit the forecast is the EWMA volatility (the ``source`` column says which was used).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError
from lib.core.ewma import RISKMETRICS_LAMBDA as RISKMETRICS_LAMBDA  # the one EWMA (core: execution uses it)
from lib.core.ewma import ewma_volatility as ewma_volatility
from lib.core.ewma import log_returns as log_returns

PERCENT = 100.0  # arch fits percent returns; everything returned here is back in fractions
LN2 = float(np.log(2.0))


def parkinson_volatility(high: pd.Series, low: pd.Series, *, window: int) -> pd.Series:
    """Parkinson range volatility: ``sqrt(mean(ln(H/L)^2) / (4 ln 2))`` over the trailing ``window`` bars."""
    _check_window(window)
    range_sq = np.log(high.astype(float) / low.astype(float)) ** 2
    return np.sqrt(range_sq.rolling(window, min_periods=window).mean() / (4.0 * LN2))


def garman_klass_volatility(
    open_: pd.Series, high: pd.Series, low: pd.Series, close: pd.Series, *, window: int
) -> pd.Series:
    """Garman-Klass volatility: ``sqrt(mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2))`` over ``window`` bars."""
    _check_window(window)
    per_bar = (0.5 * np.log(high.astype(float) / low.astype(float)) ** 2
               - (2.0 * LN2 - 1.0) * np.log(close.astype(float) / open_.astype(float)) ** 2)
    return np.sqrt(per_bar.rolling(window, min_periods=window).mean().clip(lower=0.0))


def _check_window(window: int) -> None:
    if window < 1:
        raise ConfigError(f"volatility window must be >= 1 bar, got {window}")


@dataclass(frozen=True)
class GarchParams:
    """One GARCH(1,1) fit in PERCENT units: the state compute_signals can store and run forward daily."""

    end_position: int  # position (0-based) of the last return used in the fit
    mu: float
    omega: float
    alpha: float
    beta: float
    sigma2_end: float  # conditional variance at end_position under these params (percent^2)

    def next_variance(self, return_pct: float, sigma2_pct: float) -> float:
        """One recursion step: the variance of the next bar given this bar's return and variance."""
        eps = return_pct - self.mu
        return self.omega + self.alpha * eps * eps + self.beta * sigma2_pct

    def forecast_after(self, returns_from_end: np.ndarray) -> float:
        """Volatility (fraction) of the bar after the last of ``returns_from_end`` = the fraction returns
        at positions ``end_position``, ``end_position + 1``, ... (what a daily cron runs from a stored fit)."""
        sigma2 = self.sigma2_end
        for value in np.nan_to_num(np.asarray(returns_from_end, dtype=float), nan=0.0):
            sigma2 = self.next_variance(float(value) * PERCENT, sigma2)
        return float(np.sqrt(sigma2)) / PERCENT


@dataclass(frozen=True)
class GarchForecast:
    """``sigma``: forecast made at t of the t->t+1 return's standard deviation (fraction); ``source``:
    'garch', or 'ewma' before the first good fit, or NaN sigma before both; ``fits``: the good fits."""

    sigma: pd.Series
    source: pd.Series
    fits: tuple[GarchParams, ...]
    failed_fit_positions: tuple[int, ...]


def fit_garch(
    returns: np.ndarray, *, end_position: int, mean: Literal["Zero", "Constant"] = "Zero",
    dist: Literal["normal", "t"] = "normal",
) -> GarchParams | None:
    """Fit GARCH(1,1) (normal or Student-t errors; the variance recursion is the same) on fraction
    ``returns`` (no NaN); None when the fit is unusable."""
    from arch import arch_model  # heavy import (seconds): only for callers that fit

    model = arch_model(returns * PERCENT, mean=mean, vol="GARCH", p=1, q=1, dist=dist, rescale=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = model.fit(disp="off", show_warning=False)
    except (ValueError, np.linalg.LinAlgError, RuntimeError):
        return None
    params = result.params
    omega, alpha, beta = float(params["omega"]), float(params["alpha[1]"]), float(params["beta[1]"])
    sigma2_end = float(np.asarray(result.conditional_volatility)[-1] ** 2)
    usable = (result.convergence_flag == 0 and omega > 0 and alpha >= 0 and beta >= 0 and alpha + beta < 1
              and np.isfinite(sigma2_end) and sigma2_end > 0)
    if not usable:
        return None
    mu = float(params["mu"]) if mean == "Constant" else 0.0
    return GarchParams(end_position=end_position, mu=mu, omega=omega, alpha=alpha, beta=beta, sigma2_end=sigma2_end)


def refit_positions(n_bars: int, *, min_train: int, refit_every: int) -> list[int]:
    """Bars (positions) at which a model is refitted: ``min_train - 1``, then every ``refit_every`` bars."""
    if min_train < 2 or refit_every < 1:
        raise ConfigError(f"need min_train >= 2 and refit_every >= 1, got {min_train}, {refit_every}")
    return list(range(min_train - 1, n_bars, refit_every))


def garch_forecast(
    returns: pd.Series,
    *,
    min_train: int = 500,
    refit_every: int = 20,
    window: int | None = None,
    mean: Literal["Zero", "Constant"] = "Zero",
    dist: Literal["normal", "t"] = "normal",
    fallback: pd.Series | None = None,
) -> GarchForecast:
    """Causal one-step-ahead GARCH(1,1) volatility (see the module docstring).

    ``returns`` are fraction log returns (a leading NaN is allowed; a NaN inside the series is treated
    as a zero return with no news). ``window=None`` fits on all returns so far, else on the last
    ``window``. ``fallback`` (default: ``ewma_volatility(returns)``) fills the bars before the first
    good fit.
    """
    values = returns.to_numpy(dtype=float)
    valid = ~np.isnan(values)
    first = int(np.argmax(valid)) if valid.any() else len(values)
    clean = np.where(valid, values, 0.0)
    sigma2 = np.full(len(values), np.nan)  # percent^2, forecast for t+1 made at t
    fits: list[GarchParams] = []
    failed: list[int] = []
    refits = set(refit_positions(len(values) - first, min_train=min_train, refit_every=refit_every))
    current: GarchParams | None = None
    state = np.nan  # conditional variance at t under the current params (percent^2)
    for offset in range(len(values) - first):
        t = first + offset
        if offset in refits:
            start = first if window is None else max(first, t + 1 - window)
            fitted = fit_garch(clean[start:t + 1], end_position=t, mean=mean, dist=dist)
            if fitted is None:
                failed.append(t)
            else:
                current, state = fitted, fitted.sigma2_end
                fits.append(fitted)
                sigma2[t] = current.next_variance(clean[t] * PERCENT, state)
                continue
        if current is not None:
            state = current.next_variance(clean[t - 1] * PERCENT, state)  # variance of bar t
            sigma2[t] = current.next_variance(clean[t] * PERCENT, state)
    sigma = pd.Series(np.sqrt(sigma2) / PERCENT, index=returns.index, name=returns.name)
    source = pd.Series("garch", index=returns.index, dtype=object).where(~np.isnan(sigma2), None)
    backup = ewma_volatility(returns) if fallback is None else fallback.reindex(returns.index)
    use_backup = sigma.isna() & backup.notna()
    if fits:
        use_backup &= np.arange(len(values)) < fits[0].end_position
    sigma = sigma.where(~use_backup, backup)
    source = source.where(~use_backup, "ewma")
    return GarchForecast(sigma=sigma, source=source, fits=tuple(fits), failed_fit_positions=tuple(failed))

"""Pure: 1-day tail risk of a book (VaR / CVaR) and the 24 h liquidation probability of a short perp leg.

Core so that research (sizing, reports) and execution (the pre-trade check) use the same numbers.
Conventions: returns are simple fractions per day; VaR and CVaR are POSITIVE loss fractions of the
book's equity (0.03 = lose 3 % of equity); ``level`` is the confidence (0.95, 0.99).

- historical: the empirical loss quantile of the book's past returns (``numpy`` "lower" interpolation
  of the loss, i.e. an observed loss, never an interpolated one) and the mean of the losses at or
  beyond it;
- Gaussian: ``VaR = -mu + sigma * z``, ``CVaR = -mu + sigma * phi(z) / (1 - level)``, z = Phi^-1(level);
- Cornish-Fisher: the Gaussian quantile corrected for sample skew and excess kurtosis; its CVaR is
  the mean of the corrected quantile over the tail (midpoint rule on ``CF_TAIL_STEPS`` levels).

Liquidation: a driftless Brownian log-price with daily volatility sigma; the probability that its
running maximum over T days reaches the log distance b to the short's liquidation price is
``2 * (1 - Phi(b / (sigma * sqrt(T))))`` (reflection principle).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from lib.core.errors import DataError

LEVELS = (0.95, 0.99)
CF_TAIL_STEPS = 200
MIN_OBSERVATIONS = 20  # fewer past days than this is not a tail estimate: fail closed
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class TailRisk:
    """VaR and CVaR of one book at one confidence level, by three methods (positive loss fractions)."""

    level: float
    historical_var: float
    historical_cvar: float
    gaussian_var: float
    gaussian_cvar: float
    cornish_fisher_var: float
    cornish_fisher_cvar: float


def _check_level(level: float) -> None:
    if not 0.5 < level < 1.0:
        raise DataError(f"confidence level must be in (0.5, 1), got {level}")


def book_returns(weights: Mapping[str, float], returns: pd.DataFrame) -> pd.Series:
    """Daily returns the book WOULD have had: ``returns @ weights`` (weights as fractions of equity).

    A missing return (asset not yet listed) counts as 0 for that day. Raises when a weighted asset has
    no return column at all, or a weight is not finite: an unknown risk is not a zero risk.
    """
    missing = [symbol for symbol, weight in weights.items() if weight != 0 and symbol not in returns.columns]
    if missing:
        raise DataError(f"no return history for {missing}")
    if not all(math.isfinite(weight) for weight in weights.values()):
        raise DataError(f"non-finite weight in {dict(weights)}")
    vector = pd.Series({symbol: float(weight) for symbol, weight in weights.items() if weight != 0}, dtype=float)
    if vector.empty:
        return pd.Series(0.0, index=returns.index)
    return returns[list(vector.index)].fillna(0.0) @ vector


def _clean(returns: pd.Series | np.ndarray) -> np.ndarray:
    values = np.asarray(returns, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < MIN_OBSERVATIONS:
        raise DataError(f"tail risk needs >= {MIN_OBSERVATIONS} finite returns, got {len(values)}")
    return values


def historical_var_cvar(returns: pd.Series | np.ndarray, level: float) -> tuple[float, float]:
    """Empirical (VaR, CVaR): the loss exceeded on a (1 - level) share of days, and the mean loss beyond it."""
    _check_level(level)
    losses = -_clean(returns)
    var = float(np.quantile(losses, level, method="higher"))
    return var, float(losses[losses >= var].mean())


def gaussian_var_cvar(mean: float, std: float, level: float) -> tuple[float, float]:
    """Normal (VaR, CVaR) of a return with this mean and standard deviation."""
    _check_level(level)
    z = _NORMAL.inv_cdf(level)
    return -mean + std * z, -mean + std * _NORMAL.pdf(z) / (1.0 - level)


def cornish_fisher_z(level: float, skew: float, excess_kurtosis: float) -> float:
    """The loss-side quantile (a positive number of std devs) corrected for skew and excess kurtosis.

    With q = Phi^-1(1 - level) (the lower tail of returns): q + (q^2-1)S/6 + (q^3-3q)K/24 - (2q^3-5q)S^2/36,
    returned negated so that it is the number of std devs of LOSS.
    """
    q = _NORMAL.inv_cdf(1.0 - level)
    s, k = skew, excess_kurtosis
    corrected = q + (q * q - 1) * s / 6 + (q**3 - 3 * q) * k / 24 - (2 * q**3 - 5 * q) * s * s / 36
    return -corrected


def cornish_fisher_var_cvar(mean: float, std: float, skew: float, excess_kurtosis: float,
                            level: float) -> tuple[float, float]:
    """(VaR, CVaR) with the Cornish-Fisher quantile; CVaR = mean VaR over levels in (level, 1)."""
    _check_level(level)
    var = -mean + std * cornish_fisher_z(level, skew, excess_kurtosis)
    tail = level + (1.0 - level) * (np.arange(CF_TAIL_STEPS) + 0.5) / CF_TAIL_STEPS
    cvar = float(np.mean([-mean + std * cornish_fisher_z(float(u), skew, excess_kurtosis) for u in tail]))
    return var, cvar


def tail_risk(returns: pd.Series | np.ndarray, level: float) -> TailRisk:
    """All three estimates of one return series at one level (sample moments, ddof=1 std)."""
    values = _clean(returns)
    mean, std = float(values.mean()), float(values.std(ddof=1))
    series = pd.Series(values)
    skew, kurt = float(series.skew()), float(series.kurt())  # kurt() is the EXCESS kurtosis
    h_var, h_cvar = historical_var_cvar(values, level)
    g_var, g_cvar = gaussian_var_cvar(mean, std, level)
    cf_var, cf_cvar = cornish_fisher_var_cvar(mean, std, skew if math.isfinite(skew) else 0.0,
                                              kurt if math.isfinite(kurt) else 0.0, level)
    return TailRisk(level, h_var, h_cvar, g_var, g_cvar, cf_var, cf_cvar)


def book_tail_risk(weights: Mapping[str, float], returns: pd.DataFrame,
                   levels: tuple[float, ...] = LEVELS) -> dict[float, TailRisk]:
    """1-day VaR / CVaR of a weight vector, from a recent daily returns matrix (rows = days)."""
    series = book_returns(weights, returns)
    return {level: tail_risk(series, level) for level in levels}


def liquidation_probability(buffer_log: float, daily_volatility: float, *, horizon_days: float = 1.0) -> float:
    """P(the price touches the liquidation price within the horizon) for a driftless log-price.

    ``buffer_log`` = ln(liquidation price / price) for a short (> 0 while safe); ``daily_volatility``
    = std of daily log returns. Reflection principle: P(max_{t<=T} W_t >= b) = 2 (1 - Phi(b / (sigma sqrt T))).
    A buffer <= 0 means already at/through liquidation: 1.0. Zero volatility with a positive buffer: 0.0.
    """
    if not (math.isfinite(buffer_log) and math.isfinite(daily_volatility)) or daily_volatility < 0:
        raise DataError(f"liquidation_probability: bad buffer {buffer_log} / volatility {daily_volatility}")
    if horizon_days <= 0:
        raise DataError(f"horizon_days must be > 0, got {horizon_days}")
    if buffer_log <= 0:
        return 1.0
    if daily_volatility == 0:
        return 0.0
    scaled = buffer_log / (daily_volatility * math.sqrt(horizon_days))
    return min(1.0, 2.0 * (1.0 - _NORMAL.cdf(scaled)))


def short_buffer_log(price: float, liquidation_price: float) -> float:
    """Log distance from the price up to a short's liquidation price (negative = past it)."""
    if not (price > 0 and liquidation_price > 0):
        raise DataError(f"prices must be > 0, got price {price}, liquidation {liquidation_price}")
    return math.log(liquidation_price / price)


def buffer_for_probability(probability: float, daily_volatility: float, *, horizon_days: float = 1.0) -> float:
    """The smallest log buffer whose liquidation probability is <= ``probability`` (inverse of the above)."""
    if not 0.0 < probability < 1.0:
        raise DataError(f"probability must be in (0, 1), got {probability}")
    return daily_volatility * math.sqrt(horizon_days) * _NORMAL.inv_cdf(1.0 - probability / 2.0)

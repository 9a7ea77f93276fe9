"""Pure: the 99 % 1-day VaR / CVaR a limit is checked against, and the scale of a book that fits the limits.

The checked figure is the WORSE of the historical and the Gaussian estimate (lib.core.tail_risk): the
historical one sees fat tails the Gaussian misses, the Gaussian one does not collapse when a short window
happens to hold no crash. Cornish-Fisher is reported, not limited: at the excess kurtosis of daily crypto
returns (often > 6) its expansion leaves its domain of validity and is no longer a monotone quantile.

Both estimates are positively homogeneous (VaR of k x book = k x VaR of book for k > 0), so a whole book
breaching a limit fits it exactly when scaled by limit / VaR; with a part that may not be scaled (held
positions) the factor is found by bisection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from lib.core.errors import DataError
from lib.core.tail_risk import book_returns, gaussian_var_cvar, historical_var_cvar

LIMIT_LEVEL = 0.99
BISECTION_STEPS = 40  # (1/2)^40 of the weights: far below any exchange step


@dataclass(frozen=True, slots=True)
class TailCheck:
    """The checked 99 % figures of a book and the factor its scalable part is multiplied by to fit (1 = fits)."""

    var_99: float
    cvar_99: float
    scale: float
    scaled_var_99: float
    scaled_cvar_99: float


def worst_var_cvar(returns: pd.Series, level: float = LIMIT_LEVEL) -> tuple[float, float]:
    """(max of historical and Gaussian VaR, max of historical and Gaussian CVaR) of a return series."""
    values = returns.to_numpy(dtype=float)
    h_var, h_cvar = historical_var_cvar(values, level)
    mean, std = float(values.mean()), float(values.std(ddof=1))
    g_var, g_cvar = gaussian_var_cvar(mean, std, level)
    return max(h_var, g_var), max(h_cvar, g_cvar)


def _combined(fixed: Mapping[str, float], scalable: Mapping[str, float], k: float,
              returns: pd.DataFrame) -> tuple[float, float]:
    weights = dict(fixed)
    for symbol, weight in scalable.items():
        weights[symbol] = weights.get(symbol, 0.0) + k * weight
    return worst_var_cvar(book_returns(weights, returns))


def fit_to_limits(scalable: Mapping[str, float], returns: pd.DataFrame, *, max_var: float, max_cvar: float,
                  fixed: Mapping[str, float] | None = None) -> TailCheck:
    """The largest k in [0, 1] with VaR and CVaR of ``fixed + k * scalable`` within the limits (k = 1: fits).

    Raises DataError when the returns cannot carry an estimate (too few days, an asset without history).
    When even k = 0 breaches (the fixed part alone), k = 0: the scalable part is all that can be cut.
    """
    if not (max_var > 0 and max_cvar > 0):
        raise DataError(f"tail limits must be > 0, got VaR {max_var}, CVaR {max_cvar}")
    fixed = fixed or {}
    var, cvar = _combined(fixed, scalable, 1.0, returns)

    def fits(v: float, c: float) -> bool:
        return v <= max_var and c <= max_cvar

    if fits(var, cvar):
        return TailCheck(var, cvar, 1.0, var, cvar)
    if not fixed:  # homogeneous: exact
        k = min(max_var / var, max_cvar / cvar)
        return TailCheck(var, cvar, k, var * k, cvar * k)
    low, high = 0.0, 1.0
    if not fits(*_combined(fixed, scalable, 0.0, returns)):
        v0, c0 = _combined(fixed, scalable, 0.0, returns)
        return TailCheck(var, cvar, 0.0, v0, c0)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if fits(*_combined(fixed, scalable, middle, returns)):
            low = middle
        else:
            high = middle
    v, c = _combined(fixed, scalable, low, returns)
    return TailCheck(var, cvar, low, v, c)

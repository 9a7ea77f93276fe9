"""Pure: log returns and the zero-mean EWMA (RiskMetrics) volatility forecast.

In core so that research (volatility targeting, regimes) and execution (the 24 h liquidation probability of
a perp short, lib.execution.margin_guard) forecast volatility the same way. The value at bar t uses data up
to and including t only: the forecast of the volatility of the return from t to t+1, per bar, not annualized.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError

RISKMETRICS_LAMBDA = 0.94


def log_returns(close: pd.Series) -> pd.Series:
    """``ln(close[t] / last valid close before t)``: NaN at the first bar and where the close is missing
    (or not positive); the bar after a gap carries the whole move across it, so no move is lost."""
    log_close = np.log(close.astype(float).where(close > 0))
    return (log_close - log_close.ffill().shift(1)).where(log_close.notna())


def ewma_volatility(returns: pd.Series, *, lam: float = RISKMETRICS_LAMBDA, min_periods: int = 20) -> pd.Series:
    """Zero-mean EWMA volatility: ``s2[t] = lam * s2[t-1] + (1 - lam) * r[t]^2``.

    Seeded at the ``min_periods``-th valid return with the mean of the squared returns so far (NaN
    before); a NaN return leaves the variance unchanged (a missing bar carries no news).
    """
    if not 0.0 < lam < 1.0:
        raise ConfigError(f"EWMA lambda must be in (0, 1), got {lam}")
    if min_periods < 1:
        raise ConfigError(f"min_periods must be >= 1, got {min_periods}")
    values = returns.to_numpy(dtype=float)
    out = np.full(len(values), np.nan)
    seen: list[float] = []
    variance = np.nan
    for i, value in enumerate(values):
        if np.isnan(variance):
            if not np.isnan(value):
                seen.append(value * value)
            if len(seen) == min_periods:
                variance = float(np.mean(seen))
        elif not np.isnan(value):
            variance = lam * variance + (1.0 - lam) * value * value
        out[i] = np.sqrt(variance)
    return pd.Series(out, index=returns.index, name=returns.name)

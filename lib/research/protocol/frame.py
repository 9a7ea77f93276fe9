"""Pure: the returns-matrix contract of the research protocol and the per-period statistics every step uses.

Sharpe here is PER PERIOD (mean / sample std of daily returns, risk-free 0) unless a name says
``annual``; annualizing multiplies by sqrt(365) (``lib.core.timeframes.periods_per_year("1d")``), the
project's crypto calendar. Undefined values (fewer than 2 returns, a constant non-zero return) are NaN,
never inf; an all-cash (all-zero) series has Sharpe 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.core.timeframes import periods_per_year

DAYS_PER_YEAR = periods_per_year("1d")
ANNUALIZE = math.sqrt(DAYS_PER_YEAR)
ONE_DAY = pd.Timedelta(days=1)


def check_returns_matrix(returns: pd.DataFrame, benchmark: pd.Series | None = None) -> None:
    """Raise DataError unless ``returns`` is a usable returns matrix (and ``benchmark`` matches it).

    Contract: UTC DatetimeIndex at midnight, one row per calendar day (no gaps: the protocol counts
    windows, purges and embargoes in days and CombinatorialPurgedCV counts rows), >= 1 column, unique
    column names, finite values; ``benchmark`` on the very same index, finite.
    """
    index = returns.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) != "UTC":
        raise DataError("returns matrix: the index must be a UTC DatetimeIndex")
    if len(index) < 2 or (index != index.normalize()).any():
        raise DataError("returns matrix: needs >= 2 rows, each at 00:00 UTC (daily bars)")
    steps = np.diff(index.asi8)
    if (steps != ONE_DAY.value).any():
        raise DataError("returns matrix: rows must be consecutive calendar days (no gaps, sorted, unique)")
    if returns.shape[1] < 1 or not returns.columns.is_unique:
        raise DataError("returns matrix: needs >= 1 configuration column with unique names")
    if not np.isfinite(returns.to_numpy(dtype=float)).all():
        raise DataError("returns matrix: every value must be a finite daily return")
    if benchmark is not None:
        if not benchmark.index.equals(index):
            raise DataError("benchmark returns must be on the returns matrix's index")
        if not np.isfinite(benchmark.to_numpy(dtype=float)).all():
            raise DataError("benchmark returns must be finite")


def sharpe_per_period(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """mean / std (ddof=1) along ``axis``; 0 for a flat (all-zero) series, NaN for fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    count = values.shape[axis]
    if count < 2:
        shape = list(values.shape)
        del shape[axis]
        return np.full(shape, np.nan)
    mean, std = values.mean(axis=axis), values.std(axis=axis, ddof=1)
    return ratio_or_flat(mean, std)


def ratio_or_flat(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """mean / std where std > 0; a flat series (all cash: mean 0, std 0) has Sharpe 0, so that staying out
    of the market competes (it beats a loser); a constant non-zero return is NaN (not a tradeable result)."""
    flat = 1e-15
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean / np.where(std > flat, std, 1.0)
    return np.where(std > flat, ratio, np.where(np.abs(mean) <= flat, 0.0, np.nan))


def sharpe_annual(returns: pd.Series | pd.DataFrame) -> float | pd.Series:
    """Annualized Sharpe of a Series (float) or of each column of a DataFrame (Series)."""
    if isinstance(returns, pd.DataFrame):
        return pd.Series(sharpe_per_period(returns.to_numpy(dtype=float)) * ANNUALIZE, index=returns.columns)
    return float(sharpe_per_period(returns.to_numpy(dtype=float)) * ANNUALIZE)


def equity_from_returns(returns: pd.Series, start: float = 1.0) -> pd.Series:
    """Compounded equity after each day's return (the first value is start x (1 + r0))."""
    return start * (1.0 + returns.astype(float)).cumprod()


def max_drawdown_frac(returns: pd.Series) -> float:
    """Largest fall from a running peak of the compounded returns, as a positive fraction; the peak
    includes the starting capital (a loss on day one is a drawdown)."""
    equity = np.concatenate([[1.0], equity_from_returns(returns).to_numpy()])
    return float(max(0.0, -(equity / np.maximum.accumulate(equity) - 1.0).min()))


def cagr_frac(returns: pd.Series) -> float:
    """Compound annual growth over len(returns) days (365-day years)."""
    growth = float((1.0 + returns.astype(float)).prod())
    years = len(returns) / DAYS_PER_YEAR
    return growth ** (1.0 / years) - 1.0 if growth > 0 and years > 0 else -1.0


def summary(returns: pd.Series) -> dict[str, float]:
    """The headline numbers of one daily return series (JSON-ready floats; NaN where undefined)."""
    drawdown = max_drawdown_frac(returns)
    growth = cagr_frac(returns)
    return {
        "sharpe": sharpe_annual(returns), "cagr_frac": growth, "max_drawdown_frac": drawdown,
        "calmar": growth / drawdown if drawdown > 0 else float("nan"),
        "volatility_annual_frac": float(returns.std(ddof=1) * ANNUALIZE) if len(returns) > 1 else float("nan"),
        "days": float(len(returns)),
    }  # fmt: skip

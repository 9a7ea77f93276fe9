"""Pure: the tail-risk rule of the pre-trade pass, for live (one book) and the backtest (many books at once).

Moved out of lib.execution.tail_risk_checks so that research models exactly what rebalance decides:

- ``fit_book``: the recent daily returns of a book's symbols (lib.core.daily_returns over the last
  ``lookback_days`` days of their calendars), each traded symbol with at least MIN_OBSERVATIONS of them (a new
  listing's missing days would count as calm ones), then lib.core.tail_limits.fit_to_limits. Raises DataError
  when the risk cannot be estimated: the caller refuses (fail closed).
- ``book_scales``: the same figures and factor for many books WITHOUT a fixed part on one returns window
  (days x assets, NaN = no return that day, counted as 0 as lib.core.tail_risk.book_returns does), vectorized
  over the books: the worse of the historical ("higher" quantile) and Gaussian 99 % VaR / CVaR, and the
  homogeneous factor ``min(1, max_var / VaR, max_cvar / CVaR)``. NaN marks a book whose risk is unknown.
  Its pieces (``unknown_books``, ``fitting_scales``) serve lib.research.live_tail, which batches books of many
  days. tests/unit/core/test_tail_fit.py holds them to fit_to_limits on random books (1e-12), and
  tests/unit/research/test_live_tail.py the backtest's factors to live's fit_tail on synthetic and real data.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist

import numpy as np
import pandas as pd

from lib.core.daily_returns import daily_returns
from lib.core.errors import DataError
from lib.core.tail_limits import LIMIT_LEVEL, TailCheck, fit_to_limits
from lib.core.tail_risk import MIN_OBSERVATIONS

_NORMAL = NormalDist()


def fit_book(scalable: Mapping[str, float], closes: Mapping[str, pd.Series], *, fixed: Mapping[str, float],
             max_var: float, max_cvar: float, lookback_days: int) -> tuple[TailCheck, int]:
    """(fit_to_limits of ``fixed + k * scalable`` on the daily returns of their ``closes``, days used).

    ``closes``: daily closes by symbol (lib.core.daily_returns.daily_closes); a symbol of the book without
    any is an unknown risk. Raises DataError when the risk cannot be estimated."""
    symbols = {**fixed, **scalable}
    returns = daily_returns({s: closes[s] for s in symbols if s in closes}, lookback_days=lookback_days)
    short = sorted(s for s in scalable if s in returns and returns[s].count() < MIN_OBSERVATIONS)
    if short:
        raise DataError(f"fewer than {MIN_OBSERVATIONS} daily returns for {short}")
    return fit_to_limits(scalable, returns, max_var=max_var, max_cvar=max_cvar, fixed=dict(fixed)), len(returns)


def worst_var_cvar_rows(book_returns: np.ndarray, level: float = LIMIT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``book_returns`` (books x days, finite): lib.core.tail_limits.worst_var_cvar of that row."""
    losses = -book_returns
    h_var = np.quantile(losses, level, axis=1, method="higher")
    tail = losses >= h_var[:, None]
    h_cvar = np.where(tail, losses, 0.0).sum(axis=1) / tail.sum(axis=1)
    g_var, g_cvar = _gaussian(book_returns, level)
    return np.maximum(h_var, g_var), np.maximum(h_cvar, g_cvar)


def _gaussian(book_returns: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """lib.core.tail_risk.gaussian_var_cvar of each row's sample mean and (ddof=1) standard deviation."""
    mean, std = book_returns.mean(axis=1), book_returns.std(axis=1, ddof=1)
    z = _NORMAL.inv_cdf(level)
    return -mean + std * z, -mean + std * _NORMAL.pdf(z) / (1.0 - level)


def fitting_scales(book_returns: np.ndarray, *, max_var: float, max_cvar: float) -> np.ndarray:
    """limit_scales of worst_var_cvar_rows, cheaper: a book whose worst day lost no more than both limits has
    historical VaR and CVaR (observed losses, and means of them) within them, so its Gaussian figures decide
    whether it fits; the quantiles are taken only of the other books (same factors)."""
    scales = np.ones(book_returns.shape[0])
    g_var, g_cvar = _gaussian(book_returns, LIMIT_LEVEL)
    sure = (-book_returns.min(axis=1) <= min(max_var, max_cvar)) & (g_var <= max_var) & (g_cvar <= max_cvar)
    rest = np.flatnonzero(~sure)
    if rest.size:
        var, cvar = worst_var_cvar_rows(book_returns[rest])
        scales[rest] = limit_scales(var, cvar, max_var=max_var, max_cvar=max_cvar)
    return scales


def limit_scales(var: np.ndarray, cvar: np.ndarray, *, max_var: float, max_cvar: float) -> np.ndarray:
    """fit_to_limits' factor for books without a fixed part: 1 when both figures fit, else the exact
    ``min(max_var / VaR, max_cvar / CVaR)`` (both estimates are positively homogeneous)."""
    if not (max_var > 0 and max_cvar > 0):
        raise DataError(f"tail limits must be > 0, got VaR {max_var}, CVaR {max_cvar}")
    fits = (var <= max_var) & (cvar <= max_cvar)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(fits, 1.0, np.minimum(max_var / var, max_cvar / cvar))


def unknown_books(returns: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Books (rows of ``weights``) whose risk on ``returns`` (days x assets) fit_book cannot estimate: fewer
    than MIN_OBSERVATIONS days, or a weighted asset with fewer than MIN_OBSERVATIONS returns. An all-zero book
    is never unknown (live skips it)."""
    active = (weights != 0).any(axis=1)
    if returns.shape[0] < MIN_OBSERVATIONS:
        return active
    counts = np.isfinite(returns).sum(axis=0)
    return active & ((weights != 0) & (counts < MIN_OBSERVATIONS)).any(axis=1)


def book_scales(returns: np.ndarray, weights: np.ndarray, *, max_var: float, max_cvar: float) -> np.ndarray:
    """The factor each book (row of ``weights``, books x assets) is scaled by to fit the limits on ``returns``
    (days x assets): 1 = fits, NaN = unknown (``unknown_books``: what fit_book raises on). An all-zero book fits."""
    scales = np.ones(weights.shape[0])
    unknown = unknown_books(returns, weights)
    scales[unknown] = np.nan
    rows = np.flatnonzero((weights != 0).any(axis=1) & ~unknown)
    if rows.size:
        var, cvar = worst_var_cvar_rows(weights[rows] @ np.nan_to_num(returns, nan=0.0).T)
        scales[rows] = limit_scales(var, cvar, max_var=max_var, max_cvar=max_cvar)
    return scales

"""Pure: the evaluation behind docs/research_regime.md (volatility forecast losses, a one-asset exposure
backtest, a paired block bootstrap of Sharpe differences).

Forecast convention: ``sigma[t]`` is made at the close of t for the log return from t to t+1, so it is
scored against ``r[t+1]^2``. Losses: QLIKE in Patton's robust form ``ln h + r^2 / h`` (ranks forecasts
like the textbook ``r^2/h - ln(r^2/h) - 1`` but is defined for a zero return) and MSE ``(r^2 - h)^2``,
both on daily variances. Exposure backtest: weight ``w[t]`` decided at the close of t earns the simple
return from t to t+1 and pays ``cost_frac`` per unit of weight traded at t.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError
from lib.research.metrics import annualized_volatility, cagr, calmar_ratio, max_drawdown, sharpe_ratio


def forecast_losses(sigma: pd.Series, returns: pd.Series) -> pd.DataFrame:
    """Per-bar QLIKE and MSE of ``sigma[t]^2`` against ``returns[t+1]^2`` (rows with both defined)."""
    h = sigma.astype(float) ** 2
    realized = (returns.astype(float).shift(-1) ** 2).reindex(h.index)
    keep = h.notna() & realized.notna() & (h > 0)
    h, realized = h[keep], realized[keep]
    return pd.DataFrame({"qlike": np.log(h) + realized / h, "mse": (realized - h) ** 2})


def diebold_mariano_t(loss_a: pd.Series, loss_b: pd.Series, *, lags: int = 5) -> float:
    """t statistic of mean(loss_a - loss_b) with a Newey-West (Bartlett, ``lags``) standard error;
    negative = a has the lower loss."""
    d = (loss_a - loss_b).dropna().to_numpy(dtype=float)
    n = len(d)
    if n < lags + 2:
        return float("nan")
    centered = d - d.mean()
    long_run = float(centered @ centered) / n
    for lag in range(1, lags + 1):
        long_run += 2.0 * (1.0 - lag / (lags + 1)) * float(centered[lag:] @ centered[:-lag]) / n
    return float(d.mean() / np.sqrt(long_run / n)) if long_run > 0 else float("nan")


def exposure_returns(weight: pd.Series, close: pd.Series, *, cost_frac: float) -> pd.Series:
    """Net simple returns of holding ``weight[t-1]`` of the asset over bar t, minus trading costs at t-1."""
    asset = close.astype(float).pct_change()
    held = weight.astype(float).fillna(0.0)
    traded = held.diff().abs().fillna(held.abs())
    return (held.shift(1) * asset - cost_frac * traded.shift(1)).fillna(0.0)


def summarize(returns: pd.Series, weight: pd.Series, *, timeframe: str = "1d") -> dict[str, float]:
    """Sharpe, CAGR, volatility, max drawdown, Calmar, mean exposure and annual turnover of one path."""
    equity = pd.concat([pd.Series([1.0]), (1.0 + returns).cumprod()], ignore_index=True)
    years = len(returns) / 365.0
    return {
        "sharpe": sharpe_ratio(returns, timeframe=timeframe),
        "cagr": cagr(equity, timeframe=timeframe),
        "ann_vol": annualized_volatility(returns, timeframe=timeframe),
        "max_drawdown": max_drawdown(equity),
        "calmar": calmar_ratio(equity, timeframe=timeframe),
        "mean_exposure": float(weight.mean()),
        "turnover_per_year": float(weight.diff().abs().sum() / years) if years > 0 else float("nan"),
    }


def block_bootstrap_sharpe_difference(
    returns_a: pd.Series, returns_b: pd.Series, *, block: int = 20, n_samples: int = 2000, seed: int = 0,
    periods_per_year: float = 365.0,
) -> dict[str, float]:
    """Paired circular block bootstrap of Sharpe(a) - Sharpe(b): 5 %, 50 %, 95 % quantiles and the share
    of resamples where a beats b (same resampled days for both, so their correlation is kept)."""
    if block < 1 or n_samples < 1:
        raise ConfigError(f"need block >= 1 and n_samples >= 1, got {block}, {n_samples}")
    pair = np.column_stack([returns_a.to_numpy(dtype=float), returns_b.to_numpy(dtype=float)])
    n = len(pair)
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(n_samples, n_blocks))
    index = ((starts[:, :, None] + np.arange(block)) % n).reshape(n_samples, -1)[:, :n]
    sample = pair[index]  # (n_samples, n, 2)
    std = sample.std(axis=1, ddof=1)
    sharpe = np.where(std > 0, sample.mean(axis=1) / np.where(std > 0, std, 1.0), np.nan) * np.sqrt(periods_per_year)
    diff = sharpe[:, 0] - sharpe[:, 1]
    q05, q50, q95 = np.nanquantile(diff, [0.05, 0.5, 0.95])
    return {"q05": float(q05), "median": float(q50), "q95": float(q95), "p_a_better": float(np.nanmean(diff > 0))}


def yearly_sharpe(returns: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Sharpe per calendar year (rows) and variant (columns) of daily returns with a DatetimeIndex."""
    frame = pd.DataFrame(dict(returns))
    years = pd.DatetimeIndex(frame.index).year
    return frame.groupby(years).apply(lambda g: g.apply(lambda s: sharpe_ratio(s, timeframe="1d")))

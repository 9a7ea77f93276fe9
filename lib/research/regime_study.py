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
from typing import Any

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError
from lib.research import regime, volatility
from lib.research.metrics import annualized_volatility, cagr, calmar_ratio, max_drawdown, sharpe_ratio

COST_FRAC = 0.0015  # 10 bps fee + 5 bps slippage, the shipped defaults
TARGET_VOL = 0.40  # annualized, declared before any run, not tuned
MIN_TRAIN = 365  # bars before the first GARCH/HMM fit


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


def forecasters(candles: pd.DataFrame) -> dict[str, pd.Series]:
    """Every pre-declared volatility forecaster of a coin's daily candles (value at t: forecast for t+1)."""
    r = volatility.log_returns(candles["close"])
    return {
        "ewma_0.94": volatility.ewma_volatility(r, lam=0.94),
        "ewma_0.97": volatility.ewma_volatility(r, lam=0.97),
        "rolling_std_30": r.rolling(30).std(),
        "parkinson_20": volatility.parkinson_volatility(candles["high"], candles["low"], window=20),
        "garch_expanding_r20": volatility.garch_forecast(r, min_train=MIN_TRAIN, refit_every=20).sigma,
        "garch_t_expanding_r20": volatility.garch_forecast(r, min_train=MIN_TRAIN, refit_every=20, dist="t").sigma,
        "garch_rolling1000_r20": volatility.garch_forecast(r, min_train=MIN_TRAIN, refit_every=20, window=1000).sigma,
    }


def forecast_table(candles: pd.DataFrame) -> dict[str, Any]:
    """Mean losses and DM t-stats vs EWMA 0.94 on the bars where every forecaster is defined."""
    r = volatility.log_returns(candles["close"])
    sigmas = forecasters(candles)
    common = pd.concat(sigmas, axis=1).notna().all(axis=1) & (np.arange(len(r)) >= MIN_TRAIN)
    losses = {name: forecast_losses(s[common], r) for name, s in sigmas.items()}
    base = losses["ewma_0.94"]
    table = {name: {"qlike": float(f["qlike"].mean()), "mse_x1e6": float(f["mse"].mean() * 1e6),
                    "dm_t_qlike_vs_ewma094": diebold_mariano_t(f["qlike"], base["qlike"]),
                    "dm_t_mse_vs_ewma094": diebold_mariano_t(f["mse"], base["mse"])}
             for name, f in losses.items()}
    return {"n_bars": int(len(base)), "first": str(base.index[0].date()), "forecasts": table}


def exposure_variants(close: pd.Series) -> dict[str, pd.Series]:
    """Every pre-declared BTC exposure: SMA-200 trend x vol target x HMM regime scale (weights at t)."""
    r = volatility.log_returns(close)
    trend = (close > close.rolling(200).mean()).astype(float).where(close.rolling(200).count() == 200)
    vt_ewma = regime.vol_target_scale(volatility.ewma_volatility(r), target_vol_annual=TARGET_VOL, timeframe="1d")
    garch = volatility.garch_forecast(r, min_train=MIN_TRAIN, refit_every=20).sigma
    vt_garch = regime.vol_target_scale(garch, target_vol_annual=TARGET_VOL, timeframe="1d")
    hmm2 = regime.hmm_regime(r, min_train=MIN_TRAIN, refit_every=30).bull_probability
    hmm2_mean = regime.hmm_regime(r, min_train=MIN_TRAIN, refit_every=30, label_by="mean_return").bull_probability
    hmm3 = regime.hmm_regime(r, n_states=3, min_train=MIN_TRAIN, refit_every=30).probabilities
    not_wildest = (1.0 - hmm3["state_2"]).rename("p")
    lin = regime.regime_scale(hmm2)
    return {
        "buy_and_hold": pd.Series(1.0, index=close.index),
        "trend": trend,
        "trend_vt_ewma": trend * vt_ewma,
        "trend_vt_garch": trend * vt_garch,
        "trend_vt_ewma_hmm2_linear": trend * vt_ewma * lin,
        "trend_vt_ewma_hmm2_step": trend * vt_ewma * regime.regime_scale(hmm2, mode="step"),
        "trend_vt_ewma_hmm2mean_linear": trend * vt_ewma * regime.regime_scale(hmm2_mean),
        "trend_vt_ewma_hmm3_linear": trend * vt_ewma * regime.regime_scale(not_wildest),
        "trend_vt_garch_hmm2_linear": trend * vt_garch * lin,
        "vt_ewma": vt_ewma,
        "vt_ewma_hmm2_linear": vt_ewma * lin,
    }


def exposure_table(close: pd.Series, start: str) -> dict[str, Any]:
    """Net-of-cost summaries from ``start``, paired bootstrap Sharpe differences, Sharpe per year."""
    weights = {name: w.fillna(0.0) for name, w in exposure_variants(close).items()}
    span = close.index >= pd.Timestamp(start, tz="UTC")
    net = {name: exposure_returns(w, close, cost_frac=COST_FRAC)[span] for name, w in weights.items()}
    pairs = [("trend_vt_ewma_hmm2_linear", "trend_vt_ewma"), ("trend_vt_ewma_hmm2_step", "trend_vt_ewma"),
             ("trend_vt_ewma_hmm2mean_linear", "trend_vt_ewma"), ("trend_vt_ewma_hmm3_linear", "trend_vt_ewma"),
             ("trend_vt_garch", "trend_vt_ewma"), ("trend_vt_garch_hmm2_linear", "trend_vt_garch"),
             ("vt_ewma_hmm2_linear", "vt_ewma"), ("trend_vt_ewma", "buy_and_hold")]
    return {
        "span": [str(close.index[span][0].date()), str(close.index[span][-1].date())],
        "variants": {name: summarize(net[name], weights[name][span]) for name in weights},
        "bootstrap_sharpe_diff": {f"{a} - {b}": block_bootstrap_sharpe_difference(net[a], net[b])
                                  for a, b in pairs},
        "yearly_sharpe": yearly_sharpe(net).round(3).to_dict(orient="index"),
    }

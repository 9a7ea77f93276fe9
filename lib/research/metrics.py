"""Pure: performance metrics of an equity curve and the buy-and-hold benchmarks to compare against.

Conventions (empyrical's, on a 365-day crypto calendar): simple bar returns; risk-free rate 0;
annualization only through ``lib.core.timeframes.periods_per_year(timeframe)``; volatility uses the
sample standard deviation (ddof=1); years = (number of bars - 1) / periods_per_year, i.e. the
curve's own bar count, so missing bars shorten the year count rather than being invented.
Undefined ratios (zero volatility, zero drawdown, too few bars) are NaN, never inf.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.core.timeframes import periods_per_year

NAN = float("nan")


def returns_from_equity(equity: pd.Series) -> pd.Series:
    """Simple bar returns ``equity[t] / equity[t-1] - 1`` (first bar dropped).

    A wiped-out book (equity 0) shows one -100 % bar and then 0 returns, not NaN.
    """
    values = equity.astype(float)
    previous = values.shift(1).iloc[1:]
    out = values.iloc[1:] / previous - 1.0
    return out.where(previous > 0, 0.0)


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Fall from the running peak at each bar as a fraction <= 0 (-0.2 = 20 % below the peak)."""
    values = equity.astype(float)
    return values / values.cummax() - 1.0


def max_drawdown(equity: pd.Series) -> float:
    """Largest peak-to-trough fall as a POSITIVE fraction (0.25 = fell 25 % from a peak)."""
    if len(equity) == 0:
        return NAN
    return float(-drawdown_series(equity).min())


def annualized_volatility(returns: pd.Series, *, timeframe: str) -> float:
    """Sample standard deviation of bar returns x sqrt(bars per year)."""
    if len(returns) < 2:
        return NAN
    return float(returns.std(ddof=1) * np.sqrt(periods_per_year(timeframe)))


def years_covered(equity: pd.Series, *, timeframe: str) -> float:
    return (len(equity) - 1) / periods_per_year(timeframe)


def cagr(equity: pd.Series, *, timeframe: str) -> float:
    """Compound annual growth rate: (end / start) ** (1 / years) - 1."""
    years = years_covered(equity, timeframe=timeframe)
    if years <= 0 or equity.iloc[0] <= 0:
        return NAN
    growth = float(equity.iloc[-1] / equity.iloc[0])
    return growth ** (1.0 / years) - 1.0 if growth > 0 else -1.0


def sharpe_ratio(returns: pd.Series, *, timeframe: str) -> float:
    """mean / std (ddof=1) of bar returns x sqrt(bars per year); risk-free rate 0."""
    if len(returns) < 2:
        return NAN
    std = float(returns.std(ddof=1))
    if not std > 0:
        return NAN
    return float(returns.mean()) / std * float(np.sqrt(periods_per_year(timeframe)))


def sortino_ratio(returns: pd.Series, *, timeframe: str) -> float:
    """mean / downside deviation x sqrt(bars per year); downside = sqrt(mean(min(r, 0)^2)) over ALL bars."""
    if len(returns) < 2:
        return NAN
    downside = float(np.sqrt(np.mean(np.minimum(returns.to_numpy(dtype=float), 0.0) ** 2)))
    if not downside > 0:
        return NAN
    return float(returns.mean()) / downside * float(np.sqrt(periods_per_year(timeframe)))


def calmar_ratio(equity: pd.Series, *, timeframe: str) -> float:
    """CAGR / max drawdown (NaN without a drawdown)."""
    drawdown = max_drawdown(equity)
    if not drawdown > 0:
        return NAN
    return cagr(equity, timeframe=timeframe) / drawdown


def hit_rate(returns: pd.Series) -> float:
    """Share of the bars with a non-zero return whose return is positive (flat bars are ignored)."""
    moved = returns[returns != 0]
    return float((moved > 0).mean()) if len(moved) else NAN


def average_gross_exposure(weights: pd.DataFrame) -> float:
    """Mean over bars of sum |weight| (1.0 = fully invested, 0 = all cash)."""
    return float(weights.abs().sum(axis=1).mean()) if len(weights) else NAN


def time_in_market_frac(weights: pd.DataFrame) -> float:
    """Share of bars with any non-zero position."""
    return float((weights.abs().sum(axis=1) > 0).mean()) if len(weights) else NAN


def annualized_turnover(traded_notional_quote: float, equity: pd.Series, *, timeframe: str) -> float:
    """Traded notional / mean equity per year (2.0 = the whole book bought and sold once a year)."""
    years = years_covered(equity, timeframe=timeframe)
    mean_equity = float(equity.mean())
    if years <= 0 or not mean_equity > 0:
        return NAN
    return traded_notional_quote / mean_equity / years


def summary_metrics(
    equity: pd.Series,
    *,
    timeframe: str,
    weights: pd.DataFrame | None = None,
    traded_notional_quote: float | None = None,
) -> dict[str, float]:
    """The headline numbers of one equity curve (fractions, annualized where named so)."""
    if len(equity) < 2:
        raise DataError(f"summary_metrics needs >= 2 equity points, got {len(equity)}")
    bar_returns = returns_from_equity(equity)
    summary = {
        "total_return_frac": float(equity.iloc[-1] / equity.iloc[0] - 1.0),
        "cagr_frac": cagr(equity, timeframe=timeframe),
        "volatility_annual_frac": annualized_volatility(bar_returns, timeframe=timeframe),
        "sharpe": sharpe_ratio(bar_returns, timeframe=timeframe),
        "sortino": sortino_ratio(bar_returns, timeframe=timeframe),
        "calmar": calmar_ratio(equity, timeframe=timeframe),
        "max_drawdown_frac": max_drawdown(equity),
        "hit_rate_frac": hit_rate(bar_returns),
        "years": years_covered(equity, timeframe=timeframe),
    }
    if weights is not None:
        summary["gross_exposure_frac"] = average_gross_exposure(weights)
        summary["time_in_market_frac"] = time_in_market_frac(weights)
    if traded_notional_quote is not None:
        summary["turnover_annual"] = annualized_turnover(traded_notional_quote, equity, timeframe=timeframe)
    return summary


def buy_and_hold_equity(close: pd.Series, *, starting_capital_quote: float = 1000.0) -> pd.Series:
    """Equity of buying one asset at its first close and holding it (no costs).

    Bars before the first price are cash (= starting capital); a later missing close is
    forward-filled (the asset is still held).
    """
    prices = close.astype(float).ffill()
    first = prices.first_valid_index()
    if first is None:
        raise DataError(f"buy_and_hold_equity: {close.name} has no price")
    return (starting_capital_quote * prices / prices.loc[first]).fillna(starting_capital_quote)


def equal_weight_equity(
    close_wide: pd.DataFrame, *, starting_capital_quote: float = 1000.0, rebalance_every_bars: int = 0
) -> pd.Series:
    """Equity of an equal-weight basket, bought at the first close, no costs.

    ``rebalance_every_bars = 0`` (default): never rebalanced; the basket is the assets priced at
    the first bar and the weights drift. ``k > 0``: reset to equal weights every k bars at the
    close, over the assets priced at that bar (later listings join at the next reset).
    An asset whose data ended (no close after some bar) is sold at its last close: its value is
    cash from then on, and resets spread it over the assets still trading, never over the ended one.
    """
    raw = close_wide.astype(float).to_numpy()
    prices = close_wide.astype(float).ffill().to_numpy()
    if len(prices) == 0 or not np.isfinite(prices[0]).any():
        raise DataError("equal_weight_equity: no asset has a price at the first bar")
    has_close = np.isfinite(raw)
    last_close = len(raw) - 1 - np.argmax(has_close[::-1], axis=0)  # columns without any are never priced
    step = rebalance_every_bars if rebalance_every_bars > 0 else len(prices)
    equity = np.empty(len(prices))
    units, cash = np.zeros(prices.shape[1]), 0.0
    for start in range(0, len(prices), step):
        stop = min(start + step, len(prices))
        value = float(np.nan_to_num(prices[start]) @ units) + cash if start else float(starting_capital_quote)
        priced = np.isfinite(prices[start]) & (start <= last_close)
        cash = 0.0 if priced.any() else value  # every asset ended: the basket is cash
        units = np.where(priced, value / max(int(priced.sum()), 1) / np.where(priced, prices[start], 1.0), 0.0)
        equity[start:stop] = np.nan_to_num(prices[start:stop]) @ units + cash
    return pd.Series(equity, index=close_wide.index, name="equal_weight")

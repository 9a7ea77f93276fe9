"""Pure: what a carry run produced: daily net returns (the research protocol's input), the usual metrics
(``lib.research.metrics`` on the daily equity curve) and the carry-specific ones: beta to BTC, funding
earned, price (basis) P&L gross and net of both legs' fees and slippage, fees, worst margin ratio, liquidations,
transfers, idle cash, per-year returns, 1-day VaR / CVaR of the sleeve (``lib.core.tail_risk``).

Days are UTC days; a day's equity is the equity at the close of its last hourly bar.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lib.core import tail_risk
from lib.core.errors import DataError
from lib.research import metrics
from lib.research.carry.book import CarryBookResult

DAY = "1d"


def _by_day(series: pd.Series) -> pd.Series:
    days = pd.to_datetime(series.index.to_numpy(dtype=np.int64), unit="ms", utc=True).floor("D")
    return pd.Series(series.to_numpy(), index=days).groupby(level=0).last()


def daily_equity(result: CarryBookResult) -> pd.Series:
    """Equity at the end of each UTC day (index: tz-aware midnight of that day), preceded by the starting
    equity on the day before the first, so that the first day's P&L is a return too."""
    days = _by_day(result.ledger["equity"])
    start = pd.Series([float(result.ledger["equity"].iloc[0])], index=[days.index[0] - pd.Timedelta(days=1)])
    return pd.concat([start, days]).rename("equity")


def daily_net_returns(result: CarryBookResult) -> pd.Series:
    """Net daily returns after every cost: one column of the research protocol's returns matrix."""
    return metrics.returns_from_equity(daily_equity(result)).rename("net_return")


def beta_to(returns: pd.Series, benchmark: pd.Series) -> float:
    """OLS slope of daily returns on the benchmark's daily returns over the days both have."""
    both = pd.concat([returns, benchmark], axis=1, join="inner").dropna()
    if len(both) < 3 or not both.iloc[:, 1].var(ddof=1) > 0:
        return float("nan")
    return float(both.iloc[:, 0].cov(both.iloc[:, 1]) / both.iloc[:, 1].var(ddof=1))


def yearly_returns(equity: pd.Series) -> dict[str, float]:
    """Return of each calendar year: year-end equity over the previous year-end (or the first day)."""
    out: dict[str, float] = {}
    previous = float(equity.iloc[0])
    for year, values in equity.groupby(equity.index.year):
        out[str(year)] = float(values.iloc[-1]) / previous - 1.0
        previous = float(values.iloc[-1])
    return out


def yearly_breakdown(result: CarryBookResult) -> dict[str, dict[str, float]]:
    """Per calendar year: funding earned, price (basis) P&L, fees + slippage, liquidation losses (quote)."""
    money = result.ledger[["funding", "price_pnl", "fees", "slippage", "liquidation_loss"]]
    years = pd.to_datetime(money.index.to_numpy(dtype=np.int64), unit="ms", utc=True).year
    ends = money.groupby(years).last()
    flows = ends.diff().fillna(ends)
    return {str(year): {"funding_quote": float(row["funding"]), "price_pnl_quote": float(row["price_pnl"]),
                        "costs_quote": float(row["fees"] + row["slippage"]),
                        "basis_pnl_net_quote": basis_pnl_net(row),
                        "liquidation_loss_quote": float(row["liquidation_loss"])} for year, row in flows.iterrows()}


def basis_pnl_net(money: pd.Series) -> float:
    """The basis (price) P&L of both legs net of both legs' fees and slippage, in quote (funding not included)."""
    return float(money["price_pnl"] - money["fees"] - money["slippage"])


def mean_holding_days(spot_weights: pd.DataFrame) -> float:
    """Mean length in days of the spells in which a coin's spot leg is held (NaN when never held)."""
    held = spot_weights > 0
    starts = (held & ~held.shift(1, fill_value=False)).to_numpy().sum()
    if not starts:
        return float("nan")
    return float(held.to_numpy().sum()) / float(starts) / 24.0  # hourly bars


def carry_metrics(result: CarryBookResult, benchmark_close: pd.Series) -> dict[str, Any]:
    """Every headline number of one run (fractions; money in quote)."""
    equity = daily_equity(result)
    if len(equity) < 2:
        raise DataError(f"a carry report needs >= 2 days, got {len(equity)}")
    ledger, last = result.ledger, result.ledger.iloc[-1]
    traded = float(result.trades["notional_quote"].sum()) if len(result.trades) else 0.0
    summary: dict[str, Any] = metrics.summary_metrics(equity, timeframe=DAY, traded_notional_quote=traded)
    returns = metrics.returns_from_equity(equity)
    bench = metrics.returns_from_equity(_by_day(benchmark_close.ffill()).dropna())
    weights = result.spot_weights
    idle = (ledger["spot_cash"] + ledger["margin_balance"]) / ledger["equity"]
    summary.update({
        "beta_to_btc": beta_to(returns, bench),
        "correlation_to_btc": float(pd.concat([returns, bench], axis=1, join="inner").corr().iloc[0, 1]),
        "funding_earned_quote": float(last["funding"]),
        "price_pnl_quote": float(last["price_pnl"]),
        "basis_pnl_net_quote": basis_pnl_net(last),
        "fees_paid_quote": float(last["fees"]),
        "slippage_paid_quote": float(last["slippage"]),
        "liquidation_loss_quote": float(last["liquidation_loss"]),
        "liquidations": result.liquidations,
        "worst_margin_ratio": float(last["worst_margin_ratio"]),
        "max_liquidation_probability_24h": float(last["max_liquidation_probability"]),
        "trade_count": len(result.trades),
        "transfer_count": len(result.transfers),
        "transfer_volume_quote": float(result.transfers["to_futures_quote"].abs().sum()),
        "idle_cash_frac_mean": float(idle.mean()),
        "spot_leg_weight_mean": float(weights.sum(axis=1).mean()),
        "time_in_market_frac": metrics.time_in_market_frac(weights),
        "mean_holding_days": mean_holding_days(weights),
        "final_equity_quote": float(last["equity"]),
        "yearly_returns": yearly_returns(equity),
        "yearly_breakdown": yearly_breakdown(result),
    })  # fmt: skip
    if len(returns.dropna()) >= tail_risk.MIN_OBSERVATIONS:
        for level in tail_risk.LEVELS:
            risk = tail_risk.tail_risk(returns, level)
            summary[f"var_{int(level * 100)}_hist"] = risk.historical_var
            summary[f"cvar_{int(level * 100)}_hist"] = risk.historical_cvar
            summary[f"var_{int(level * 100)}_gauss"] = risk.gaussian_var
    return summary

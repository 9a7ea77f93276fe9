"""Pure: when to hold each coin's carry pair and how big: causal funding forecast, hysteresis, risk budget, Kelly cap.

Causality: the weight stamped on the bar opening at t is decided at that bar's CLOSE and filled at the
next open (by ``book``). It uses funding prints settled at or before t (a print is known from its
settlement time on; t <= decision time - 1 h, so this is one bar conservative) and candles up to
the close of t.

Rule per coin: forecast = mean of the last ``forecast_settlements`` prints; expected funding over the
holding period = forecast x settlements per day x ``holding_days`` (fraction of notional). Enter when it
beats ``enter_cost_multiple`` x the round-trip cost (2 legs x (entry + exit) x (fee + slippage)); exit
when it falls below ``exit_cost_multiple`` x that cost; in between, keep the previous state (hysteresis).

Size: each held coin's spot leg gets ``risk_budget_daily`` / (its hedged daily volatility: std of spot
minus perp hourly returns x sqrt 24), capped at ``max_coin_weight``; the sleeve's total is capped by the
capital the book can fund (spot leg + 1/leverage collateral, minus a cash buffer) and by
``kelly_fraction`` x the Kelly leverage mu / sigma^2 of the held coins (mu = forecast funding yield, gross:
the round trip is already the entry/exit rule's, and netting it here again would force exits inside the
hysteresis band; sigma = weighted hedged volatility, i.e. correlation 1: conservative).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError
from lib.core.timeframes import DAYS_PER_YEAR
from lib.research.carry.market import CarryMarket

HOURS_PER_DAY = 24


@dataclass(frozen=True, slots=True, kw_only=True)
class CarryParams:
    """Sleeve rule and book frictions. Rates are fractions (0.001 = 10 bps). The defaults are the configuration
    chosen on 2020-2022 data (docs/research_carry.md: best Sharpe among those positive in every year, |beta| <= 0.1)."""

    forecast_settlements: int = 90  # trailing settled prints averaged (90 = 30 days at 8 h)
    holding_days: float = 30.0  # expected holding period the round trip is amortized over
    enter_cost_multiple: float = 1.0
    exit_cost_multiple: float = 0.0
    fee_rate: float = 0.001  # per leg per fill
    slippage_rate: float = 0.0005  # per leg per fill, against us
    leverage: float = 3.0  # short leg's collateral = notional / leverage
    max_coin_weight: float = 0.13  # spot-leg notional / equity, per coin
    risk_budget_daily: float = 0.005  # per coin: weight x hedged daily volatility <= this
    vol_window_hours: int = 720
    kelly_fraction: float = 0.25
    cash_buffer: float = 0.02  # equity share never committed (fees, gaps)
    settlements_per_day: float = 3.0
    rebalance_band: float = 0.25  # re-size a held coin when its spot leg is this far (fraction) from target
    min_trade_quote: float = 10.0  # ... and at least this far (quote): no dust re-sizes
    min_collateral_frac: float = 0.5  # top up when margin balance < this x (notional / leverage)
    liquidation_probability_limit: float = 0.005  # 24 h; above it the coin's collateral is reset at once
    liquidation_price: Literal["last", "mark_proxy"] = "last"  # the short's worst intrabar price, see book

    def __post_init__(self) -> None:
        checks = {
            "forecast_settlements": self.forecast_settlements >= 1,
            "holding_days": self.holding_days > 0,
            "exit_cost_multiple": self.exit_cost_multiple <= self.enter_cost_multiple,
            "fee_rate": 0 <= self.fee_rate < 0.05, "slippage_rate": 0 <= self.slippage_rate < 0.05,
            "leverage": 0 < self.leverage <= 20, "max_coin_weight": 0 < self.max_coin_weight <= 1,
            "risk_budget_daily": self.risk_budget_daily > 0, "vol_window_hours": self.vol_window_hours >= 24,
            "kelly_fraction": 0 < self.kelly_fraction <= 1, "cash_buffer": 0 <= self.cash_buffer < 1,
            "rebalance_band": 0 < self.rebalance_band < 1, "min_trade_quote": self.min_trade_quote >= 0,
            "min_collateral_frac": 0 < self.min_collateral_frac < 1,
            "liquidation_probability_limit": 0 < self.liquidation_probability_limit < 1,
        }
        if bad := [name for name, ok in checks.items() if not ok]:
            raise ConfigError(f"carry params out of range: {bad} ({self})")

    @property
    def round_trip_cost(self) -> float:
        """Fraction of notional: 2 legs x (entry + exit) x (fee + slippage)."""
        return 4.0 * (self.fee_rate + self.slippage_rate)

    @property
    def deployable_frac(self) -> float:
        """Largest spot-leg total the equity can fund with its collateral: (1 - buffer) / (1 + 1/leverage)."""
        return (1.0 - self.cash_buffer) / (1.0 + 1.0 / self.leverage)


def funding_forecast(market: CarryMarket, params: CarryParams) -> pd.DataFrame:
    """Per bar and coin: mean of the last N prints settled at or before the bar's open (NaN before N prints)."""
    window = params.forecast_settlements
    columns = {coin: market.funding[coin].rolling(window, min_periods=window).mean()
               .reindex(market.index, method="ffill") for coin in market.coins}
    return pd.DataFrame(columns, index=market.index)


def carry_state(forecast: pd.DataFrame, params: CarryParams) -> pd.DataFrame:
    """1.0 where the pair is held after the bar's close, else 0.0; hysteresis between the two thresholds."""
    expected = forecast * params.settlements_per_day * params.holding_days
    enter = expected > params.enter_cost_multiple * params.round_trip_cost
    leave = (expected < params.exit_cost_multiple * params.round_trip_cost) | forecast.isna()
    state = pd.DataFrame(np.nan, index=forecast.index, columns=forecast.columns)
    state = state.mask(enter, 1.0).mask(leave & ~enter, 0.0)
    return state.ffill().fillna(0.0)


def hedged_daily_volatility(market: CarryMarket, params: CarryParams) -> pd.DataFrame:
    """Rolling std of (spot - perp) hourly close returns x sqrt(24): the risk left in a hedged pair."""
    spot = market.spot_close.ffill().pct_change(fill_method=None)
    perp = market.perp_close.ffill().pct_change(fill_method=None)
    window = params.vol_window_hours
    return (spot - perp).rolling(window, min_periods=window // 2).std(ddof=1) * np.sqrt(HOURS_PER_DAY)


def perp_daily_volatility(market: CarryMarket, params: CarryParams) -> pd.DataFrame:
    """Rolling std of the perpetual's hourly log returns x sqrt(24): the liquidation-risk volatility forecast."""
    logs = np.log(market.perp_close.ffill()).diff()
    window = params.vol_window_hours
    return logs.rolling(window, min_periods=window // 2).std(ddof=1) * np.sqrt(HOURS_PER_DAY)


def carry_weights(market: CarryMarket, params: CarryParams) -> tuple[pd.DataFrame, pd.Series]:
    """Target spot-leg weight per bar and coin (the short leg is the same notional), and the Kelly-binding flag.

    A coin without a volatility estimate yet is not held (unknown risk = no position).
    """
    forecast = funding_forecast(market, params)
    state = carry_state(forecast, params)
    vol = hedged_daily_volatility(market, params)
    sized = (params.risk_budget_daily / vol.where(vol > 0)).clip(upper=params.max_coin_weight)
    raw = (state * sized).fillna(0.0)
    total = raw.sum(axis=1)
    mu = forecast * params.settlements_per_day * DAYS_PER_YEAR  # gross: costs are the entry/exit rule's job
    sigma = vol * np.sqrt(DAYS_PER_YEAR)
    weighted_mu = (raw * mu.fillna(0.0)).sum(axis=1) / total.where(total > 0)
    weighted_sigma = (raw * sigma.fillna(0.0)).sum(axis=1) / total.where(total > 0)
    kelly = (params.kelly_fraction * weighted_mu / weighted_sigma.pow(2)).clip(lower=0.0).fillna(0.0)
    cap = np.minimum(kelly, params.deployable_frac)
    scale = (cap / total.where(total > 0)).clip(upper=1.0).fillna(0.0)
    kelly_binds = (kelly < params.deployable_frac) & (kelly < total) & (total > 0)
    return raw.mul(scale, axis=0), kelly_binds

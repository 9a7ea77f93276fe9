"""The pre-trade tail pass: the liquidation guard (lib.execution.margin_guard) and the VaR/CVaR fit of the
target book (lib.execution.tail_risk_checks), on hand-computed cases."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pandas as pd
import pytest

from lib.core.venue import Holdings, MarketRules
from lib.execution.margin_guard import LIQUIDATION_RISK, guard_shorts, reductions_first
from lib.execution.orders import OrderPlan
from lib.execution.risk import RiskLimits, RiskRejection, RiskVerdict
from lib.execution.tail_risk_checks import TAIL_RISK_REFUSED, TAIL_RISK_SCALED, PreTrade, daily_volatility, fit_tail
from tests.unit.execution.test_risk import order

BTC = "BTC/USDT:USDT"
CRASH = [0.01] * 19 + [-0.10]  # worst 99 % VaR and CVaR: 10 % (tests/unit/core/test_tail_limits.py)


def closes_of(returns: list[float], start: float = 100.0) -> pd.Series:
    values = [start]
    for r in returns:
        values.append(values[-1] * (1 + r))
    return pd.Series(values)


def test_a_short_near_liquidation_is_cut_to_its_safe_size() -> None:
    # 0.1 BTC short @ 50 000, balance 500, sigma 5 %: safe 0.0643993 (tests/unit/core/test_short_margin.py)
    # -> weight floor -0.0643993 x 50 000 / 1 000 = -3.219966
    holdings = Holdings(cash_quote=500.0, amounts_base={BTC: -0.1})
    weights, held, rejections = guard_shorts({BTC: -5.0, "ETH/USDT:USDT": 0.2}, holdings=holdings,
                                             prices={BTC: 50_000.0, "ETH/USDT:USDT": 3_000.0}, sizing_quote=1_000.0,
                                             daily_volatility={BTC: 0.05}, limits=RiskLimits())
    assert weights[BTC] == pytest.approx(-3.219966, abs=1e-6) and weights["ETH/USDT:USDT"] == 0.2
    assert [r.check for r in rejections] == [LIQUIDATION_RISK] and rejections[0].symbol == BTC
    assert "cut to 0.0643993" in rejections[0].detail and "276.41 collateral" in rejections[0].detail
    assert held[0].liquidation_prob_24h == pytest.approx(0.0677956, abs=1e-7)


def test_a_safe_short_and_a_target_that_would_grow_past_the_limit() -> None:
    holdings = Holdings(cash_quote=500.0, amounts_base={BTC: -0.1})
    prices, vol = {BTC: 50_000.0}, {BTC: 0.03}
    same, _, none = guard_shorts({BTC: -5.0}, holdings=holdings, prices=prices, sizing_quote=1_000.0,
                                 daily_volatility=vol, limits=RiskLimits())
    assert same == {BTC: -5.0} and none == []
    # a target of 0.2 BTC (-10 x 1 000 / 50 000) on the same 500 breaches: cut, journaled as "target"
    grown, _, cut = guard_shorts({BTC: -10.0}, holdings=holdings, prices=prices, sizing_quote=1_000.0,
                                 daily_volatility=vol, limits=RiskLimits())
    assert -10.0 < grown[BTC] < -5.0 and cut[0].detail.startswith("target")
    off, _, _ = guard_shorts({BTC: -10.0}, holdings=holdings, prices=prices, sizing_quote=1_000.0,
                             daily_volatility=vol, limits=RiskLimits(max_liquidation_prob_24h=1.0))
    assert off == {BTC: -10.0}


def test_the_cut_rounds_down_to_the_amount_step() -> None:
    # safe 0.0643993 BTC with a 0.01 step: 0.06 (not 0.07, which would stay above the limit), minus 1e-8
    rules = MarketRules(symbol=BTC, base="BTC", quote="USDT", is_perpetual=True, amount_step=D("0.01"),
                        price_step=D("0.1"), min_amount_base=D("0.001"), max_amount_base=None,
                        min_notional_quote=D(5))
    holdings = Holdings(cash_quote=500.0, amounts_base={BTC: -0.1})
    weights, _, _ = guard_shorts({BTC: -5.0}, holdings=holdings, prices={BTC: 50_000.0}, sizing_quote=1_000.0,
                                 daily_volatility={BTC: 0.05}, limits=RiskLimits(), markets={BTC: rules})
    assert weights[BTC] == pytest.approx(-(0.06 - 1e-8) * 50, abs=1e-12)


def test_the_guarded_reduction_goes_first() -> None:
    sell = order("ETH/USDT", "sell", "1", 3_000.0)
    cover = order(BTC, "buy", "0.03", 50_000.0, reduce_only=True)
    plan = reductions_first(OrderPlan(orders=(sell, cover), skipped=()), frozenset({BTC}))
    assert plan.orders == (cover, sell)


def test_ewma_volatility_forecast_of_daily_closes() -> None:
    # 20 log returns of +-ln 1.02: the seed is their mean square, so the forecast is ln 1.02
    closes = pd.Series([100.0 * (1.02 if i % 2 else 1.0) for i in range(21)])
    assert daily_volatility({"A": closes})["A"] == pytest.approx(math.log(1.02), rel=1e-12)
    assert daily_volatility({"A": closes.iloc[:10]}) == {}


def test_a_breaching_target_is_scaled_or_refused() -> None:
    closes = {"A/USDT": closes_of(CRASH), "B/USDT": closes_of(CRASH)}
    scaled, changed, refused = fit_tail({"A/USDT": 1.0}, closes, fixed=set(), limits=RiskLimits())
    assert scaled["A/USDT"] == pytest.approx(0.8) and refused == []
    assert [r.check for r in changed] == [TAIL_RISK_SCALED] and "scaled by 0.8000" in changed[0].detail
    held, _, _ = fit_tail({"A/USDT": 1.0, "B/USDT": 0.5}, closes, fixed={"B/USDT"}, limits=RiskLimits())
    assert held["B/USDT"] == 0.5 and held["A/USDT"] == pytest.approx(0.3, abs=1e-9)
    same, none, refused = fit_tail({"A/USDT": 1.0}, closes, fixed=set(), limits=RiskLimits(tail_risk_action="refuse"))
    assert same == {"A/USDT": 1.0} and none == [] and [r.check for r in refused] == [TAIL_RISK_REFUSED]
    _, _, unknown = fit_tail({"C/USDT": 0.1}, closes, fixed=set(), limits=RiskLimits())
    assert "unknown" in unknown[0].detail
    young = {**closes, "N/USDT": closes_of(CRASH[-5:]).set_axis(range(15, 21))}  # listed 5 days ago
    _, _, new_listing = fit_tail({"A/USDT": 0.1, "N/USDT": 0.1}, young, fixed=set(), limits=RiskLimits())
    assert "fewer than 20 daily returns for ['N/USDT']" in new_listing[0].detail
    kept, _, none = fit_tail({"A/USDT": 0.5, "DEAD/USDT": 0.1}, closes, fixed={"DEAD/USDT"}, limits=RiskLimits())
    assert kept == {"A/USDT": 0.5, "DEAD/USDT": 0.1} and none == []  # held, no candles: left out, not refused
    cut, _, _ = fit_tail({"A/USDT": 1.0, "DEAD/USDT": 0.1}, closes, fixed={"DEAD/USDT"}, limits=RiskLimits())
    assert cut == {"A/USDT": pytest.approx(0.8), "DEAD/USDT": 0.1}


def test_a_refusal_keeps_only_risk_reducing_orders() -> None:
    sell, buy = order("ETH/USDT", "sell", "1", 3_000.0), order("BTC/USDT", "buy", "0.01", 50_000.0)
    refusal = RiskRejection(check=TAIL_RISK_REFUSED, symbol=None, detail="over the limit")
    holdings = Holdings(cash_quote=0.0, amounts_base={"ETH/USDT": 2.0})
    verdict = RiskVerdict(decision="trade", rejections=(), allowed_orders=(sell, buy))
    refused = PreTrade(target_weights={}, holdings=holdings, refusals=(refusal,)).refuse(verdict)
    assert refused.decision == "reduce_only" and refused.allowed_orders == (sell,)
    assert refused.rejections == (refusal,)
    assert PreTrade(target_weights={}, holdings=holdings).refuse(verdict) is verdict
    assert D(1) == sell.amount_base

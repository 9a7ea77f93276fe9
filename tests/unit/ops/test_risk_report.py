"""lib.ops.risk_report: the report's VaR/CVaR lines per book and sleeve, and the perp shorts' margin lines."""

from __future__ import annotations

import pandas as pd

from lib.core.state import Positions, Targets
from lib.ops.risk_report import margin_lines, risk_lines, sleeve_weights

CRASH = [0.01] * 19 + [-0.10]  # historical 99 % and 95 % VaR/CVaR of a unit weight: hand-computed below


def closes_of(returns: list[float]) -> pd.Series:
    values = [100.0]
    for r in returns:
        values.append(values[-1] * (1 + r))
    return pd.Series(values)


def test_sleeves_come_from_the_targets_breakdown() -> None:
    targets = Targets(as_of_ms=0, created_ms=1, strategy="combined", exchange="binance", market_type="spot",
                      timeframe="1d", weights={"A/USDT": 0.3, "B/USDT": 0.1},
                      breakdown={"A/USDT": {"sleeves": {"trend": 0.2, "carry": 0.1}},
                                 "B/USDT": {"sleeves": {"trend": 0.1, "carry": 0.0}}})
    assert sleeve_weights(targets) == {"trend": {"A/USDT": 0.2, "B/USDT": 0.1}, "carry": {"A/USDT": 0.1}}
    assert sleeve_weights(None) == {}


def test_book_and_sleeve_lines_hand_computed() -> None:
    # weight 0.5 of CRASH: historical 99 % VaR = CVaR = 0.5 x 10 % = 5 %; 95 %: the 95 % "higher" quantile of
    # 20 losses is the 20th smallest = the 10 % day again -> 5.00 % / 5.00 %
    closes = {"A/USDT": closes_of(CRASH)}
    lines = risk_lines(book_weights={"A/USDT": 0.5}, sleeves={"trend": {"A/USDT": 0.25}}, closes=closes,
                       lookback_days=365, margin=[])
    assert lines[1].startswith("  book 95%: hist 5.00%/5.00%") and lines[2].startswith("  book 99%: hist 5.00%/5.00%")
    assert lines[3].startswith("  sleeve trend (target) 95%: hist 2.50%/2.50%")
    unknown = risk_lines(book_weights={"C/USDT": 0.5}, sleeves={}, closes=closes, lookback_days=365, margin=[])
    assert "n/a" in unknown[1]


def test_margin_lines_of_a_short() -> None:
    # 0.1 BTC short, balance 500 at the mark 50 000, report price 50 000: L = 5 500 / 0.1004 = 54 780.9 (+9.6 %)
    positions = Positions(mode="paper", venue="binanceusdm_swap", updated_ms=0, cash_quote=500.0,
                          amounts_base={"BTC/USDT:USDT": -0.1}, marks={"BTC/USDT:USDT": 50_000.0}, equity_quote=500.0,
                          high_water_mark_quote=500.0, day_start_ms=0, day_start_equity_quote=500.0, inception_ms=0,
                          inception_equity_quote=500.0)
    swings = closes_of([0.03 if i % 2 else -0.03 for i in range(30)])
    lines = margin_lines(positions, {"BTC/USDT:USDT": 50_000.0}, {"BTC/USDT:USDT": swings}, max_probability=0.005,
                         fallback_rate=0.05)
    assert lines[0].startswith("  BTC/USDT:USDT short 0.1: margin ratio 0.0400, liquidation price 54780.9 (+9.6%)")
    assert margin_lines(positions, {}, {}, max_probability=0.005, fallback_rate=0.05)[0].endswith(
        "(no volatility forecast for the short BTC/USDT:USDT)")

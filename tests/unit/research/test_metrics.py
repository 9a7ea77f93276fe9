"""Unit tests for lib/research/metrics.py: hand-computed numbers on tiny curves, and the benchmarks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import DataError
from lib.research.metrics import (
    annualized_turnover,
    annualized_volatility,
    average_gross_exposure,
    buy_and_hold_equity,
    cagr,
    calmar_ratio,
    drawdown_series,
    equal_weight_equity,
    hit_rate,
    max_drawdown,
    returns_from_equity,
    sharpe_ratio,
    sortino_ratio,
    summary_metrics,
    time_in_market_frac,
)

DAY_MS = 86_400_000


def _curve(values: list[float]) -> pd.Series:
    return pd.Series(values, index=pd.Index(np.arange(len(values), dtype=np.int64) * DAY_MS), dtype=float)


# equity 100 -> 110 -> 99 -> 108.9: returns +10 %, -10 %, +10 %
ZIGZAG = _curve([100.0, 110.0, 99.0, 108.9])
ZIGZAG_MEAN = 0.1 / 3
ZIGZAG_STD = math.sqrt((2 * (0.1 - ZIGZAG_MEAN) ** 2 + (-0.1 - ZIGZAG_MEAN) ** 2) / 2)  # ddof=1
ZIGZAG_DOWNSIDE = math.sqrt(0.01 / 3)  # only the -10 % bar counts, averaged over all 3 bars


def test_returns_and_drawdown_series() -> None:
    np.testing.assert_allclose(returns_from_equity(ZIGZAG).to_numpy(), [0.1, -0.1, 0.1], rtol=1e-12)
    np.testing.assert_allclose(drawdown_series(ZIGZAG).to_numpy(), [0.0, 0.0, -0.1, -0.01], atol=1e-12)
    assert max_drawdown(ZIGZAG) == pytest.approx(0.1)


def test_wiped_out_book_has_one_minus_100_percent_bar_then_flat() -> None:
    assert returns_from_equity(_curve([100.0, 50.0, 0.0, 0.0])).tolist() == [-0.5, -1.0, 0.0]


@pytest.mark.parametrize(
    ("name", "compute", "expected"),
    [
        (
            "volatility 1d",
            lambda: annualized_volatility(returns_from_equity(ZIGZAG), timeframe="1d"),
            ZIGZAG_STD * math.sqrt(365),
        ),
        (
            "volatility 4h",
            lambda: annualized_volatility(returns_from_equity(ZIGZAG), timeframe="4h"),
            ZIGZAG_STD * math.sqrt(2190),
        ),
        (
            "sharpe 1d",
            lambda: sharpe_ratio(returns_from_equity(ZIGZAG), timeframe="1d"),
            ZIGZAG_MEAN / ZIGZAG_STD * math.sqrt(365),
        ),
        (
            "sharpe 1h",
            lambda: sharpe_ratio(returns_from_equity(ZIGZAG), timeframe="1h"),
            ZIGZAG_MEAN / ZIGZAG_STD * math.sqrt(8760),
        ),
        (
            "sortino 1d",
            lambda: sortino_ratio(returns_from_equity(ZIGZAG), timeframe="1d"),
            ZIGZAG_MEAN / ZIGZAG_DOWNSIDE * math.sqrt(365),
        ),
        ("cagr one year", lambda: cagr(_curve([100.0] + [105.0] * 364 + [110.0]), timeframe="1d"), 0.10),
        ("cagr two years", lambda: cagr(_curve([100.0] * 730 + [121.0]), timeframe="1d"), 0.10),
        (
            "cagr two 12h bars",
            lambda: cagr(_curve([100.0, 100.0, 100.0 * 1.21 ** (1 / 365)]), timeframe="12h"),
            0.21,
        ),
        (
            "calmar",
            lambda: calmar_ratio(_curve([100.0] + [80.0] * 364 + [110.0]), timeframe="1d"),
            0.10 / 0.20,
        ),
        ("hit rate", lambda: hit_rate(pd.Series([0.1, 0.0, -0.1, 0.2])), 2 / 3),
    ],
)
def test_metric_table(name: str, compute, expected: float) -> None:
    assert compute() == pytest.approx(expected, rel=1e-12), name


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sharpe of a flat curve", sharpe_ratio(pd.Series([0.0, 0.0, 0.0]), timeframe="1d")),
        ("sortino without losses", sortino_ratio(pd.Series([0.01, 0.02]), timeframe="1d")),
        ("calmar without drawdown", calmar_ratio(_curve([1.0, 2.0, 3.0]), timeframe="1d")),
        ("hit rate of flat bars", hit_rate(pd.Series([0.0, 0.0]))),
        ("volatility of one return", annualized_volatility(pd.Series([0.1]), timeframe="1d")),
    ],
)
def test_undefined_ratios_are_nan_not_inf(name: str, value: float) -> None:
    assert math.isnan(value), name


def test_exposure_and_turnover() -> None:
    weights = pd.DataFrame({"A": [0.0, 0.5, 0.5, 0.0], "B": [0.0, -0.25, 0.5, 0.0]})
    assert average_gross_exposure(weights) == pytest.approx((0 + 0.75 + 1.0 + 0) / 4)
    assert time_in_market_frac(weights) == pytest.approx(0.5)
    equity = _curve([1000.0] * 366)  # exactly one year of daily bars
    assert annualized_turnover(3000.0, equity, timeframe="1d") == pytest.approx(3.0)


def test_summary_metrics_has_every_number() -> None:
    weights = pd.DataFrame({"A": [0.0, 1.0, 1.0, 1.0]}, index=ZIGZAG.index)
    summary = summary_metrics(ZIGZAG, timeframe="1d", weights=weights, traded_notional_quote=100.0)
    assert summary["total_return_frac"] == pytest.approx(0.089)
    assert summary["max_drawdown_frac"] == pytest.approx(0.1)
    assert summary["sharpe"] == pytest.approx(ZIGZAG_MEAN / ZIGZAG_STD * math.sqrt(365))
    assert summary["years"] == pytest.approx(3 / 365)
    assert summary["gross_exposure_frac"] == pytest.approx(0.75)
    assert summary["turnover_annual"] == pytest.approx(100.0 / ZIGZAG.mean() / (3 / 365))
    assert set(summary) >= {
        "cagr_frac",
        "volatility_annual_frac",
        "sortino",
        "calmar",
        "hit_rate_frac",
        "time_in_market_frac",
    }


def test_summary_metrics_needs_two_points() -> None:
    with pytest.raises(DataError):
        summary_metrics(_curve([100.0]), timeframe="1d")


def test_buy_and_hold_equity_waits_for_first_price_and_holds_through_gaps() -> None:
    close = pd.Series([np.nan, 10.0, 20.0, np.nan, 30.0], name="BTC/USDT")
    equity = buy_and_hold_equity(close, starting_capital_quote=1000.0)
    assert equity.tolist() == pytest.approx([1000.0, 1000.0, 2000.0, 2000.0, 3000.0])


def test_buy_and_hold_without_prices_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no price"):
        buy_and_hold_equity(pd.Series([np.nan, np.nan], name="X/USDT"))


def test_equal_weight_never_rebalanced_drifts() -> None:
    close = pd.DataFrame({"A": [10.0, 20.0, 30.0], "B": [10.0, 10.0, 5.0]})
    # 50 units of each: 1000, 50*20 + 50*10, 50*30 + 50*5
    assert equal_weight_equity(close).tolist() == pytest.approx([1000.0, 1500.0, 1750.0])


def test_equal_weight_rebalanced_every_bar_resets_to_equal() -> None:
    close = pd.DataFrame({"A": [10.0, 20.0, 30.0], "B": [10.0, 10.0, 5.0]})
    # bar 1: 1500 -> 750 each; bar 2: 750*1.5 + 750*0.5 = 1500
    assert equal_weight_equity(close, rebalance_every_bars=1).tolist() == pytest.approx(
        [1000.0, 1500.0, 1500.0]
    )


def test_equal_weight_drops_a_coin_whose_data_ended() -> None:
    close = pd.DataFrame({"A": [100.0, 110.0, np.nan, np.nan], "B": [100.0, 100.0, 100.0, 120.0]})
    # 5 A + 5 B; A's data end at bar 1 (110): its 550 is cash from then on (not a frozen price)
    assert equal_weight_equity(close).tolist() == pytest.approx([1000.0, 1050.0, 1050.0, 1150.0])
    # reset at bar 2 over B only (A ended): 1050 / 100 = 10.5 B -> 1260 (a forward-filled A took half: 1155)
    assert equal_weight_equity(close, rebalance_every_bars=2).tolist() == pytest.approx(
        [1000.0, 1050.0, 1050.0, 1260.0]
    )
    everything_ended = pd.DataFrame({"A": [100.0, 110.0, np.nan, np.nan]})
    assert equal_weight_equity(everything_ended, rebalance_every_bars=2).tolist() == pytest.approx(
        [1000.0, 1100.0, 1100.0, 1100.0]
    )


def test_equal_weight_late_listing_joins_only_at_a_reset() -> None:
    close = pd.DataFrame({"A": [10.0, 10.0, 10.0, 10.0], "B": [np.nan, 10.0, 20.0, 40.0]})
    assert equal_weight_equity(close).tolist() == pytest.approx([1000.0] * 4)  # never holds B
    # reset at bar 2 (every 2 bars): B joins at 20, then doubles: 500 + 500 * 2
    assert equal_weight_equity(close, rebalance_every_bars=2).tolist() == pytest.approx(
        [1000.0, 1000.0, 1000.0, 1500.0]
    )

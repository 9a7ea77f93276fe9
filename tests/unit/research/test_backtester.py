"""Unit tests for lib/research/backtester.py: exact accounting by hand, causality, costs, invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.research.backtest_params import BacktestParams
from lib.research.backtester import TRADE_COLUMNS, BacktestResult, run_backtest
from tests.unit.research.backtest_frames import decision_targets, price_frame

HOUR_MS = 3_600_000
A, B = "A/USDT", "B/USDT"
ZERO_COST = {"fee_bps": 0.0, "slippage_bps": 0.0, "min_notional_quote": 0.0}






# ---- exact accounting ---------------------------------------------------------------------------


def test_hand_computed_two_assets_five_bars_with_fees_and_slippage() -> None:
    opens = price_frame({A: [100, 102, 104, 111, 108], B: [50, 49, 50, 45, 46]})
    closes = price_frame({A: [100, 104, 110, 108, 120], B: [50, 50, 45, 46, 40]})
    targets = decision_targets(closes, {0: {A: 0.5, B: 0.4}, 2: {A: 1.0, B: 0.0}})
    params = BacktestParams(fee_bps=10, slippage_bps=5, min_notional_quote=0)
    result = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=params)

    fee, slip = 0.001, 0.0005
    # bar 1 open: buy 500 quote of A at 102 and 400 of B at 49 (amounts sized at the open price,
    # filled 5 bps worse, 10 bps fee on the filled notional); cash covers it.
    units_a, units_b = 500 / 102, 400 / 49
    cash = 1000 - 500 * (1 + slip) * (1 + fee) - 400 * (1 + slip) * (1 + fee)
    equity_1 = cash + units_a * 104 + units_b * 50
    equity_2 = cash + units_a * 110 + units_b * 45
    # bar 3 open: equity 'cash + A*111 + B*45'; target A 100 %, B 0: sell all B, then buy A with
    # 'equity - A value' = cash + B*45 quote, scaled down so that the cash (sale proceeds after
    # slippage and fee + old cash) pays for it including its fee.
    available = cash + units_b * 45 * (1 - slip) * (1 - fee)
    wanted_a = (cash + units_b * 45) / 111
    scale = available / (wanted_a * 111 * (1 + slip) * (1 + fee))
    units_a_final = units_a + wanted_a * scale
    expected = [1000, equity_1, equity_2, units_a_final * 108, units_a_final * 120]

    np.testing.assert_allclose(result.equity.to_numpy(), expected, rtol=1e-13)
    trades = result.trades
    assert list(trades.columns) == list(TRADE_COLUMNS)
    assert trades["timestamp"].tolist() == [HOUR_MS, HOUR_MS, 3 * HOUR_MS, 3 * HOUR_MS]
    # one row per order, in symbol order within a rebalance
    assert trades["symbol"].tolist() == [A, B, A, B]
    assert trades["side"].tolist() == ["buy", "buy", "buy", "sell"]
    np.testing.assert_allclose(
        trades["price"].to_numpy(), [102 * 1.0005, 49 * 1.0005, 111 * 1.0005, 45 * 0.9995], rtol=1e-15
    )
    np.testing.assert_allclose(
        trades["amount_base"].to_numpy(), [units_a, units_b, wanted_a * scale, units_b], rtol=1e-13
    )
    notional = [500 * 1.0005, 400 * 1.0005, wanted_a * scale * 111 * 1.0005, units_b * 45 * 0.9995]
    np.testing.assert_allclose(trades["notional_quote"].to_numpy(), notional, rtol=1e-13)
    assert result.fees_paid_quote == pytest.approx(0.001 * sum(notional), rel=1e-13)
    slippage = [500 * slip, 400 * slip, wanted_a * scale * 111 * slip, units_b * 45 * slip]
    assert result.slippage_paid_quote == pytest.approx(sum(slippage), rel=1e-12)
    assert result.weights.iloc[4].tolist() == pytest.approx([1.0, 0.0])  # all cash spent on A
    assert result.turnover == pytest.approx(sum(notional) / np.mean(expected), rel=1e-12)


def test_zero_cost_constant_weights_equal_the_analytic_portfolio_return() -> None:
    rng = np.random.default_rng(11)
    closes = price_frame({s: 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 60))) for s in (A, B, "C/USDT")})
    opens = closes.shift(1).fillna(100.0)  # no gaps: every open equals the previous close
    opens.iloc[0] = closes.iloc[0]
    weights = {A: 0.5, B: 0.3, "C/USDT": 0.1}
    targets = decision_targets(closes, dict.fromkeys(range(60), weights))
    result = run_backtest(
        open_wide=opens, close_wide=closes, target_weights=targets, params=BacktestParams(**ZERO_COST)
    )
    bar_returns = closes.pct_change().iloc[1:] @ pd.Series(weights)
    expected = 1000 * np.cumprod(np.r_[1.0, 1.0 + bar_returns.to_numpy()])
    np.testing.assert_allclose(result.equity.to_numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(result.weights.iloc[1:].sum(axis=1), 0.9, atol=0.05)  # drift within a bar


def test_zero_cost_buy_and_hold_is_units_times_close() -> None:
    opens = price_frame({A: [10, 11, 12, 13], B: [20, 21, 19, 18]})
    closes = price_frame({A: [10, 12, 13, 9], B: [20, 22, 18, 20]})
    targets = decision_targets(closes, {0: {A: 0.6, B: 0.3}})
    result = run_backtest(
        open_wide=opens, close_wide=closes, target_weights=targets, params=BacktestParams(**ZERO_COST)
    )
    units_a, units_b, cash = 600 / 11, 300 / 21, 100.0
    expected = [1000] + [cash + units_a * a + units_b * b for a, b in [(12, 22), (13, 18), (9, 20)]]
    np.testing.assert_allclose(result.equity.to_numpy(), expected, rtol=1e-14)


# ---- causality ----------------------------------------------------------------------------------


def test_target_set_at_close_t_fills_at_open_t_plus_1_and_misses_the_gap() -> None:
    # bar 2 opens 50 % above bar 1's close; a target decided at bar 1's close must buy AFTER the gap
    opens = price_frame({A: [100, 100, 150, 150]})
    closes = price_frame({A: [100, 100, 150, 165]})
    targets = decision_targets(closes, {1: {A: 1.0}})
    result = run_backtest(
        open_wide=opens, close_wide=closes, target_weights=targets, params=BacktestParams(**ZERO_COST)
    )
    # filled at 150 (bar 2 open): equity at bar 2's close is still 1000; filling at bar 1's close
    # (look-ahead) would have shown 1500 here
    assert result.equity.tolist() == pytest.approx([1000, 1000, 1000, 1100])
    assert result.trades["timestamp"].tolist() == [2 * HOUR_MS]
    assert result.trades["price"].tolist() == [150.0]
    assert result.weights[A].tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0])


def test_target_on_the_last_bar_is_never_filled() -> None:
    closes = price_frame({A: [100, 101, 102]})
    targets = decision_targets(closes, {2: {A: 1.0}})
    result = run_backtest(
        open_wide=closes, close_wide=closes, target_weights=targets, params=BacktestParams()
    )
    assert result.trades.empty
    assert result.equity.tolist() == [1000, 1000, 1000]


@pytest.mark.parametrize("market", ["spot", "perp"])
def test_truncating_the_future_leaves_the_past_unchanged(market: str) -> None:
    rng = np.random.default_rng(5)
    n_bars, symbols = 120, [A, B, "C/USDT", "D/USDT"]
    closes = price_frame({s: 100 * np.exp(np.cumsum(rng.normal(0, 0.03, n_bars))) for s in symbols})
    closes.iloc[:30, 3] = np.nan  # D lists later
    opens = closes.shift(1) * np.exp(rng.normal(0, 0.005, closes.shape))
    opens.iloc[0] = closes.iloc[0]
    raw = pd.DataFrame(rng.uniform(0, 1, closes.shape), index=closes.index, columns=symbols)
    if market == "spot":
        targets = raw.div(raw.sum(axis=1), axis=0) * 0.95
    else:
        targets = raw - raw.mean(axis=1).to_numpy()[:, None]
    targets[closes.isna()] = 0.0
    targets.iloc[1::3] = np.nan  # some bars without a decision
    settle_ms = np.arange(0, n_bars * HOUR_MS, 8 * HOUR_MS) + HOUR_MS // 2  # mid-bar settlements
    funding = pd.DataFrame(rng.normal(1e-4, 3e-4, (len(settle_ms), 2)), index=settle_ms, columns=[A, B])
    vol = pd.DataFrame(rng.uniform(0.001, 0.02, closes.shape), index=closes.index, columns=symbols)
    params = BacktestParams(
        market=market,
        fee_bps=10,
        slippage_bps=5,
        slippage_vol_mult=0.5,
        min_notional_quote=10,
        no_trade_band_frac=0.01,
        rebalance_every_bars=2,
    )

    def run(cut: int) -> BacktestResult:
        return run_backtest(
            open_wide=opens.iloc[:cut],
            close_wide=closes.iloc[:cut],
            target_weights=targets.iloc[:cut],
            params=params,
            funding_wide=funding if market == "perp" else None,
            volatility_wide=vol.iloc[:cut],
        )

    full = run(n_bars)
    assert len(full.trades) > 20
    for cut in (17, 40, 41, 90):
        part = run(cut)
        pd.testing.assert_series_equal(part.equity, full.equity.iloc[:cut], rtol=1e-12)
        pd.testing.assert_frame_equal(part.weights, full.weights.iloc[:cut], rtol=1e-12)
        early = full.trades[full.trades["timestamp"] < cut * HOUR_MS].reset_index(drop=True)
        pd.testing.assert_frame_equal(part.trades, early, rtol=1e-12)


# ---- costs and frictions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("long_rate", "short_rate", "expected_paid"),
    [
        (0.001, 0.0, 0.5),  # long pays a positive rate: 0.1 % of 500
        (-0.001, 0.0, -0.5),  # long receives a negative rate
        (0.0, 0.001, -0.5),  # short receives a positive rate
        (0.0, -0.002, 1.0),  # short pays a negative rate
        (0.001, 0.001, 0.0),  # dollar-neutral book, same rate: nets out
    ],
)
def test_funding_sign(long_rate: float, short_rate: float, expected_paid: float) -> None:
    prices = price_frame({A: [100] * 6, B: [100] * 6})
    targets = decision_targets(prices, {0: {A: 0.5, B: -0.5}})
    # one settlement at bar 3's open, one before the position exists (bar 0), one mid bar 4
    funding = pd.DataFrame(
        {A: [long_rate, long_rate, long_rate], B: [short_rate, short_rate, short_rate]},
        index=[0, 3 * HOUR_MS, 4 * HOUR_MS + HOUR_MS // 2],
    )
    result = run_backtest(
        open_wide=prices,
        close_wide=prices,
        target_weights=targets,
        params=BacktestParams(market="perp", **ZERO_COST),
        funding_wide=funding,
    )
    assert result.funding_paid_quote == pytest.approx(2 * expected_paid)
    # bar 0 settles before the fill (bar 1): not charged; bars 3 and 4 each charge once
    assert result.equity.tolist() == pytest.approx(
        [1000, 1000, 1000, 1000 - expected_paid, 1000 - 2 * expected_paid, 1000 - 2 * expected_paid]
    )


def test_funding_on_a_spot_backtest_is_refused() -> None:
    prices = price_frame({A: [100, 100]})
    with pytest.raises(DataError, match="perp"):
        run_backtest(
            open_wide=prices,
            close_wide=prices,
            target_weights=decision_targets(prices, {}),
            params=BacktestParams(),
            funding_wide=pd.DataFrame({A: [0.001]}, index=[0]),
        )


def test_min_notional_leaves_dust_on_a_small_book() -> None:
    prices = price_frame({A: [100] * 7})
    targets = decision_targets(prices, {0: {A: 0.008}, 1: {A: 0.5}, 3: {A: 0.492}, 5: {A: 0.0}})
    params = BacktestParams(fee_bps=0, slippage_bps=0, min_notional_quote=10)
    result = run_backtest(open_wide=prices, close_wide=prices, target_weights=targets, params=params)
    # $8 buy skipped; $500 buy done; $8 trim skipped; $500 exit done
    assert result.trades["notional_quote"].tolist() == pytest.approx([500.0, 500.0])
    assert result.trades["timestamp"].tolist() == [2 * HOUR_MS, 6 * HOUR_MS]
    assert result.weights[A].tolist() == pytest.approx([0, 0, 0.5, 0.5, 0.5, 0.5, 0])


def test_dust_below_min_notional_cannot_be_sold() -> None:
    prices = price_frame({A: [100, 100, 100, 1.0, 1.0]})  # the position collapses to $5
    targets = decision_targets(prices, {0: {A: 0.5}, 3: {A: 0.0}})
    params = BacktestParams(fee_bps=0, slippage_bps=0, min_notional_quote=10)
    result = run_backtest(open_wide=prices, close_wide=prices, target_weights=targets, params=params)
    assert len(result.trades) == 1  # the exit of $5 is under the minimum: the dust stays
    assert result.equity.iloc[-1] == pytest.approx(505.0)


def test_no_trade_band_skips_small_reweights() -> None:
    prices = price_frame({A: [100] * 5, B: [100] * 5})
    targets = decision_targets(prices, {0: {A: 0.5, B: 0.5}, 2: {A: 0.51, B: 0.40}})
    params = BacktestParams(fee_bps=0, slippage_bps=0, min_notional_quote=0, no_trade_band_frac=0.05)
    result = run_backtest(open_wide=prices, close_wide=prices, target_weights=targets, params=params)
    assert result.trades["symbol"].tolist() == [A, B, B]  # A stays at 0.5; B moves to 0.40
    assert result.weights.iloc[-1].tolist() == pytest.approx([0.5, 0.4])


def test_volatility_scaled_slippage_uses_the_decision_bar_volatility() -> None:
    prices = price_frame({A: [100, 100, 100]})
    vol = price_frame({A: [0.02, 0.5, 0.5]})  # only bar 0 (the decision bar) matters
    targets = decision_targets(prices, {0: {A: 0.5}})
    params = BacktestParams(fee_bps=0, slippage_bps=5, slippage_vol_mult=0.1, min_notional_quote=0)
    result = run_backtest(
        open_wide=prices, close_wide=prices, target_weights=targets, params=params, volatility_wide=vol
    )
    assert result.trades["price"].tolist() == pytest.approx([100 * (1 + 0.0005 + 0.1 * 0.02)])
    assert result.slippage_paid_quote == pytest.approx(500 * (0.0005 + 0.002))


def test_missing_open_blocks_trading_that_asset_only() -> None:
    opens = price_frame({A: [100, np.nan, 100], B: [100, 100, 100]})
    closes = price_frame({A: [100, 100, 100], B: [100, 100, 100]})
    targets = decision_targets(closes, {0: {A: 0.4, B: 0.4}})
    result = run_backtest(
        open_wide=opens, close_wide=closes, target_weights=targets, params=BacktestParams(**ZERO_COST)
    )
    assert result.trades["symbol"].tolist() == [B]


def test_rebalance_schedule_ignores_off_schedule_rows() -> None:
    prices = price_frame({A: [100] * 6})
    targets = decision_targets(prices, {0: {A: 0.2}, 1: {A: 0.9}, 3: {A: 0.6}})
    params = BacktestParams(fee_bps=0, slippage_bps=0, min_notional_quote=0, rebalance_every_bars=3)
    result = run_backtest(open_wide=prices, close_wide=prices, target_weights=targets, params=params)
    assert result.weights[A].tolist() == pytest.approx([0, 0.2, 0.2, 0.2, 0.6, 0.6])


# ---- invariants ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_spot_cash_never_negative_and_weights_long_only(seed: int) -> None:
    rng = np.random.default_rng(seed)
    symbols = [f"X{k}/USDT" for k in range(6)]
    closes = price_frame({s: 100 * np.exp(np.cumsum(rng.normal(0, 0.05, 80))) for s in symbols})
    opens = closes.shift(1).fillna(100.0) * np.exp(rng.normal(0, 0.02, closes.shape))
    raw = pd.DataFrame(rng.uniform(0, 1, closes.shape), index=closes.index, columns=symbols)
    targets = raw.div(raw.sum(axis=1), axis=0)  # fully invested every bar: the cash fit must bind
    params = BacktestParams(fee_bps=25, slippage_bps=20, min_notional_quote=10)
    result = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=params)
    assert (result.weights.to_numpy() >= 0).all()
    assert (result.weights.sum(axis=1) <= 1 + 1e-9).all()  # held value <= equity <=> cash >= 0
    assert (result.equity > 0).all()
    assert result.fees_paid_quote > 0


def test_perp_book_that_loses_everything_is_liquidated_and_stays_flat() -> None:
    opens = price_frame({A: [100, 100, 150, 300, 300]})
    closes = price_frame({A: [100, 100, 200, 400, 100]})
    targets = decision_targets(closes, {0: {A: -1.0}, 3: {A: -1.0}})
    result = run_backtest(
        open_wide=opens,
        close_wide=closes,
        target_weights=targets,
        params=BacktestParams(market="perp", **ZERO_COST),
    )
    # short 10 units at 100: equity 1000 - 10 * (close - 100) -> 0 at a close of 200
    assert result.equity.tolist() == pytest.approx([1000, 1000, 0, 0, 0])
    assert result.weights[A].tolist() == pytest.approx([0, -1, 0, 0, 0])
    assert len(result.trades) == 1  # nothing traded after the wipe-out


# ---- inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({A: -0.1, B: 0.5}, ">= 0"),
        ({A: 0.7, B: 0.4}, "sum to <= 1"),
        ({A: np.inf, B: 0.0}, "inf"),
    ],
)
def test_bad_spot_targets_raise(weights: dict[str, float], message: str) -> None:
    prices = price_frame({A: [100, 100], B: [100, 100]})
    with pytest.raises(DataError, match=message):
        run_backtest(
            open_wide=prices,
            close_wide=prices,
            target_weights=decision_targets(prices, {0: weights}),
            params=BacktestParams(),
        )


def test_misaligned_frames_and_unknown_symbols_raise() -> None:
    prices = price_frame({A: [100, 100, 100]})
    with pytest.raises(DataError, match="same index"):
        run_backtest(
            open_wide=prices.iloc[:2], close_wide=prices, target_weights=prices * 0, params=BacktestParams()
        )
    with pytest.raises(DataError, match="not bars"):
        shifted = decision_targets(prices, {0: {A: 0.1}}).set_axis(prices.index + 1)
        run_backtest(open_wide=prices, close_wide=prices, target_weights=shifted, params=BacktestParams())
    with pytest.raises(DataError, match="without prices"):
        run_backtest(
            open_wide=prices,
            close_wide=prices,
            target_weights=price_frame({B: [0.1, 0.1, 0.1]}),
            params=BacktestParams(),
        )


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"market": "futures"}, "backtest.market"),
        ({"starting_capital_quote": 0.0}, "backtest.starting_capital_quote"),
        ({"fee_bps": -1.0}, "backtest.fee_bps"),
        ({"slippage_bps": float("nan")}, "backtest.slippage_bps"),
        ({"slippage_vol_mult": -0.1}, "backtest.slippage_vol_mult"),
        ({"min_notional_quote": -5.0}, "backtest.min_notional_quote"),
        ({"no_trade_band_frac": -0.01}, "backtest.no_trade_band_frac"),
        ({"rebalance_every_bars": 0}, "backtest.rebalance_every_bars"),
    ],
)
def test_bad_backtest_params_raise_config_error(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        BacktestParams(**kwargs)


# ---- real data ----------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_btc_buy_and_hold_matches_price_ratio(shared_data_dir) -> None:
    candles = pd.read_parquet(shared_data_dir / "market" / "1d" / "BTC-USDT.parquet").set_index("timestamp")
    opens, closes = (
        candles[["open"]].rename(columns={"open": "BTC/USDT"}),
        candles[["close"]].rename(columns={"close": "BTC/USDT"}),
    )
    targets = decision_targets(closes, {0: {"BTC/USDT": 1.0}})
    result = run_backtest(
        open_wide=opens, close_wide=closes, target_weights=targets, params=BacktestParams(**ZERO_COST)
    )
    expected = 1000 * closes["BTC/USDT"].iloc[1:] / opens["BTC/USDT"].iloc[1]
    np.testing.assert_allclose(result.equity.iloc[1:].to_numpy(), expected.to_numpy(), rtol=1e-12)

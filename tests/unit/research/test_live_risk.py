"""Unit tests for the live risk layer in the backtester (lib/research/live_risk.py) and the data-end exit:
hand-computed equity, trades and counts; the halt decision reads no future."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.execution.risk import RiskLimits
from lib.execution.risk_targets import clip_target_weights
from lib.research.backtest_params import BacktestParams
from lib.research.backtester import run_backtest
from lib.research.live_risk import LiveRiskLimits, reduce_only_weights
from tests.unit.research.backtest_frames import decision_targets, price_frame

A, B = "A/USDT", "B/USDT"
ZERO_COST = BacktestParams(fee_bps=0.0, slippage_bps=0.0, min_notional_quote=0.0)






def _limits(**overrides: object) -> LiveRiskLimits:
    """The backtest's limits are the [risk] section's own values (RiskLimits), here with caps that do not bind."""
    values: dict[str, object] = {"max_asset_weight_frac": 1.0, "max_order_notional_quote": Decimal("1e9")}
    return LiveRiskLimits.from_risk_limits(RiskLimits(**(values | overrides)))  # type: ignore[arg-type]


def test_limits_are_the_risk_sections_values() -> None:
    limits = LiveRiskLimits.from_risk_limits(RiskLimits())
    assert (limits.max_drawdown_frac, limits.daily_loss_limit_frac, limits.max_asset_weight_frac) == (0.25, 0.05, 0.35)
    assert (limits.max_order_notional_quote, limits.max_orders_per_run) == (500.0, 40)


def test_a_drawdown_from_the_high_water_mark_flattens_and_stays_flat_to_the_end() -> None:
    opens = price_frame({A: [100, 100, 110, 85, 70]}, MS_PER_HOUR)
    closes = price_frame({A: [100, 120, 90, 80, 100]}, MS_PER_HOUR)
    targets = decision_targets(closes, {bar: {A: 1.0} for bar in range(4)})
    limits = _limits(max_drawdown_frac=0.25, daily_loss_limit_frac=1.0)
    live = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=ZERO_COST,
                        live_risk=limits)
    # bar 1 open: 10 A at 100. Tick at bar 2's open: equity 10 x 110 = 1100, peak = close of bar 1 = 1200,
    # down 8.3 % < 25 %: trade (already at target). Tick at bar 3: 850 vs peak 1200 = down 29.2 % -> sell
    # all 10 at 85 -> 850 cash to the end, although the target still wants A and A recovers to 100.
    assert live.equity.tolist() == pytest.approx([1000, 1200, 900, 850, 850], rel=1e-15)
    assert live.trades[["timestamp", "side", "amount_base", "price"]].values.tolist() == [
        [1 * MS_PER_HOUR, "buy", 10.0, 100.0], [3 * MS_PER_HOUR, "sell", 10.0, 85.0]]
    assert live.live_risk is not None
    assert (live.live_risk.halted_at_ms, live.live_risk.halted_bars) == (3 * MS_PER_HOUR, 2)
    assert live.weights[A].tolist()[3:] == [0.0, 0.0]
    unmodelled = dataclasses.replace(ZERO_COST, model_live_risk=False)
    off = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=unmodelled,
                       live_risk=limits)
    assert off.equity.tolist() == pytest.approx([1000, 1200, 900, 800, 1000], rel=1e-15)
    assert off.live_risk is None


def test_an_unfinished_flatten_is_retried_at_the_next_tick() -> None:
    nan = np.nan
    opens = price_frame({A: [100, 100, 110, 85, 70], B: [100, 100, 110, nan, 100]}, MS_PER_HOUR)
    closes = price_frame({A: [100, 120, 90, 80, 100], B: [100, 100, 100, 100, 80]}, MS_PER_HOUR)
    targets = decision_targets(closes, {bar: {A: 0.5, B: 0.5} for bar in range(4)})
    live = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=ZERO_COST,
                        live_risk=_limits(max_drawdown_frac=0.1, daily_loss_limit_frac=1.0))
    # 5 A + 5 B; bar 2's open: 550 each (on target), 1050 vs peak 1100: trade nothing. Bar 3's open: 425 + 500
    # (B has no open: valued at its last close) = 925, down 15.9 % -> sell A at 85; B cannot trade. Bar 4's
    # open: the flatten is retried, B sold at 100 -> 925 cash, before B's close of 80.
    assert live.equity.tolist() == pytest.approx([1000, 1100, 950, 925, 925], rel=1e-15)
    assert live.trades[["timestamp", "symbol", "side"]].values.tolist()[2:] == [
        [3 * MS_PER_HOUR, A, "sell"], [4 * MS_PER_HOUR, B, "sell"]]


def _daily_loss_case(second_target: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    opens = price_frame({A: [100, 100, 80, 80]}, MS_PER_DAY)
    closes = price_frame({A: [100, 80, 70, 90]}, MS_PER_DAY)
    return opens, closes, decision_targets(closes, {0: {A: 0.5}, 1: {A: second_target}, 2: {A: 1.0}})


def test_a_daily_loss_allows_only_risk_reducing_orders_that_day() -> None:
    opens, closes, targets = _daily_loss_case(second_target=1.0)
    limits = _limits(max_drawdown_frac=0.5, daily_loss_limit_frac=0.05)
    live = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=ZERO_COST,
                        live_risk=limits)
    # bar 1 open: 5 A at 100, 500 cash; close 80 -> 900. Tick at day 2's open: the day started at the
    # last run before it (day 1's open, valued at day 0's close: 1000); 900 is 10 % down >= 5 % -> reduce-only:
    # the buy up to 100 % is refused; close 70 -> 850. Tick at day 3's open (80): the day started at day 2's
    # run (900 at day 1's close), equity 5 x 80 + 500 = 900: trade, buy 500 / 80 = 6.25 A; close 90.
    assert live.equity.tolist() == pytest.approx([1000, 900, 850, 11.25 * 90], rel=1e-15)
    assert live.trades[["timestamp", "side", "amount_base"]].values.tolist() == [
        [1 * MS_PER_DAY, "buy", 5.0], [3 * MS_PER_DAY, "buy", 6.25]]
    assert live.live_risk is not None
    assert (live.live_risk.reduce_only_days, live.live_risk.reduce_only_bars, live.live_risk.halted_bars) == (1, 1, 0)
    off = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=ZERO_COST)
    assert off.equity.tolist() == pytest.approx([1000, 900, 11.25 * 70, 11.25 * 90], rel=1e-15)


def test_reduce_only_still_sells_down_to_the_target() -> None:
    opens, closes, targets = _daily_loss_case(second_target=0.2)
    live = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=ZERO_COST,
                        live_risk=_limits(max_drawdown_frac=0.5, daily_loss_limit_frac=0.05))
    # day 2 (reduce-only): 20 % of 900 = 180 quote of A -> sell 220 / 80 = 2.75 A; day 3 buys 720 / 80 = 9 A.
    assert live.trades[["side", "amount_base"]].values.tolist() == [["buy", 5.0], ["sell", 2.75], ["buy", 9.0]]
    np.testing.assert_allclose(reduce_only_weights(np.array([0.5, 0.1, -0.2, 0.2, 0.3]),
                                                   np.array([0.3, 0.3, 0.3, -0.3, 0.0])), [0.3, 0.1, 0.0, 0.0, 0.0])


def test_a_cap_breach_sends_nothing_that_tick() -> None:
    opens = price_frame({A: [100, 100, 100]}, MS_PER_DAY)
    closes = price_frame({A: [100, 100, 100]}, MS_PER_DAY)
    for targets, limits, check in (
        (decision_targets(closes, {0: {A: 0.3}}), _limits(max_order_notional_quote=Decimal(250)), "fat_finger"),
        (decision_targets(closes, {0: {A: 0.3}}), _limits(max_gross_exposure_frac=0.2), "exposure"),
    ):
        live = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=ZERO_COST,
                            live_risk=limits)
        assert live.trades.empty and live.equity.tolist() == [1000.0] * 3
        assert live.live_risk is not None and live.live_risk.blocked_ticks == {check: 1}


def test_an_over_cap_target_is_clipped_to_the_cap_as_live_and_the_rest_trades() -> None:
    opens = price_frame({A: [100, 100, 100], B: [50, 50, 50]}, MS_PER_DAY)
    closes = price_frame({A: [100, 100, 100], B: [50, 50, 50]}, MS_PER_DAY)
    risk = RiskLimits(max_asset_weight_frac=0.35, max_order_notional_quote=Decimal("1e9"))
    wanted = decision_targets(closes, {0: {A: 0.5, B: 0.2}})
    live = run_backtest(open_wide=opens, close_wide=closes, target_weights=wanted,
                        params=ZERO_COST, live_risk=LiveRiskLimits.from_risk_limits(risk))
    # A wants 50 % > the 35 % cap: 350 / 100 = 3.5 A; B is under the cap: 200 / 50 = 4 B (live clips the same way)
    assert live.trades[["symbol", "amount_base"]].values.tolist() == [[A, 3.5], [B, 4.0]]
    assert live.live_risk is not None and (live.live_risk.clipped_ticks, live.live_risk.blocked_ticks) == (1, {})
    assert clip_target_weights({A: 0.5, B: 0.2}, risk)[0] == {A: 0.35, B: 0.2}


REARM_OPENS = {A: [100, 100, 110, 85, 75, 85, 70, 62]}
REARM_CLOSES = {A: [100, 120, 90, 80, 70, 70, 60, 65]}


def test_a_halt_is_cleared_after_the_review_delay_with_the_peak_reset_to_that_runs_equity() -> None:
    opens, closes = price_frame(REARM_OPENS, MS_PER_DAY), price_frame(REARM_CLOSES, MS_PER_DAY)
    targets = decision_targets(closes, {bar: {A: 1.0} for bar in range(7)})
    limits = _limits(max_drawdown_frac=0.25, daily_loss_limit_frac=1.0)
    params = dataclasses.replace(ZERO_COST, halt_review_days=2)
    live = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=params, live_risk=limits)
    # day 1: 10 A at 100 (1200 at the close). Day 3's open: 850 vs peak 1200 = down 29 % -> sell 10 at 85, halt.
    # Review due 2 days later: day 4 is still halted (flat, 850); day 5's run is the cleared one: the peak becomes
    # 850 (not 1200: 850 would be 29 % down from it and halt again at once), buy 850 / 85 = 10 A; close 70 -> 700.
    # Day 6's open: 700 vs 850 = down 17.6 %: trade (on target); close 60 -> 600. Day 7's open: 620 vs 850 = down
    # 27 % -> sell 10 at 62 and halt again, to the end (its review would be day 9).
    assert live.equity.tolist() == pytest.approx([1000, 1200, 900, 850, 850, 700, 600, 620], rel=1e-15)
    assert live.trades[["timestamp", "side", "amount_base", "price"]].values.tolist() == [
        [1 * MS_PER_DAY, "buy", 10.0, 100.0], [3 * MS_PER_DAY, "sell", 10.0, 85.0],
        [5 * MS_PER_DAY, "buy", 10.0, 85.0], [7 * MS_PER_DAY, "sell", 10.0, 62.0]]
    assert live.live_risk is not None
    assert live.live_risk.halts == ((3 * MS_PER_DAY, 5 * MS_PER_DAY), (7 * MS_PER_DAY, None))
    assert (live.live_risk.halted_at_ms, live.live_risk.halted_bars) == (3 * MS_PER_DAY, 2 + 1)
    never = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, live_risk=limits,
                         params=dataclasses.replace(ZERO_COST, halt_review_days=0))
    assert never.equity.tolist() == pytest.approx([1000, 1200, 900] + [850] * 5, rel=1e-15)
    assert never.live_risk is not None and never.live_risk.halts == ((3 * MS_PER_DAY, None),)
    assert never.live_risk.halted_bars == 5


def test_on_hourly_bars_the_review_delay_is_calendar_days_and_the_daily_limit_applies_after_the_clear() -> None:
    hours = 30
    opens = {A: [100.0, 100.0] + [70.0] * 25 + [60.0] * 3}  # bars 2..26 open at 70, bars 27.. at 60
    closes = {A: [100.0, 100.0] + [70.0] * 24 + [66.0] + [60.0] * 3}  # bar 26 closes at 66
    frame_open, frame_close = price_frame(opens, MS_PER_HOUR), price_frame(closes, MS_PER_HOUR)
    targets = decision_targets(frame_close, {bar: {A: 1.0} for bar in range(hours - 1)})
    limits = _limits(max_drawdown_frac=0.25, daily_loss_limit_frac=0.1)
    live = run_backtest(open_wide=frame_open, close_wide=frame_close, target_weights=targets, live_risk=limits,
                        params=dataclasses.replace(ZERO_COST, halt_review_days=1))
    # 01:00 day 0: 10 A at 100. 02:00: 700 = down 30 % from 1000 -> sell at 70, halt (700 cash). Review due 24 h
    # later, at bar 26 (02:00 day 1): peak = start of day = 700, buy 10 A at 70; close 66. Bar 27's open 60: 600 =
    # down 14.3 % from 700: no 25 % drawdown, but a 10 % daily loss -> reduce-only: A is held, nothing traded.
    assert live.live_risk is not None and live.live_risk.halts == ((2 * MS_PER_HOUR, 26 * MS_PER_HOUR),)
    assert live.trades[["timestamp", "side", "price"]].values.tolist() == [
        [1 * MS_PER_HOUR, "buy", 100.0], [2 * MS_PER_HOUR, "sell", 70.0], [26 * MS_PER_HOUR, "buy", 70.0]]
    assert (live.live_risk.reduce_only_days, live.live_risk.halted_bars) == (1, 24)
    assert live.equity.iloc[25:].tolist() == pytest.approx([700, 660, 600, 600, 600], rel=1e-15)


def test_a_negative_review_delay_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"backtest\.halt_review_days"):
        BacktestParams(halt_review_days=-1)


def test_a_held_coin_whose_candles_stop_is_sold_at_its_last_close() -> None:
    nan = np.nan
    opens = price_frame({A: [100, 100, 100, nan, nan], B: [50, 50, 50, 50, 50]}, MS_PER_DAY)
    closes = price_frame({A: [100, 100, 110, nan, nan], B: [50, 50, 50, 55, 60]}, MS_PER_DAY)
    targets = decision_targets(closes, {0: {A: 0.4, B: 0.4}})
    params = BacktestParams(fee_bps=10, slippage_bps=0, min_notional_quote=0)
    result = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=params)
    # bar 1: 4 A, 8 B, fees 0.8 -> cash 199.2. A's last close is bar 2 (110): sold there, fee 0.44.
    cash = 1000 - 800 - 0.8 + 4 * 110 * (1 - 0.001)
    assert result.equity.tolist() == pytest.approx(
        [1000, 999.2, 199.2 + 440 + 400, cash + 8 * 55, cash + 8 * 60], rel=1e-14)
    exit_row = result.trades.iloc[-1]
    assert (exit_row["timestamp"], exit_row["symbol"], exit_row["side"], exit_row["reason"]) == (
        2 * MS_PER_DAY, A, "sell", "data_ended")
    assert (exit_row["amount_base"], exit_row["price"], exit_row["fee_quote"]) == pytest.approx((4, 110, 0.44))
    assert result.weights[A].tolist()[3:] == [0.0, 0.0]
    assert len(result.data_end_exits) == 1 and A in result.data_end_exits[0]
    assert set(result.trades["reason"].iloc[:-1]) == {"rebalance"}


def test_an_ended_coin_alone_leaves_the_book_out_of_the_market() -> None:
    nan = np.nan
    opens = price_frame({A: [100, 100, nan, nan], B: [50, 50, 50, 50]}, MS_PER_DAY)
    closes = price_frame({A: [100, 120, nan, nan], B: [50, 50, 50, 50]}, MS_PER_DAY)
    result = run_backtest(open_wide=opens, close_wide=closes, target_weights=decision_targets(closes, {0: {A: 1.0}}),
                          params=ZERO_COST)
    assert result.equity.tolist() == pytest.approx([1000, 1200, 1200, 1200], rel=1e-15)
    assert (result.weights.abs().sum(axis=1) > 0).tolist() == [False, True, False, False]


def _random_book(n_bars: int = 240, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.03, size=(n_bars, 3))
    closes = pd.DataFrame(100 * np.exp(np.cumsum(returns, axis=0)), columns=["A/USDT", "B/USDT", "C/USDT"],
                          index=pd.Index(np.arange(n_bars, dtype=np.int64) * 4 * MS_PER_HOUR, name="timestamp"))
    opens = closes.shift(1).fillna(100.0) * np.exp(rng.normal(0.0, 0.002, size=closes.shape))
    raw = rng.uniform(0.0, 1.0, size=closes.shape)
    targets = pd.DataFrame(raw / raw.sum(axis=1, keepdims=True) * 0.9, index=closes.index, columns=closes.columns)
    return opens, closes, targets


def test_risk_decisions_read_no_future_equity() -> None:
    opens, closes, targets = _random_book()
    limits = _limits(max_drawdown_frac=0.3, daily_loss_limit_frac=0.04)
    params = BacktestParams(fee_bps=10, slippage_bps=5, min_notional_quote=0)
    full = run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=params, live_risk=limits)
    assert full.live_risk is not None and full.live_risk.halted_at_ms is not None  # the layer did act
    assert full.live_risk.reduce_only_days > 0
    halt_bar = int(np.searchsorted(closes.index, full.live_risk.halted_at_ms))
    assert len(full.live_risk.halts) == 2 and full.live_risk.halts[0][1] is not None  # a halt was cleared
    rearm_bar = int(np.searchsorted(closes.index, full.live_risk.halts[0][1]))
    for cut in (40, halt_bar - 1, halt_bar + 1, rearm_bar, rearm_bar + 1, len(closes) - 20):
        past = run_backtest(open_wide=opens.iloc[:cut], close_wide=closes.iloc[:cut],
                            target_weights=targets.iloc[:cut], params=params, live_risk=limits)
        np.testing.assert_allclose(past.equity.to_numpy(), full.equity.to_numpy()[:cut], rtol=1e-12)
        assert past.live_risk is not None
        assert past.live_risk.halted_at_ms == (full.live_risk.halted_at_ms if cut > halt_bar else None)
        last_ms = int(closes.index[cut - 1])  # halts and re-arms (7-day review) up to the cut are the full run's
        assert past.live_risk.halts == tuple((start, end if end is not None and end <= last_ms else None)
                                             for start, end in full.live_risk.halts if start <= last_ms)

"""The carry rule: causal forecast from settled prints, hysteresis, sizing caps; truncation leaves the past alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError
from lib.research.carry.market import build_market, slice_market
from lib.research.carry.sleeve import CarryParams, carry_state, carry_weights, funding_forecast
from lib.research.carry.study import grid_configurations, run_carry
from tests.unit.research.carry.synthetic import START_MS, H, synthetic_frames


def test_a_print_is_used_only_from_the_bar_opening_at_its_settlement() -> None:
    spot, perp, funding = synthetic_frames(days=3)
    market = build_market(spot, perp, funding)
    forecast = funding_forecast(market, CarryParams(forecast_settlements=2))
    rates = funding["BTC"].set_index("timestamp")["rate"]
    # prints at 00:00, 08:00, 16:00: the 2-print mean exists from the bar opening at 08:00, not the one at 07:00
    assert np.isnan(forecast.loc[START_MS + 7 * H, "BTC"])
    expected = (rates.iloc[0] + rates.iloc[1]) / 2
    assert forecast.loc[START_MS + 8 * H, "BTC"] == pytest.approx(expected)
    assert forecast.loc[START_MS + 15 * H, "BTC"] == pytest.approx(expected)
    assert forecast.loc[START_MS + 16 * H, "BTC"] == pytest.approx((rates.iloc[1] + rates.iloc[2]) / 2)


def test_hysteresis_by_hand() -> None:
    params = CarryParams(holding_days=10.0, enter_cost_multiple=1.0, exit_cost_multiple=0.5)
    # round trip 4 x 15 bps = 0.6 %; expected funding = rate x 3 x 10: enter above 2e-4, leave below 1e-4
    rates = [np.nan, 0.00015, 0.00025, 0.00015, 0.00012, 0.00009, 0.00015, 0.00021]
    state = carry_state(pd.DataFrame({"X": rates}), params)
    assert state["X"].tolist() == [0, 0, 1, 1, 1, 0, 0, 1]


def test_weights_respect_the_caps() -> None:
    spot, perp, funding = synthetic_frames(days=90)
    market = build_market(spot, perp, funding)
    params = CarryParams(max_coin_weight=0.4, leverage=2.0, cash_buffer=0.02)
    weights, kelly_binds = carry_weights(market, params)
    assert (weights >= 0).all().all() and (weights <= 0.4 + 1e-12).all().all()
    assert weights.sum(axis=1).max() <= (1 - 0.02) / 1.5 + 1e-12  # spot leg + half of it as collateral
    assert weights.sum(axis=1).max() > 0.3 and (weights.sum(axis=1) == 0).any()  # it enters and exits
    assert kelly_binds.dtype == bool


def test_bad_params_are_refused() -> None:
    with pytest.raises(ConfigError, match="exit_cost_multiple"):
        CarryParams(enter_cost_multiple=0.5, exit_cost_multiple=1.0)
    configs = grid_configurations(CarryParams(), {"enter_cost_multiple": [0.5, 1.0], "exit_cost_multiple": [0.0, 1.0]})
    assert [(c.enter_cost_multiple, c.exit_cost_multiple) for c in configs] == [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0)]


@pytest.mark.parametrize("cut_hours", [70 * 24 - 1, 52 * 24 + 7, 61 * 24 + 16])
def test_truncating_the_future_leaves_the_past_unchanged(cut_hours: int) -> None:
    """Look-ahead check: weights, fills and equity up to a cut are the same with or without the later data
    (cuts at a day's last bar, mid-day and exactly at a funding settlement)."""
    spot, perp, funding = synthetic_frames(days=100)
    market = build_market(spot, perp, funding)
    params = CarryParams(forecast_settlements=21, holding_days=30.0, leverage=2.0, max_coin_weight=0.3)
    cut = START_MS + cut_hours * H
    full = run_carry(market, params, start_ms=START_MS + 20 * 24 * H)
    short = run_carry(slice_market(market, end_ms=cut), params, start_ms=START_MS + 20 * 24 * H)
    pd.testing.assert_frame_equal(full.weights.loc[:cut], short.weights)
    pd.testing.assert_frame_equal(full.book.ledger.loc[:cut], short.book.ledger)
    early = full.book.trades[full.book.trades["timestamp"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(early, short.book.trades)
    assert len(full.book.trades) > len(short.book.trades) > 4
    daily = full.daily_net_returns
    assert daily.index.is_monotonic_increasing and daily.notna().all() and len(daily) == 80  # days 20..99
    assert (1 + daily).prod() * 1000.0 == pytest.approx(full.book.ledger["equity"].iloc[-1])

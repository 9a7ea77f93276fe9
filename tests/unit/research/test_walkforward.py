"""Unit tests for lib/research/walkforward.py: windows never leak, choices use train data only, stitching."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.research.backtest_params import BacktestParams
from lib.research.backtester import run_backtest
from lib.research.walkforward import (
    TABLE_COLUMNS,
    WalkForwardParams,
    build_windows,
    cost_sensitivity,
    expand_grid,
    run_walk_forward,
)

DAY_MS = 86_400_000
INDEX = pd.Index(np.arange(40, dtype=np.int64) * DAY_MS, name="timestamp")
# the toy market rises 1 % a bar for 20 bars, then falls 1 % a bar
TREND = pd.Series([0.01] * 20 + [-0.01] * 20, index=INDEX)
GRID = [{"direction": 1.0}, {"direction": -1.0}]


def _toy_evaluate(market: pd.Series, calls: list[tuple[int, int]] | None = None):
    """A strategy that is long (direction +1) or short (-1) the market; equity starts at 1000 at start_ts."""

    def evaluate(params: Mapping[str, Any], start_ts: int, end_ts: int) -> pd.Series:
        if calls is not None:
            calls.append((start_ts, end_ts))
        window = market.loc[start_ts:end_ts].copy()
        window.iloc[0] = 0.0  # the strategy enters during its first bar
        return 1000 * (1 + params["direction"] * window).cumprod()

    return evaluate


def test_build_windows_rolling_layout() -> None:
    windows = build_windows(INDEX[:10], WalkForwardParams(train_days=4, test_days=3, purge_days=0))
    layout = [(w.train_start_ts, w.train_end_ts, w.test_start_ts, w.test_end_ts) for w in windows]
    day = DAY_MS
    assert layout == [(0, 3 * day, 4 * day, 6 * day), (3 * day, 6 * day, 7 * day, 9 * day)]


def test_build_windows_expanding_and_partial_last_window() -> None:
    windows = build_windows(INDEX[:12], WalkForwardParams(train_days=4, test_days=3, purge_days=0, expanding=True))
    assert [w.train_start_ts for w in windows] == [0, 0, 0]
    # tests 4-6, 7-9, 10-11 (a 2-bar partial window is kept; a 1-bar one would not be)
    assert [(w.test_start_ts // DAY_MS, w.test_end_ts // DAY_MS) for w in windows] == [
        (4, 6),
        (7, 9),
        (10, 11),
    ]
    assert len(build_windows(INDEX[:11], WalkForwardParams(train_days=4, test_days=3, purge_days=0))) == 2


@pytest.mark.parametrize(
    ("n_bars", "train", "test", "expanding"),
    [(40, 10, 5, False), (37, 7, 4, True), (25, 3, 2, False), (30, 28, 2, False)],
)
def test_test_windows_never_overlap_train_windows_or_each_other(
    n_bars: int, train: int, test: int, expanding: bool
) -> None:
    index = INDEX[:n_bars]
    layout = WalkForwardParams(train_days=train, test_days=test, purge_days=0, expanding=expanding)
    windows = build_windows(index, layout)
    positions = {ts: k for k, ts in enumerate(index)}
    covered: list[int] = []
    for window in windows:
        assert window.train_start_ts <= window.train_end_ts < window.test_start_ts <= window.test_end_ts
        assert positions[window.test_start_ts] == positions[window.train_end_ts] + 1
        covered.extend(range(positions[window.test_start_ts], positions[window.test_end_ts] + 1))
    assert covered == list(range(train, n_bars))  # contiguous, disjoint, no bar twice


HOUR_MS = 3_600_000
DAY0 = 1_640_995_200_000  # 2022-01-01 00:00 UTC


def _day(k: float) -> int:
    return DAY0 + int(k * DAY_MS)


def test_windows_are_calendar_days_with_purge_and_embargo_hand_checked() -> None:
    # 30 daily bars from 2022-01-01; train 10 days, purge 1 + embargo 2, test 7 days
    index = pd.Index(DAY0 + np.arange(30, dtype=np.int64) * DAY_MS)
    windows = build_windows(index, WalkForwardParams(train_days=10, test_days=7, purge_days=1, embargo_days=2))
    # test 1 starts on day 10 + 3 = 13 (2022-01-14); its train is days 0..9, days 10-12 are the gap.
    # test 2: days 20..26, train 7..16; test 3: days 27..29 (3 bars: a partial window is kept)
    assert [(w.train_start_ts, w.train_end_ts, w.test_start_ts, w.test_end_ts) for w in windows] == [
        (_day(0), _day(9), _day(13), _day(19)),
        (_day(7), _day(16), _day(20), _day(26)),
        (_day(14), _day(23), _day(27), _day(29)),
    ]


def test_hourly_and_daily_bars_get_the_same_calendar_windows() -> None:
    layout = WalkForwardParams(train_days=30, test_days=7, purge_days=1, embargo_days=1)
    daily = build_windows(pd.Index(DAY0 + np.arange(60, dtype=np.int64) * DAY_MS), layout)
    hourly = build_windows(pd.Index(DAY0 + np.arange(60 * 24, dtype=np.int64) * HOUR_MS), layout)
    assert len(daily) == len(hourly) == 4  # tests from day 32 (30 train + 2 gap): 32-38, 39-45, 46-52, 53-59
    for day_window, hour_window in zip(daily, hourly, strict=True):
        # the same first bars; the last bars are the same day's last bar (00:00 daily, 23:00 hourly)
        assert hour_window.train_start_ts == day_window.train_start_ts
        assert hour_window.test_start_ts == day_window.test_start_ts
        assert hour_window.train_end_ts == day_window.train_end_ts + 23 * HOUR_MS
        assert hour_window.test_end_ts == day_window.test_end_ts + 23 * HOUR_MS
    assert (daily[0].train_start_ts, daily[0].train_end_ts, daily[0].test_start_ts, daily[0].test_end_ts) == (
        _day(0), _day(29), _day(32), _day(38))
    assert daily[-1].test_end_ts == _day(59)


def test_hourly_bars_starting_mid_day_count_days_from_the_next_midnight() -> None:
    index = pd.Index(_day(0.5) + np.arange(20 * 24, dtype=np.int64) * HOUR_MS)  # from 2022-01-01 12:00
    windows = build_windows(index, WalkForwardParams(train_days=5, test_days=5, purge_days=0))
    assert (windows[0].train_start_ts, windows[0].test_start_ts, windows[0].test_end_ts) == (
        _day(1), _day(6), _day(11) - HOUR_MS)


def test_too_short_history_is_a_data_error() -> None:
    with pytest.raises(DataError, match="walk-forward needs"):
        build_windows(INDEX[:11], WalkForwardParams(train_days=10, test_days=5, purge_days=0))


def test_walk_forward_picks_the_best_train_params_and_stitches_test_equity() -> None:
    windows = build_windows(INDEX, WalkForwardParams(train_days=10, test_days=5, purge_days=0))
    result = run_walk_forward(_toy_evaluate(TREND), GRID, windows, timeframe="1d", metric="total_return_frac")
    assert list(result.table.columns) == list(TABLE_COLUMNS)
    # train windows ending at bars 9, 14, 19 saw only the rise; from the one ending at 24 on the
    # fall dominates (train 15..24: 4 rising returns, 5 falling)
    assert [params["direction"] for params in result.table["params"]] == [1, 1, 1, -1, -1, -1]
    # each test window restarts from cash: its first bar's return is not earned. Earned: bars
    # 11-14, 16-19 (+1 % long), 21-24 (-1 % long, the train data had not seen the fall yet), 26-29,
    # 31-34, 36-39 (+1 % short)
    assert result.equity.index[0] == 10 * DAY_MS and result.equity.index[-1] == 39 * DAY_MS
    assert result.equity.iloc[-1] == pytest.approx(1000 * 1.01**20 * 0.99**4, rel=1e-12)
    assert result.table["test_metric"].iloc[2] == pytest.approx(0.99**4 - 1)
    assert result.table["train_metric"].iloc[0] == pytest.approx(1.01**9 - 1)


def test_choice_depends_only_on_train_data() -> None:
    windows = build_windows(INDEX, WalkForwardParams(train_days=10, test_days=5, purge_days=0))
    calls: list[tuple[int, int]] = []
    base = run_walk_forward(
        _toy_evaluate(TREND, calls), GRID, windows, timeframe="1d", metric="total_return_frac"
    )
    # every call except one per window (the test run) ends on or before that window's train end
    for number, window in enumerate(windows):
        window_calls = calls[number * (len(GRID) + 1) : (number + 1) * (len(GRID) + 1)]
        assert all(end <= window.train_end_ts for _, end in window_calls[:-1])
        assert window_calls[-1] == (window.test_start_ts, window.test_end_ts)
    # rewrite the market after bar 19: windows whose train ends at or before bar 19 choose the same
    changed = TREND.copy()
    changed.iloc[20:] = np.random.default_rng(0).normal(0.05, 0.02, 20)
    other = run_walk_forward(
        _toy_evaluate(changed), GRID, windows, timeframe="1d", metric="total_return_frac"
    )
    unaffected = [k for k, window in enumerate(windows) if window.train_end_ts <= 19 * DAY_MS]
    assert unaffected == [0, 1, 2]
    for k in unaffected:
        assert other.table["params"].iloc[k] == base.table["params"].iloc[k]
        assert other.table["train_metric"].iloc[k] == base.table["train_metric"].iloc[k]
    assert other.table["params"].iloc[3] != base.table["params"].iloc[3]  # later data does matter later


def test_ties_go_to_the_first_candidate_and_nan_never_wins() -> None:
    windows = build_windows(INDEX, WalkForwardParams(train_days=10, test_days=30, purge_days=0))
    flat = pd.Series(0.0, index=INDEX)
    result = run_walk_forward(_toy_evaluate(flat), GRID, windows, timeframe="1d", metric="sharpe")
    assert result.table["params"].iloc[0] == GRID[0]  # both Sharpe NaN (flat): first in grid order

    def metric(equity: pd.Series) -> float:
        return float("nan") if equity.iloc[-1] > 1000 else 0.0

    picked = run_walk_forward(_toy_evaluate(TREND), GRID, windows, timeframe="1d", metric=metric)
    assert picked.table["params"].iloc[0] == {"direction": -1.0}  # the NaN candidate (long) loses


def test_evaluate_that_leaks_outside_its_window_is_refused() -> None:
    def leaky(params: Mapping[str, Any], start_ts: int, end_ts: int) -> pd.Series:
        return pd.Series(1000.0, index=INDEX[(start_ts <= INDEX) & (end_ts + DAY_MS >= INDEX)])

    windows = build_windows(INDEX, WalkForwardParams(train_days=10, test_days=5, purge_days=0))
    with pytest.raises(DataError, match="outside the requested window"):
        run_walk_forward(leaky, GRID, windows, timeframe="1d")


def test_unknown_metric_and_empty_grid_are_config_errors() -> None:
    windows = build_windows(INDEX, WalkForwardParams(train_days=10, test_days=5, purge_days=0))
    with pytest.raises(ConfigError, match="metric"):
        run_walk_forward(_toy_evaluate(TREND), GRID, windows, timeframe="1d", metric="alpha")
    with pytest.raises(ConfigError, match="grid"):
        run_walk_forward(_toy_evaluate(TREND), [], windows, timeframe="1d")


def test_expand_grid() -> None:
    assert expand_grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]


def test_cost_sensitivity_runs_each_fee_level() -> None:
    rng = np.random.default_rng(2)
    closes = pd.DataFrame(
        {"A/USDT": 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 60)))},
        index=INDEX.append(pd.Index(np.arange(40, 60, dtype=np.int64) * DAY_MS)),
    )
    targets = pd.DataFrame({"A/USDT": np.tile([0.9, 0.1], 30)}, index=closes.index)  # trades every bar

    def run(params: BacktestParams):
        return run_backtest(open_wide=closes, close_wide=closes, target_weights=targets, params=params)

    table = cost_sensitivity(run, BacktestParams(slippage_bps=0.0), timeframe="1d")
    assert table.index.tolist() == [0.0, 10.0, 25.0, 50.0]
    assert table.loc[0.0, "fees_paid_quote"] == 0.0
    assert table["total_return_frac"].is_monotonic_decreasing
    assert table["fees_paid_quote"].iloc[1:].is_monotonic_increasing
    equity_only = cost_sensitivity(
        lambda params: run(params).equity, BacktestParams(), timeframe="1d", fee_levels_bps=(5.0,)
    )
    assert equity_only.index.tolist() == [5.0] and "sharpe" in equity_only.columns


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"train_days": 0}, "walkforward.train_days"),
        ({"test_days": 0}, "walkforward.test_days"),
        ({"purge_days": -1}, "walkforward.purge_days"),
        ({"embargo_days": -1}, "walkforward.embargo_days"),
        ({"metric": "alpha"}, "walkforward.metric"),
        ({"cost_levels_bps": (-1.0,)}, "walkforward.cost_levels_bps"),
    ],
)
def test_bad_walkforward_params(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        WalkForwardParams(**kwargs)


def test_an_old_bar_count_key_says_what_to_write_instead(tmp_path) -> None:
    from lib.ops.config import load_config

    path = tmp_path / "config.toml"
    path.write_text("[walkforward]\ntrain_bars = 730\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"walkforward\.train_bars is no longer read: write walkforward\.train_days"):
        load_config(path)

"""lib/research/study/: settings/grids, the simulation glue (exact numbers on hand-built frames), funding
coverage, benchmarks, result tables, and walk-forward on synthetic candles (including causality)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.core.paths import ProjectPaths
from lib.core.timeframes import MS_PER_DAY
from lib.research.backtest_params import BacktestParams
from lib.research.ensemble import EnsembleParams
from lib.research.portfolio import PerpParams, SpotParams
from lib.research.strategy_params import StrategySection
from lib.research.study import (
    benchmark_curves,
    chart_data,
    funding_coverage,
    grids,
    history,
    json_values,
    reports,
    run_ids,
    sections,
    simulation,
    walk_forward,
)
from lib.research.universe import UniverseParams
from lib.research.walkforward import WalkForwardParams, cost_sensitivity
from tests.helpers import HOUR_MS, SMALL, synthetic_candles

TOLERANCE = 1e-9
NO_COSTS = BacktestParams(fee_bps=0.0, slippage_bps=0.0, min_notional_quote=0.0)
SETTINGS = sections.StudySettings(
    strategy=StrategySection(name="spot_long_only", timeframe="1h", volatility_window_bars=20),
    signals=SMALL,
    ensemble=EnsembleParams(),
    universe=UniverseParams(min_history_bars=60, dollar_volume_window_bars=10, min_dollar_volume_quote=0.0),
    spot=SpotParams(top_n=2, max_asset_weight_frac=0.5, target_vol_annual_frac=0.0, regime_filter=False),
    perp=PerpParams(top_k=1),
    backtest=BacktestParams(),
)
BARS = 600


def hand_inputs(*, funding: pd.DataFrame | None = None) -> simulation.SimulationInputs:
    """Two assets, four hourly bars; one decision at bar 0: half the book in A."""
    index = pd.Index(np.arange(4, dtype=np.int64) * HOUR_MS, name="timestamp")
    open_ = pd.DataFrame({"A": [10.0, 10.0, 12.0, 12.0], "B": [20.0] * 4}, index=index)
    close = pd.DataFrame({"A": [10.0, 11.0, 12.0, 15.0], "B": [20.0] * 4}, index=index)
    target = pd.DataFrame({"A": [0.5, np.nan, np.nan, np.nan], "B": [0.0, np.nan, np.nan, np.nan]}, index=index)
    return simulation.SimulationInputs(
        open=open_, close=close, target_weights=target, bar_volatility_frac=close * 0.0 + 0.01,
        is_tradeable=pd.Series([False, False, True, True], index=index), benchmark=None, funding=funding,
    )  # fmt: skip


def synthetic_universe() -> dict[str, pd.DataFrame]:
    return {
        "BTC/USDT": synthetic_candles(BARS, seed=11, drift=0.0004),
        "ETH/USDT": synthetic_candles(BARS, seed=12, drift=0.0008, vol=0.015),
        "SOL/USDT": synthetic_candles(BARS - 100, seed=13, start_bar=100, drift=-0.0005, vol=0.02),
        "ADA/USDT": synthetic_candles(BARS, seed=14, drift=-0.0002, vol=0.012),
    }


@pytest.fixture(scope="module")
def candles() -> dict[str, pd.DataFrame]:
    return synthetic_universe()


@pytest.fixture(scope="module")
def inputs(candles: dict[str, pd.DataFrame]) -> simulation.SimulationInputs:
    return simulation.build_simulation_inputs(candles, SETTINGS, funding_wide=None)


# --- settings, parameters, grids ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("spot_top_n_grid", ()), ("perp_top_k_grid", (0, 2)), ("rebalance_days_grid", (-1,)),
     ("equal_weight_rebalance_days", 0), ("missing_funding", "maybe")],
)  # fmt: skip
def test_study_params_reject_bad_values_naming_the_key(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"study.{field}"):
        sections.StudyParams(**{field: value})  # type: ignore[arg-type]


def test_with_overrides_replaces_only_the_named_fields() -> None:
    changed = sections.with_overrides(SETTINGS, {"spot.top_n": 4, "backtest.fee_bps": 25.0})
    assert changed.spot == replace(SETTINGS.spot, top_n=4)
    assert changed.backtest.fee_bps == 25.0 and changed.backtest.slippage_bps == SETTINGS.backtest.slippage_bps
    assert changed.signals is SETTINGS.signals and changed.strategy is SETTINGS.strategy
    assert sections.with_overrides(SETTINGS, {}) == SETTINGS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"nope.top_n": 1}, "section must be one of"), ({"spot.nope": 1}, "spot has no field 'nope'"),
     ({"spot.top_n": 0}, "spot.top_n must be >= 1"), ({"strategy.rebalance_every_bars": 0}, "rebalance_every_bars")],
)  # fmt: skip
def test_with_overrides_rejects_unknown_keys_and_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sections.with_overrides(SETTINGS, overrides)


@pytest.mark.parametrize(
    ("name", "in_strategy", "in_backtest", "market", "every_bars"),
    [("spot_long_only", 1, 1, "spot", 1), ("perp_market_neutral", 5, 1, "perp", 5),
     ("spot_long_only", 1, 3, "spot", 3), ("spot_long_only", 4, 4, "spot", 4)],
)  # fmt: skip
def test_backtest_params_take_market_from_the_strategy_and_one_schedule(
    name: str, in_strategy: int, in_backtest: int, market: str, every_bars: int
) -> None:
    settings = replace(SETTINGS, strategy=replace(SETTINGS.strategy, name=name, rebalance_every_bars=in_strategy),
                       backtest=replace(SETTINGS.backtest, rebalance_every_bars=in_backtest, fee_bps=7.0))
    params = sections.to_backtest_params(settings)
    assert (params.market, params.rebalance_every_bars, params.fee_bps) == (market, every_bars, 7.0)


def test_backtest_params_refuse_two_different_schedules_and_unknown_strategies() -> None:
    both = replace(SETTINGS, strategy=replace(SETTINGS.strategy, rebalance_every_bars=3),
                   backtest=replace(SETTINGS.backtest, rebalance_every_bars=5))
    with pytest.raises(ConfigError, match="disagree"):
        sections.to_backtest_params(both)
    with pytest.raises(ConfigError, match="strategy.name"):
        sections.to_backtest_params(replace(SETTINGS, strategy=replace(SETTINGS.strategy, name="momentum")))


@pytest.mark.parametrize(
    ("timeframe", "name", "key", "every_bars"),
    [("1d", "spot_long_only", "spot.top_n", (1, 7)), ("1h", "spot_long_only", "spot.top_n", (24, 168)),
     ("4h", "perp_market_neutral", "perp.top_k", (6, 42))],
)  # fmt: skip
def test_default_grid_converts_rebalance_days_to_bars(timeframe: str, name: str, key: str, every_bars: tuple) -> None:
    settings = replace(SETTINGS, strategy=replace(SETTINGS.strategy, timeframe=timeframe, name=name))
    grid = grids.default_grid(settings, sections.StudyParams())
    assert grid == {key: (3, 5, 8) if key == "spot.top_n" else (1, 2, 3), "strategy.rebalance_every_bars": every_bars}


def test_parse_grid_types_values_like_the_field() -> None:
    grid = grids.parse_grid(
        ["spot.top_n=3, 5", "backtest.fee_bps=10,25.5", "spot.regime_filter=true,False", "perp.weighting=equal"],
        SETTINGS,
    )
    assert grid == {"spot.top_n": (3, 5), "backtest.fee_bps": (10.0, 25.5), "spot.regime_filter": (True, False),
                    "perp.weighting": ("equal",)}
    assert all(isinstance(value, int) for value in grid["spot.top_n"])
    assert grids.parse_grid([], SETTINGS) == {}


@pytest.mark.parametrize(
    ("item", "message"),
    [("spot.top_n", "must look like"), ("spot.top_n=", "must look like"), ("spot.top_n=three", "is not a int"),
     ("spot.regime_filter=yes", "is not a bool"), ("signals.roc_lengths=1,2", "cannot be gridded"),
     ("risk.max_weight=1", "section must be one of")],
)  # fmt: skip
def test_parse_grid_rejects_malformed_items(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        grids.parse_grid([item], SETTINGS)


# --- simulation on hand-built frames ---------------------------------------------------------------


def test_simulate_fills_the_decision_of_bar_t_at_the_open_of_t_plus_1() -> None:
    result = simulation.simulate(hand_inputs(), NO_COSTS)
    # 500 quote buys 50 A at bar 1's open (10); A closes at 11, 12, 15; the other 500 stays cash
    np.testing.assert_allclose(result.equity.to_numpy(), [1000.0, 1050.0, 1100.0, 1250.0], rtol=TOLERANCE)
    assert result.trades["timestamp"].tolist() == [HOUR_MS]
    with_fee = simulation.simulate(hand_inputs(), replace(NO_COSTS, fee_bps=10.0))
    np.testing.assert_allclose(with_fee.equity.to_numpy(), [1000.0, 1049.5, 1099.5, 1249.5], rtol=TOLERANCE)


def test_simulate_starts_from_cash_at_start_and_ignores_earlier_decisions() -> None:
    result = simulation.simulate(hand_inputs(), NO_COSTS, start_ms=HOUR_MS, end_ms=2 * HOUR_MS)
    assert result.equity.index.tolist() == [HOUR_MS, 2 * HOUR_MS]
    np.testing.assert_allclose(result.equity.to_numpy(), [1000.0, 1000.0])
    assert result.trades.empty
    with pytest.raises(DataError, match="holds 1 bar"):
        simulation.simulate(hand_inputs(), NO_COSTS, start_ms=3 * HOUR_MS)


def test_simulate_charges_funding_only_on_perps() -> None:
    funding = pd.DataFrame({"A": [0.01]}, index=pd.Index([2 * HOUR_MS], dtype="int64"))
    perp = replace(NO_COSTS, market="perp")
    charged = simulation.simulate(hand_inputs(funding=funding), perp)
    assert charged.funding_paid_quote == pytest.approx(50 * 12.0 * 0.01)  # 50 units x bar 2's open x rate
    spot = simulation.simulate(hand_inputs(funding=funding), NO_COSTS)
    assert spot.funding_paid_quote == 0.0


def test_default_start_is_the_first_tradeable_bar_not_before_the_floor() -> None:
    inputs = hand_inputs()
    assert history.default_start_ms(inputs) == 2 * HOUR_MS
    assert history.default_start_ms(inputs, not_before_ms=3 * HOUR_MS) == 3 * HOUR_MS
    with pytest.raises(DataError, match="no bar has a tradeable symbol"):
        history.default_start_ms(inputs, not_before_ms=4 * HOUR_MS)


def test_benchmarks_are_buy_and_hold_btc_and_equal_weight_baskets() -> None:
    index = pd.Index(np.arange(3, dtype=np.int64) * MS_PER_DAY)
    close = pd.DataFrame({"BTC/USDT": [100.0, 110.0, 99.0], "ETH/USDT": [np.nan, 50.0, 100.0]}, index=index)
    daily = sections.StudyParams(equal_weight_rebalance_days=1)
    curves = benchmark_curves.benchmark_equity(close, "BTC/USDT", timeframe="1d", study=daily, capital_quote=1000.0)
    assert list(curves.columns) == [benchmark_curves.BTC_BENCHMARK, benchmark_curves.EQUAL_WEIGHT_BENCHMARK,
                                    benchmark_curves.EQUAL_WEIGHT_REBALANCED_BENCHMARK]
    np.testing.assert_allclose(curves[benchmark_curves.BTC_BENCHMARK], [1000.0, 1100.0, 990.0])
    # only BTC at bar 0
    np.testing.assert_allclose(curves[benchmark_curves.EQUAL_WEIGHT_BENCHMARK], [1000.0, 1100.0, 990.0])
    np.testing.assert_allclose(curves[benchmark_curves.EQUAL_WEIGHT_REBALANCED_BENCHMARK], [1000.0, 1100.0, 1595.0])
    no_btc = benchmark_curves.benchmark_equity(close, None, timeframe="1d", study=daily, capital_quote=1000.0)
    assert benchmark_curves.BTC_BENCHMARK not in no_btc.columns


def test_equity_frame_and_metrics_report_are_complete_and_json_safe() -> None:
    result = simulation.simulate(hand_inputs(), NO_COSTS)
    flat = pd.DataFrame({benchmark_curves.BTC_BENCHMARK: [1000.0] * 4}, index=result.equity.index)
    frame = benchmark_curves.to_equity_frame(result.equity, flat)
    assert list(frame.columns) == ["timestamp", "strategy", benchmark_curves.BTC_BENCHMARK]
    assert frame["timestamp"].dtype == np.int64 and frame["strategy"].iloc[-1] == pytest.approx(1250.0)
    report = reports.metrics_report(result, flat, timeframe="1h")
    json.dumps(report, allow_nan=False)
    strategy = report["strategy"]
    assert strategy["total_return_frac"] == pytest.approx(0.25) and strategy["trade_count"] == 1
    assert strategy["fees_paid_quote"] == 0.0 and strategy["final_equity_quote"] == pytest.approx(1250.0)
    assert report[benchmark_curves.BTC_BENCHMARK]["sharpe"] is None  # zero volatility: undefined, not NaN
    assert (strategy["halted_bars"], strategy["reduce_only_bars"], strategy["data_end_exit_count"]) == (0, 0, 0)
    assert reports.live_risk_report(result) == {"modelled": False}  # simulate() without [risk] limits


def test_cost_report_lists_one_row_per_fee_level() -> None:
    table = cost_sensitivity(lambda params: simulation.simulate(hand_inputs(), params), NO_COSTS, timeframe="1h",
                             fee_levels_bps=(0.0, 10.0))
    report = reports.cost_report(table)
    json.dumps(report, allow_nan=False)
    assert list(report["by_fee_bps"]) == ["0", "10"]
    assert report["by_fee_bps"]["10"]["fees_paid_quote"] == pytest.approx(0.5)
    assert report["by_fee_bps"]["0"]["total_return_frac"] > report["by_fee_bps"]["10"]["total_return_frac"]


# --- funding coverage --------------------------------------------------------------------------------


def _funding(times_h: list[int], rates: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": np.array(times_h, dtype=np.int64) * HOUR_MS, "rate": rates})


@pytest.mark.parametrize(
    ("policy", "columns", "dropped", "proxy"),
    [("drop", ["A", "B"], ["C", "D"], None), ("zero", ["A", "B"], [], None),
     ("proxy", ["A", "B", "C", "D"], [], [0.001, 0.0025, 0.004])],
)  # fmt: skip
def test_funding_wide_follows_the_missing_funding_policy(policy, columns, dropped, proxy) -> None:
    by_symbol = {"A": _funding([0, 8], [0.001, 0.002]), "B": _funding([8, 16], [0.003, 0.004]), "C": None,
                 "D": _funding([], [])}
    wide, left_out = funding_coverage.build_funding_wide(by_symbol, policy=policy)
    assert wide is not None and list(wide.columns) == columns and left_out == dropped
    assert wide.index.tolist() == [0, 8 * HOUR_MS, 16 * HOUR_MS] and wide.index.dtype == np.int64
    np.testing.assert_allclose(wide["A"], [0.001, 0.002, np.nan])
    if proxy is not None:
        np.testing.assert_allclose(wide["C"], proxy)
        np.testing.assert_allclose(wide["D"], proxy)
    assert funding_coverage.first_funding_ms(by_symbol) == 8 * HOUR_MS


def test_no_funding_at_all_gives_no_frame() -> None:
    assert funding_coverage.build_funding_wide({"A": None}, policy="drop") == (None, ["A"])
    assert funding_coverage.build_funding_wide({}, policy="proxy") == (None, [])
    assert funding_coverage.first_funding_ms({"A": None}) == 0


# --- strategy runs, walk-forward, causality (synthetic candles) ----------------------------------------


def test_inputs_keep_the_strategy_frames_on_one_index(inputs: simulation.SimulationInputs) -> None:
    assert inputs.close.index.equals(inputs.target_weights.index) and len(inputs.close) == BARS
    assert inputs.benchmark == "BTC/USDT" and inputs.funding is None
    assert np.isfinite(inputs.target_weights.to_numpy()).all()
    start = history.default_start_ms(inputs)
    assert not inputs.is_tradeable.loc[: start - 1].any() and inputs.is_tradeable.loc[start]
    assert (inputs.target_weights.loc[: start - 1] == 0).all().all()  # nothing held during the warm-up


def test_evaluate_equals_a_backtest_on_history_cut_at_the_window_end(candles, inputs) -> None:
    """The causality the module relies on: slicing the full-history run == recomputing on cut data."""
    evaluate = simulation.make_evaluate(candles, SETTINGS, computed=inputs)
    start_ms, end_ms = int(inputs.close.index[250]), int(inputs.close.index[400])
    sliced = evaluate({}, start_ms, end_ms)
    cut = history.cut_candles(candles, end_ms=end_ms)
    recomputed = simulation.simulate(simulation.build_simulation_inputs(cut, SETTINGS, funding_wide=None),
                                sections.to_backtest_params(SETTINGS), start_ms=start_ms)
    assert sliced.index.equals(recomputed.equity.index) and sliced.index[-1] == end_ms
    np.testing.assert_allclose(sliced.to_numpy(), recomputed.equity.to_numpy(), rtol=1e-9)
    assert sliced.iloc[-1] != sliced.iloc[0]  # it traded


def test_evaluate_applies_strategy_and_schedule_overrides(candles, inputs) -> None:
    evaluate = simulation.make_evaluate(candles, SETTINGS, computed=inputs)
    start_ms, end_ms = int(inputs.close.index[200]), int(inputs.close.index[-1])
    fresh = simulation.make_evaluate(candles, SETTINGS)  # no precomputed run: computes its own
    np.testing.assert_allclose(evaluate({}, start_ms, end_ms), fresh({}, start_ms, end_ms), rtol=TOLERANCE)
    top_one = sections.with_overrides(SETTINGS, {"spot.top_n": 1})
    expected = simulation.simulate(simulation.build_simulation_inputs(candles, top_one, funding_wide=None),
                              sections.to_backtest_params(top_one), start_ms=start_ms, end_ms=end_ms).equity
    np.testing.assert_allclose(evaluate({"spot.top_n": 1}, start_ms, end_ms), expected, rtol=TOLERANCE)
    weekly = evaluate({"strategy.rebalance_every_bars": 24}, start_ms, end_ms)
    assert not np.allclose(weekly, evaluate({}, start_ms, end_ms))


def test_walk_forward_study_stitches_out_of_sample_windows(candles, inputs) -> None:
    start = history.default_start_ms(inputs)
    benchmarks = benchmark_curves.benchmark_equity(inputs.close.loc[start:], inputs.benchmark, timeframe="1h",
                                        study=sections.StudyParams(), capital_quote=1000.0)
    layout = WalkForwardParams(train_days=6, test_days=4, purge_days=1)  # calendar days on hourly bars
    grid = {"spot.top_n": (1, 2), "strategy.rebalance_every_bars": (1, 6)}
    calls: list[int] = []
    document, stitched = walk_forward.walk_forward_study(candles, SETTINGS, inputs, benchmarks, grid=grid,
                                                         layout=layout, progress=lambda: calls.append(1))
    windows = document["windows"]
    origin = -(-int(benchmarks.index[0]) // MS_PER_DAY) * MS_PER_DAY  # days count from the first midnight
    first_test = origin + 7 * MS_PER_DAY  # 6 train days + 1 purge day
    assert [window["test_start_ms"] for window in windows] == list(
        range(first_test, int(benchmarks.index[-1]) - HOUR_MS, 4 * MS_PER_DAY))  # (a last test needs 2 bars)
    assert all(window["train_end_ms"] == window["test_start_ms"] - MS_PER_DAY - HOUR_MS for window in windows)
    assert len(calls) == len(windows) * 5
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert sum(document["params_chosen"].values()) == len(windows)
    assert all(window["params"]["spot.top_n"] in (1, 2) for window in windows)
    first_test = windows[0]["test_start_ms"]
    assert stitched["timestamp"].iloc[0] == first_test and stitched["timestamp"].iloc[-1] == benchmarks.index[-1]
    assert list(stitched.columns) == ["timestamp", "strategy", *benchmarks.columns]
    assert (stitched.drop(columns="timestamp").iloc[0] == 1000.0).all()  # benchmarks rebased to the OOS start
    evaluate = simulation.make_evaluate(candles, SETTINGS, computed=inputs)
    first = evaluate(windows[0]["params"], first_test, windows[0]["test_end_ms"])
    np.testing.assert_allclose(stitched["strategy"].iloc[: len(first)], first, rtol=TOLERANCE)
    assert set(document["out_of_sample_metrics"]) == {"strategy", *benchmarks.columns}


def test_walk_forward_baskets_are_bought_at_the_out_of_sample_start(candles, inputs) -> None:
    start = history.default_start_ms(inputs)
    benchmarks = benchmark_curves.benchmark_equity(inputs.close.loc[start:], inputs.benchmark, timeframe="1h",
                                        study=sections.StudyParams(), capital_quote=1000.0)
    _, stitched = walk_forward.walk_forward_study(candles, SETTINGS, inputs, benchmarks,
                                                  grid={"spot.top_n": (1,)},
                                                  layout=WalkForwardParams(train_days=6, test_days=4))
    oos_close = inputs.close.loc[int(stitched["timestamp"].iloc[0]):].ffill()
    # equal money in each coin priced at the out-of-sample start, then held: 1000 x mean of price relatives
    expected = 1000.0 * (oos_close / oos_close.iloc[0]).mean(axis=1)
    np.testing.assert_allclose(stitched["equal_weight_buy_and_hold"], expected.to_numpy(), rtol=1e-12)
    rebased = benchmarks["equal_weight_buy_and_hold"].reindex(oos_close.index)
    assert not np.allclose(1000.0 * rebased / rebased.iloc[0], expected.to_numpy())  # the drifted basket differs


# --- charts, text, identifiers ----------------------------------------------------------------------------


def test_chart_frames_give_time_indexed_curves_drawdowns_and_exposure() -> None:
    index = np.arange(3, dtype=np.int64) * HOUR_MS
    equity = pd.DataFrame({"timestamp": index, "strategy": [100.0, 80.0, 120.0], "btc_buy_and_hold": [100.0] * 3})
    weights = pd.DataFrame({"A": [0.0, 0.5, 0.5], "B": [0.0, -0.25, 0.0]}, index=index)
    curves, drawdowns, exposure = chart_data.chart_frames(equity, weights)
    assert isinstance(curves.index, pd.DatetimeIndex) and str(curves.index.tz) == "UTC"
    np.testing.assert_allclose(drawdowns["strategy"], [0.0, -0.2, 0.0])
    np.testing.assert_allclose(exposure["gross"], [0.0, 0.75, 0.5])
    np.testing.assert_allclose(exposure["net"], [0.0, 0.25, 0.5])


def test_chart_frames_thin_long_runs_but_keep_the_worst_drawdown() -> None:
    bars = 7 * chart_data.MAX_CHART_POINTS // 3
    rng = np.random.default_rng(3)
    curve = 1000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, bars)))
    equity = pd.DataFrame({"timestamp": np.arange(bars, dtype=np.int64) * HOUR_MS, "strategy": curve})
    weights = pd.DataFrame({"A": np.full(bars, 0.5)}, index=equity["timestamp"].to_numpy())
    curves, drawdowns, exposure = chart_data.chart_frames(equity, weights)
    assert len(curves) <= chart_data.MAX_CHART_POINTS and len(curves) == len(drawdowns) == len(exposure)
    assert curves["strategy"].iloc[-1] == curve[-1]
    assert drawdowns["strategy"].min() == pytest.approx((curve / np.maximum.accumulate(curve) - 1).min())
    np.testing.assert_allclose(exposure["gross"], 0.5)


def test_summary_table_shows_percentages_ratios_and_dashes() -> None:
    text = reports.summary_table("title", {"strategy": {"cagr_frac": 0.1234, "sharpe": 1.5, "calmar": None,
                                                        "turnover_annual": 7.25, "cost_drag_annual_frac": 0.011}})
    lines = text.splitlines()
    assert lines[0] == "title" and "CAGR" in lines[1] and "Sharpe" in lines[1] and "turn/yr" in lines[1]
    assert lines[2].startswith("strategy") and "12.3%" in lines[2] and "1.50" in lines[2] and " -" in lines[2]
    assert lines[2].endswith("     7.25     1.1%")  # turnover a year, then cost drag a year


@pytest.mark.parametrize(
    ("text", "is_end", "expected_ms"),
    [("2023-01-01", False, 1_672_531_200_000), ("2023-01-01", True, 1_672_531_200_000 + MS_PER_DAY - 1),
     ("2023-01-01T12:00", True, 1_672_531_200_000 + 12 * HOUR_MS), ("1672531200000", True, 1_672_531_200_000),
     ("2023-01-01T00:00+01:00", False, 1_672_531_200_000 - HOUR_MS)],
)  # fmt: skip
def test_parse_time_ms(text: str, is_end: bool, expected_ms: int) -> None:
    assert history.parse_time_ms(text, is_end=is_end) == expected_ms


def test_parse_time_ms_rejects_other_text() -> None:
    with pytest.raises(ConfigError, match="ISO date"):
        history.parse_time_ms("yesterday", is_end=False)


def test_run_id_is_sortable_safe_and_depends_on_the_inputs(tmp_path) -> None:
    run_id = run_ids.build_run_id(SETTINGS, now_ms=1_704_067_200_000, inputs=["fingerprint", "a"])
    assert re.fullmatch(r"spot_long_only-1h-20240101T000000Z-[0-9a-f]{8}", run_id)
    assert run_id == run_ids.build_run_id(SETTINGS, now_ms=1_704_067_200_000, inputs=["fingerprint", "a"])
    assert run_id != run_ids.build_run_id(SETTINGS, now_ms=1_704_067_200_000, inputs=["fingerprint", "b"])
    other = sections.with_overrides(SETTINGS, {"spot.top_n": 3})
    assert run_id != run_ids.build_run_id(other, now_ms=1_704_067_200_000, inputs=["fingerprint", "a"])
    assert ProjectPaths(tmp_path, tmp_path, "x").backtest_dir(run_id).name == run_id


def test_json_safe_and_settings_document() -> None:
    value = {"nan": np.float64("nan"), "inf": float("inf"), "pair": (1, np.int64(2)), "flag": np.bool_(True)}
    assert json_values.json_safe(value) == {"nan": None, "inf": None, "pair": [1, 2], "flag": True}
    document = sections.settings_document(SETTINGS)
    assert set(document) == set(sections.GRID_SECTIONS) and document["spot"]["top_n"] == 2
    assert document["signals"]["roc_lengths"] == [3, 10, 30]
    json.dumps(document, allow_nan=False)


def test_cut_candles_drops_later_rows_and_empty_symbols() -> None:
    early = synthetic_candles(5, seed=1)
    late = synthetic_candles(5, seed=2, start_bar=10)
    cut = history.cut_candles({"A": early, "B": late}, end_ms=2 * HOUR_MS)
    assert list(cut) == ["A"] and cut["A"]["timestamp"].tolist() == [0, HOUR_MS, 2 * HOUR_MS]
    assert history.cut_candles({"A": early}, end_ms=None)["A"] is early
    with pytest.raises(DataError, match="no candles at or before"):
        history.cut_candles({"B": late}, end_ms=HOUR_MS)


def test_a_contradicting_backtest_market_is_refused() -> None:
    perp_settings = replace(SETTINGS, strategy=replace(SETTINGS.strategy, name="perp_market_neutral"))
    assert sections.to_backtest_params(perp_settings).market == "perp"
    spot_with_perp_market = replace(SETTINGS, backtest=replace(SETTINGS.backtest, market="perp"))
    with pytest.raises(ConfigError, match="backtest.market"):
        sections.to_backtest_params(spot_with_perp_market)


def test_a_strategy_run_sent_back_as_its_own_part_equals_the_whole_run(candles, inputs) -> None:
    """A grid point's strategy run travels back without the market frames every run shares; rebuilt on the base
    run's market it is the run computed whole: every frame equal, and the market frames shared, not copied."""
    top_one = sections.with_overrides(SETTINGS, {"spot.top_n": 1, "strategy.volatility_window_bars": 30})
    part = walk_forward.strategy_run_task(top_one, walk_forward.StrategyShared(candles, None))
    whole = simulation.build_simulation_inputs(candles, top_one, funding_wide=None)
    rebuilt = part.on(inputs)
    for name in ("open", "close", "target_weights", "bar_volatility_frac", "daily_close"):
        pd.testing.assert_frame_equal(getattr(rebuilt, name), getattr(whole, name), check_exact=True)
    pd.testing.assert_series_equal(rebuilt.is_tradeable, whole.is_tradeable, check_exact=True)
    assert rebuilt.benchmark == whole.benchmark and rebuilt.funding is None
    assert rebuilt.open is inputs.open and rebuilt.close is inputs.close
    assert not rebuilt.target_weights.equals(inputs.target_weights)  # the point's own run, not the base's

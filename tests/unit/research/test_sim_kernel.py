"""The compiled walk (lib/research/sim_kernel.py) against the Python walk of lib/research/backtester.py, the
reference: equity, held weights, trades, fees, slippage, funding and turnover equal within 1e-12, on random
markets and targets (hypothesis: gaps, late listings, coins whose candles stop, spot and leveraged perps with
funding, every cost knob) and on real Binance data; plus the sweep entry point against one run per set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.core.errors import DataError
from lib.core.timeframes import MS_PER_DAY
from lib.data import ohlcv
from lib.research.backtest_params import BacktestParams
from lib.research.backtester import BacktestResult, run_backtest, run_backtest_sweep
from lib.research.live_risk import LiveRiskLimits
from lib.research.study import simulation

HOUR_MS = 3_600_000
TOLERANCE = 1e-12
LOOSE_LIMITS = LiveRiskLimits(max_drawdown_frac=0.99, daily_loss_limit_frac=0.99, max_asset_weight_frac=10.0,
                              max_gross_exposure_frac=10.0, max_gross_leverage=10.0, max_net_exposure_frac=10.0,
                              max_order_notional_quote=1e12, max_orders_per_run=1000)


def assert_same_run(compiled: BacktestResult, reference: BacktestResult) -> None:
    """Equal within 1e-12 (relative to the starting capital for amounts in quote), no live risk layer."""
    assert_same_books(compiled, reference)
    assert compiled.live_risk is None and reference.live_risk is None


def assert_same_books(compiled: BacktestResult, reference: BacktestResult) -> None:
    """Equity, weights, trades and the cost totals equal within 1e-12 (amounts in quote: of the starting capital)."""
    scale = float(reference.equity.iloc[0])
    pd.testing.assert_series_equal(compiled.equity, reference.equity, rtol=TOLERANCE, atol=TOLERANCE * scale)
    pd.testing.assert_frame_equal(compiled.weights, reference.weights, rtol=TOLERANCE, atol=TOLERANCE)
    pd.testing.assert_frame_equal(compiled.trades, reference.trades, rtol=TOLERANCE, atol=TOLERANCE * scale)
    for name in ("fees_paid_quote", "slippage_paid_quote", "funding_paid_quote", "turnover"):
        assert getattr(compiled, name) == pytest.approx(getattr(reference, name), rel=TOLERANCE, abs=TOLERANCE * scale)
    assert compiled.data_end_exits == reference.data_end_exits


def random_market(rng: np.random.Generator, n_bars: int, n_assets: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Opens and closes with holes, late listings and early ends (so data-end exits happen)."""
    index = pd.Index(np.arange(n_bars, dtype=np.int64) * HOUR_MS, name="timestamp")
    columns = [f"C{asset}/USDT" for asset in range(n_assets)]
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.04, (n_bars, n_assets)), axis=0))
    opens = np.vstack([closes[:1], closes[:-1]]) * np.exp(rng.normal(0, 0.01, (n_bars, n_assets)))
    for asset in range(n_assets):
        if rng.random() < 0.3:
            closes[: rng.integers(1, n_bars), asset] = np.nan  # lists late
        if rng.random() < 0.3:
            closes[rng.integers(1, n_bars) :, asset] = np.nan  # candles stop
    opens[np.isnan(closes)] = np.nan
    opens[rng.random(opens.shape) < 0.05] = np.nan  # a missing open blocks that asset's trade
    closes[rng.random(closes.shape) < 0.05] = np.nan  # a missing close is marked at the last one
    return pd.DataFrame(opens, index=index, columns=columns), pd.DataFrame(closes, index=index, columns=columns)


def random_targets(rng: np.random.Generator, closes: pd.DataFrame, market: str) -> pd.DataFrame:
    shape = closes.shape
    if market == "spot":
        raw = rng.uniform(0, 1, shape) * (rng.random(shape) < 0.7)
        weights = raw / np.maximum(raw.sum(axis=1, keepdims=True), 1e-12) * rng.choice([0.5, 0.95, 1.0], (shape[0], 1))
    else:
        weights = rng.normal(0, rng.choice([0.3, 1.5]), shape) * (rng.random(shape) < 0.7)
    weights[rng.random(shape[0]) < 0.3] = np.nan  # bars without a decision
    weights[rng.random(shape[0]) < 0.1] = 0.0  # all-cash decisions
    return pd.DataFrame(weights, index=closes.index, columns=closes.columns)


def random_params(rng: np.random.Generator, market: str) -> BacktestParams:
    return BacktestParams(
        market=market, starting_capital_quote=float(rng.choice([100.0, 1000.0, 1e5])),
        fee_bps=float(rng.choice([0.0, 10.0, 40.0])), slippage_bps=float(rng.choice([0.0, 5.0, 30.0])),
        slippage_vol_mult=float(rng.choice([0.0, 0.5])), min_notional_quote=float(rng.choice([0.0, 10.0, 60.0])),
        no_trade_band_frac=float(rng.choice([0.0, 0.02, 0.1])), rebalance_every_bars=int(rng.integers(1, 4)),
        model_live_risk=False,
    )  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(2, 80), n_assets=st.integers(1, 7),
       market=st.sampled_from(["spot", "perp"]), with_funding=st.booleans())
def test_compiled_walk_equals_the_python_walk_on_random_markets(
    seed: int, n_bars: int, n_assets: int, market: str, with_funding: bool
) -> None:
    rng = np.random.default_rng(seed)
    opens, closes = random_market(rng, n_bars, n_assets)
    targets = random_targets(rng, closes, market)
    params = random_params(rng, market)
    volatility = pd.DataFrame(rng.uniform(0, 0.03, closes.shape), index=closes.index, columns=closes.columns)
    funding = None
    if market == "perp" and with_funding:
        settle_ms = np.unique(rng.integers(-HOUR_MS, (n_bars + 1) * HOUR_MS, size=max(1, n_bars // 3)))
        funding = pd.DataFrame(rng.normal(1e-4, 2e-3, (len(settle_ms), n_assets)), index=settle_ms,
                               columns=closes.columns)
    kwargs = {"open_wide": opens, "close_wide": closes, "target_weights": targets, "params": params,
              "funding_wide": funding, "volatility_wide": volatility}
    assert_same_run(run_backtest(**kwargs, compiled=True), run_backtest(**kwargs, compiled=False))


def test_a_liquidated_perp_book_is_the_same_in_both_walks() -> None:
    rng = np.random.default_rng(3)
    index = pd.Index(np.arange(40, dtype=np.int64) * HOUR_MS, name="timestamp")
    closes = pd.DataFrame({"A/USDT": np.r_[np.full(10, 100.0), np.full(30, 40.0)] * np.exp(rng.normal(0, 0.01, 40))},
                          index=index)
    targets = pd.DataFrame({"A/USDT": np.full(40, 3.0)}, index=index)  # 3x long through a 60 % fall
    kwargs = {"open_wide": closes, "close_wide": closes, "target_weights": targets,
              "params": BacktestParams(market="perp", model_live_risk=False)}
    compiled = run_backtest(**kwargs, compiled=True)
    assert (compiled.equity.iloc[10:] == 0).all() and compiled.trades["timestamp"].max() < 10 * HOUR_MS
    assert_same_run(compiled, run_backtest(**kwargs, compiled=False))


def test_the_live_risk_layer_runs_the_python_walk_and_off_it_the_compiled_one() -> None:
    rng = np.random.default_rng(8)
    opens, closes = random_market(rng, 60, 4)
    targets = random_targets(rng, closes, "spot")
    params = random_params(rng, "spot")
    kwargs = {"open_wide": opens, "close_wide": closes, "target_weights": targets}
    modelled = dataclasses.replace(params, model_live_risk=True)
    with_risk = run_backtest(**kwargs, params=modelled, live_risk=LOOSE_LIMITS)
    assert with_risk.live_risk is not None  # the layer ran (through LiveRiskState)
    pd.testing.assert_series_equal(with_risk.equity, run_backtest(**kwargs, params=modelled, live_risk=LOOSE_LIMITS,
                                                                  compiled=False).equity, rtol=0, atol=0)
    off = run_backtest(**kwargs, params=params, live_risk=LOOSE_LIMITS)  # model_live_risk = False: compiled
    assert_same_run(off, run_backtest(**kwargs, params=params, live_risk=LOOSE_LIMITS, compiled=False))
    # limits that never bind: the layer's walk and the compiled walk give the same book
    pd.testing.assert_series_equal(with_risk.equity, off.equity, rtol=TOLERANCE)


def test_a_sweep_equals_one_run_per_parameter_set() -> None:
    rng = np.random.default_rng(21)
    opens, closes = random_market(rng, 120, 5)
    targets = random_targets(rng, closes, "spot")
    base = BacktestParams(model_live_risk=False)
    grid = [dataclasses.replace(base, fee_bps=fee, no_trade_band_frac=band, rebalance_every_bars=every)
            for fee in (0.0, 25.0) for band in (0.0, 0.05) for every in (1, 3)]
    swept = run_backtest_sweep(open_wide=opens, close_wide=closes, target_weights=targets, grid=grid)
    for params, result in zip(grid, swept, strict=True):
        assert_same_run(result, run_backtest(open_wide=opens, close_wide=closes, target_weights=targets,
                                             params=params, compiled=False))
    assert len({float(result.equity.iloc[-1]) for result in swept}) == len(grid)  # the sets differ
    with pytest.raises(DataError, match="one market"):
        run_backtest_sweep(open_wide=opens, close_wide=closes, target_weights=targets,
                           grid=[base, dataclasses.replace(base, market="perp")])


# ---- real Binance data ---------------------------------------------------------------------------


def _wide(frames: dict[str, pd.DataFrame], field: str) -> pd.DataFrame:
    return pd.DataFrame({symbol: frame.set_index("timestamp")[field] for symbol, frame in frames.items()}).sort_index()


def _momentum_targets(closes: pd.DataFrame, lookback: int, *, long_short: bool) -> pd.DataFrame:
    """A causal rule (row t reads closes <= t): equal weight on positive ``lookback``-bar returns (long-only), or
    sign of the return / n (long-short)."""
    momentum = closes / closes.shift(lookback) - 1.0
    if long_short:
        return np.sign(momentum).div(momentum.notna().sum(axis=1).clip(lower=1), axis=0)
    winners = (momentum > 0).astype(float)
    return winners.div(winners.sum(axis=1).clip(lower=1), axis=0).where(momentum.notna().any(axis=1))


@pytest.mark.realdata
@pytest.mark.parametrize("every_bars", [1, 7])
def test_compiled_walk_equals_the_python_walk_on_real_daily_spot(shared_data_dir, every_bars: int) -> None:
    frames = {path.stem: pd.read_parquet(path, columns=list(ohlcv.OHLCV_COLUMNS))
              for path in sorted((shared_data_dir / "market" / "1d").glob("*.parquet"))}
    opens, closes = _wide(frames, "open"), _wide(frames, "close")
    opens = opens.reindex_like(closes)
    targets = _momentum_targets(closes, 20, long_short=False)
    params = BacktestParams(rebalance_every_bars=every_bars, no_trade_band_frac=0.01, model_live_risk=False)
    kwargs = {"open_wide": opens, "close_wide": closes, "target_weights": targets, "params": params}
    compiled = run_backtest(**kwargs)
    assert len(closes.columns) == 25 and len(compiled.trades) > 1000
    assert_same_run(compiled, run_backtest(**kwargs, compiled=False))


def real_hourly_perps(shared_data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The first year of the real perpetuals' hourly opens and closes, and their funding rates (settlement x perp)."""
    futures = {path.stem: pd.read_parquet(path, columns=list(ohlcv.OHLCV_COLUMNS))
               for path in sorted((shared_data_dir / "futures" / "1h").glob("*.parquet"))}
    closes = _wide(futures, "close")
    closes = closes.loc[closes.index < closes.index[0] + 365 * MS_PER_DAY]
    opens = _wide(futures, "open").reindex_like(closes)
    funding = pd.DataFrame({path.stem: pd.read_parquet(path).set_index("timestamp")["rate"]
                            for path in sorted((shared_data_dir / "funding").glob("*.parquet"))}).sort_index()
    return opens, closes, funding.loc[:, funding.columns.isin(closes.columns)]


@pytest.mark.realdata
def test_compiled_walk_equals_the_python_walk_on_real_hourly_perps_with_funding(shared_data_dir) -> None:
    opens, closes, funding = real_hourly_perps(shared_data_dir)
    targets = _momentum_targets(closes, 72, long_short=True) * 1.5
    params = BacktestParams(market="perp", rebalance_every_bars=8, slippage_vol_mult=0.5, model_live_risk=False)
    volatility = closes.pct_change().rolling(24).std()
    kwargs = {"open_wide": opens, "close_wide": closes, "target_weights": targets, "params": params,
              "funding_wide": funding, "volatility_wide": volatility}
    compiled = run_backtest(**kwargs)
    assert len(closes.columns) == 5 and len(compiled.trades) > 1000 and compiled.funding_paid_quote != 0
    assert_same_run(compiled, run_backtest(**kwargs, compiled=False))


def test_simulate_grid_equals_one_simulate_per_set_with_and_without_the_live_risk_layer() -> None:
    rng = np.random.default_rng(34)
    opens, closes = random_market(rng, 90, 4)
    targets = random_targets(rng, closes, "spot")
    volatility = pd.DataFrame(rng.uniform(0, 0.03, closes.shape), index=closes.index, columns=closes.columns)
    inputs = simulation.SimulationInputs(open=opens, close=closes, target_weights=targets,
                                         bar_volatility_frac=volatility, is_tradeable=closes.notna().any(axis=1),
                                         benchmark=None, funding=None)
    base = BacktestParams(min_notional_quote=0.0)
    grid = [dataclasses.replace(base, fee_bps=fee, slippage_vol_mult=vol, model_live_risk=risk)
            for fee in (0.0, 30.0) for vol in (0.0, 0.5) for risk in (False, True)]
    start_ms, end_ms = int(closes.index[5]), int(closes.index[80])
    swept = simulation.simulate_grid(inputs, grid, start_ms=start_ms, end_ms=end_ms, live_risk=LOOSE_LIMITS)
    for params, result in zip(grid, swept, strict=True):
        alone = simulation.simulate(inputs, params, start_ms=start_ms, end_ms=end_ms, live_risk=LOOSE_LIMITS)
        assert (result.live_risk is None) == (not params.model_live_risk)
        pd.testing.assert_series_equal(result.equity, alone.equity, rtol=0, atol=0)
        pd.testing.assert_frame_equal(result.trades, alone.trades, rtol=0, atol=0)

"""The compiled walk with the live risk layer (lib/research/live_kernel.py) against the Python walk of
lib/research/backtester.py + lib/research/live_risk.py, the reference: equity, held weights, trades, fees and the
layer's report (halts and re-arms, reduce-only days, blocked ticks by check, clips, tail factors, refusals and
unknown risks) equal, on random markets (hypothesis: hourly to daily bars, listings, delistings, gaps, spot and
perps with funding, random [risk] limits and tail-risk actions) and on real Binance data; plus a check that the
random markets do reach every branch of the layer, and the default's choice of walk."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.data import ohlcv
from lib.research import backtester
from lib.research.backtest_params import BacktestParams
from lib.research.backtester import BacktestResult, run_backtest
from lib.research.live_risk import LiveRiskLimits
from lib.research.live_tail import day_closes
from tests.unit.research.test_sim_kernel import (
    _momentum_targets,
    _wide,
    assert_same_books,
    random_market,
    random_params,
    random_targets,
    real_hourly_perps,
)

TOLERANCE = 1e-12
BAR_LENGTHS_MS = (MS_PER_HOUR, 4 * MS_PER_HOUR, MS_PER_DAY)


def assert_same_live_run(compiled: BacktestResult, reference: BacktestResult) -> None:
    """Books equal within 1e-12 (relative to the starting capital for amounts in quote), the report exactly."""
    assert_same_books(compiled, reference)
    assert compiled.live_risk is not None and compiled.live_risk == reference.live_risk


def random_limits(rng: np.random.Generator) -> LiveRiskLimits:
    """[risk] limits from loose to binding, so halts, reduce-only days, clips and every blocked check happen."""
    pick = rng.choice
    return LiveRiskLimits(
        max_drawdown_frac=float(pick([0.05, 0.15, 0.3, 0.99])), daily_loss_limit_frac=float(pick([0.01, 0.03, 0.99])),
        max_asset_weight_frac=float(pick([0.2, 0.35, 1.0, 10.0])),
        max_gross_exposure_frac=float(pick([0.8, 1.0, 10.0])),
        max_gross_leverage=float(pick([0.8, 2.0, 10.0])), max_net_exposure_frac=float(pick([0.5, 1.0, 10.0])),
        max_order_notional_quote=float(pick([50.0, 400.0, 1e12])), max_orders_per_run=int(pick([1, 2, 1000])),
        var_lookback_days=int(pick([20, 30, 365])), max_var_99_frac=float(pick([0.01, 0.05, 0.08])),
        max_cvar_99_frac=float(pick([0.02, 0.12])), tail_risk_action=str(pick(["scale", "refuse", "off"])),
    )  # fmt: skip


def random_case(seed: int, n_bars: int, n_assets: int, market: str, with_funding: bool) -> dict[str, object]:
    """run_backtest's keyword arguments for one random market with the live risk layer modelled."""
    rng = np.random.default_rng(seed)
    opens, closes = random_market(rng, n_bars, n_assets)
    bar_ms = int(rng.choice(BAR_LENGTHS_MS))
    index = pd.Index(int(rng.integers(0, 48)) * MS_PER_HOUR + np.arange(n_bars, dtype=np.int64) * bar_ms,
                     name="timestamp")
    opens.index = closes.index = index
    targets = random_targets(rng, closes, market)
    params = dataclasses.replace(random_params(rng, market), model_live_risk=True,
                                 halt_review_days=int(rng.choice([0, 1, 3])))
    volatility = pd.DataFrame(rng.uniform(0, 0.03, closes.shape), index=index, columns=closes.columns)
    funding = None
    if market == "perp" and with_funding:
        settle_ms = np.unique(rng.integers(-bar_ms, (n_bars + 1) * bar_ms, size=max(1, n_bars // 3)))
        funding = pd.DataFrame(rng.normal(1e-4, 2e-3, (len(settle_ms), n_assets)), index=settle_ms,
                               columns=closes.columns)
    daily = day_closes(closes, timeframe_ms=bar_ms) if rng.random() < 0.8 else None
    return {"open_wide": opens, "close_wide": closes, "target_weights": targets, "params": params,
            "funding_wide": funding, "volatility_wide": volatility, "live_risk": random_limits(rng),
            "daily_close": daily}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(2, 200), n_assets=st.integers(1, 6),
       market=st.sampled_from(["spot", "perp"]), with_funding=st.booleans())
def test_compiled_live_walk_equals_the_python_walk_on_random_markets(
    seed: int, n_bars: int, n_assets: int, market: str, with_funding: bool
) -> None:
    kwargs = random_case(seed, n_bars, n_assets, market, with_funding)
    assert_same_live_run(run_backtest(**kwargs, compiled=True), run_backtest(**kwargs, compiled=False))


def test_the_random_markets_reach_every_branch_of_the_layer() -> None:
    """The same generator over fixed seeds: each outcome of the layer happens (so the equality above covers it),
    and the two walks agree on every one of these runs too. (A target over the asset cap is clipped before the
    cap is checked, so the check "asset_weight" cannot block a tick of run_backtest: both walks still carry it.)"""
    seen: Counter[str] = Counter()
    for seed in range(150):
        kwargs = random_case(seed, 40 + seed % 160, 1 + seed % 6, ("spot", "perp")[seed % 2], seed % 4 == 1)
        compiled, reference = run_backtest(**kwargs, compiled=True), run_backtest(**kwargs, compiled=False)
        assert_same_live_run(compiled, reference)
        report = reference.live_risk
        assert report is not None
        seen.update(check for check, count in report.blocked_ticks.items() if count)
        seen.update({"halt": bool(report.halts), "re-arm": any(end is not None for _, end in report.halts),
                     "reduce-only day": report.reduce_only_days > 0, "clip": report.clipped_ticks > 0,
                     "tail scaled": bool(report.tail_scales), "tail refused": report.tail_refused_ticks > 0,
                     "tail unknown": report.tail_unknown_ticks > 0, "data-end exit": bool(reference.data_end_exits),
                     "funding": reference.funding_paid_quote != 0})
    expected = {"exposure", "fat_finger", "order_count", "halt", "re-arm", "reduce-only day", "clip",
                "tail scaled", "tail refused", "tail unknown", "data-end exit", "funding"}
    assert {name for name, count in seen.items() if count} >= expected


def test_the_default_compiles_the_live_walk_on_long_histories_only(monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = random_case(5, 60, 3, "spot", False)
    called: list[bool] = []
    compiled_run = backtester._compiled_run
    monkeypatch.setattr(backtester, "_compiled_run", lambda *args: called.append(True) or compiled_run(*args))
    short = run_backtest(**kwargs)
    assert called == []  # 60 bars: the Python walk
    monkeypatch.setattr(backtester, "LIVE_COMPILED_MIN_BARS", 60)
    assert_same_live_run(run_backtest(**kwargs), short)
    assert called == []  # a long history with fewer ticks than LIVE_COMPILED_MIN_TICKS: still the Python walk
    monkeypatch.setattr(backtester, "LIVE_COMPILED_MIN_TICKS", 10)
    long = run_backtest(**kwargs)
    assert called == [True]
    assert_same_live_run(long, short)


# ---- real Binance data ---------------------------------------------------------------------------


def _real_kwargs(opens: pd.DataFrame, closes: pd.DataFrame, targets: pd.DataFrame, params: BacktestParams,
                 timeframe_ms: int, limits: LiveRiskLimits) -> dict[str, object]:
    return {"open_wide": opens, "close_wide": closes, "target_weights": targets, "params": params,
            "live_risk": limits, "daily_close": day_closes(closes, timeframe_ms=timeframe_ms)}


SHIPPED_LIMITS = LiveRiskLimits(max_drawdown_frac=0.25, daily_loss_limit_frac=0.05, max_asset_weight_frac=0.35,
                                max_gross_exposure_frac=1.0, max_gross_leverage=2.0, max_net_exposure_frac=1.0,
                                max_order_notional_quote=500.0, max_orders_per_run=40, tail_risk_action="scale")


@pytest.mark.realdata
@pytest.mark.parametrize(("timeframe", "every_bars", "action"), [("1d", 1, "scale"), ("1d", 3, "refuse"),
                                                                  ("1h", 1, "scale"), ("1h", 4, "refuse")])
def test_compiled_live_walk_equals_the_python_walk_on_real_spot(shared_data_dir, timeframe: str, every_bars: int,
                                                                action: str) -> None:
    frames = {path.stem: pd.read_parquet(path, columns=list(ohlcv.OHLCV_COLUMNS))
              for path in sorted((shared_data_dir / "market" / timeframe).glob("*.parquet"))}
    closes = _wide(frames, "close")
    timeframe_ms = MS_PER_DAY if timeframe == "1d" else MS_PER_HOUR
    if timeframe == "1h":
        closes = closes.loc[closes.index < closes.index[0] + 2 * 365 * MS_PER_DAY]
    opens = _wide(frames, "open").reindex_like(closes)
    targets = _momentum_targets(closes, 20 if timeframe == "1d" else 72, long_short=False)
    params = BacktestParams(rebalance_every_bars=every_bars, no_trade_band_frac=0.01, halt_review_days=7)
    limits = dataclasses.replace(SHIPPED_LIMITS, tail_risk_action=action)
    kwargs = _real_kwargs(opens, closes, targets, params, timeframe_ms, limits)
    compiled, reference = run_backtest(**kwargs, compiled=True), run_backtest(**kwargs, compiled=False)
    assert_same_live_run(compiled, reference)
    assert len(closes.columns) == 25 and len(reference.trades) > 300
    report = reference.live_risk  # the layer acted: a halt or a reduce-only day, clips, the tail pass
    assert report is not None and (report.halts or report.reduce_only_days > 0) and report.clipped_ticks > 0
    assert report.tail_scales or report.tail_refused_ticks > 0


@pytest.mark.realdata
def test_compiled_live_walk_equals_the_python_walk_on_real_hourly_perps(shared_data_dir) -> None:
    opens, closes, funding = real_hourly_perps(shared_data_dir)
    targets = _momentum_targets(closes, 72, long_short=True) * 1.5
    params = BacktestParams(market="perp", rebalance_every_bars=8, slippage_vol_mult=0.5, halt_review_days=3)
    kwargs = _real_kwargs(opens, closes, targets, params, MS_PER_HOUR, SHIPPED_LIMITS) | {
        "funding_wide": funding,
        "volatility_wide": closes.pct_change().rolling(24).std()}
    compiled, reference = run_backtest(**kwargs, compiled=True), run_backtest(**kwargs, compiled=False)
    assert reference.funding_paid_quote != 0 and reference.live_risk is not None
    assert_same_live_run(compiled, reference)

"""lib/research/strategy.py: the composition of signals -> ensemble -> universe -> weights, on synthetic candles."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.research.ensemble import EnsembleParams
from lib.research.portfolio import PerpParams, SpotParams
from lib.research.signal_params import SIGNAL_NAMES
from lib.research.strategy import (
    MarketPanel,
    StrategyOutput,
    benchmark_column,
    compute_beta,
    compute_strategy,
    data_fingerprint,
    latest_targets,
    no_data_breakdown,
    to_wide_panel,
)
from lib.research.strategy_params import StrategySection
from lib.research.universe import UniverseParams
from tests.helpers import HOUR_MS, SMALL, synthetic_candles

TOTAL_BARS = 500
CUT_BARS = (150, 333, 499)  # positions on the union index where history is cut
TOLERANCE = 1e-9

SPOT_STRATEGY = StrategySection(name="spot_long_only", timeframe="1h", volatility_window_bars=20)
PERP_STRATEGY = StrategySection(name="perp_market_neutral", timeframe="1h", volatility_window_bars=20)
UNIVERSE = UniverseParams(min_history_bars=60, dollar_volume_window_bars=10, min_dollar_volume_quote=0.0)
SPOT = SpotParams(top_n=3, max_asset_weight_frac=0.4, target_vol_annual_frac=0.8, regime_sma_bars=50)
PERP = PerpParams(top_k=2, max_gross_leverage=1.5, max_asset_weight_frac=0.5)


def _universe(perpetual: bool = False) -> dict[str, pd.DataFrame]:
    """Six coins: full history, a late starter, one with missing bars, one whose data stop."""
    gappy = synthetic_candles(TOTAL_BARS - 40, seed=2, start_bar=40, drift=0.001)
    candles = {
        "BTC/USDT": synthetic_candles(TOTAL_BARS, seed=1, drift=0.0005),
        "ETH/USDT": gappy.drop(index=[100, 101, 102, 300]).reset_index(drop=True),
        "SOL/USDT": synthetic_candles(TOTAL_BARS - 150, seed=3, start_bar=150, drift=-0.001),
        "DOGE/USDT": synthetic_candles(420, seed=4, vol=0.02),
        "ADA/USDT": synthetic_candles(TOTAL_BARS, seed=5, drift=-0.0005, vol=0.015),
        "XRP/USDT": synthetic_candles(TOTAL_BARS, seed=6, drift=0.001, vol=0.012),
    }
    return {f"{symbol}:USDT" if perpetual else symbol: frame for symbol, frame in candles.items()}


def _run(candles: dict[str, pd.DataFrame], *, is_perp: bool = False, **overrides: object) -> StrategyOutput:
    arguments: dict[str, object] = {
        "strategy": PERP_STRATEGY if is_perp else SPOT_STRATEGY,
        "signals": SMALL,
        "ensemble": EnsembleParams(),
        "universe": UNIVERSE,
        "spot": SPOT,
        "perp": PERP,
    }
    arguments.update(overrides)
    return compute_strategy(candles, **arguments)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def spot_output() -> StrategyOutput:
    return _run(_universe())


@pytest.fixture(scope="module")
def perp_output() -> StrategyOutput:
    return _run(_universe(perpetual=True), is_perp=True, perp=replace(PERP, beta_neutral=True))


# -- to_wide_panel ------------------------------------------------------------------------------------


def _candles(timestamps: list[int], closes: list[float]) -> pd.DataFrame:
    close = np.array(closes)
    return pd.DataFrame(
        {
            "timestamp": np.array(timestamps, dtype=np.int64),
            "open": close,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": np.full(len(closes), 2.0),
        }
    )


def test_wide_panel_is_the_union_of_timestamps_with_nan_where_missing():
    candles = {"BTC/USDT": _candles([0, 10, 20], [1.0, 2.0, 3.0]), "ETH/USDT": _candles([10, 30], [5.0, 6.0])}
    panel = to_wide_panel(candles)
    assert isinstance(panel, MarketPanel)
    expected = pd.DataFrame(
        {"BTC/USDT": [1.0, 2.0, 3.0, np.nan], "ETH/USDT": [np.nan, 5.0, np.nan, 6.0]},
        index=pd.Index(np.array([0, 10, 20, 30], dtype=np.int64), name="timestamp"),
    )
    pd.testing.assert_frame_equal(panel.close, expected)
    assert panel.high.at[10, "ETH/USDT"] == pytest.approx(5.05)
    assert panel.volume.notna().sum().to_dict() == {"BTC/USDT": 3, "ETH/USDT": 2}


@pytest.mark.parametrize(
    "candles, message",
    [
        ({}, "at least one symbol"),
        ({"BTC/USDT": _candles([0, 10], [1.0, 2.0]).drop(columns="volume")}, "lack columns"),
        ({"BTC/USDT": _candles([0, 0], [1.0, 2.0])}, "unique and increasing"),
        ({"BTC/USDT": _candles([10, 0], [1.0, 2.0])}, "unique and increasing"),
    ],
    ids=["no_symbols", "missing_column", "duplicate", "unsorted"],
)
def test_wide_panel_rejects_malformed_candles(candles, message):
    with pytest.raises(DataError, match=message):
        to_wide_panel(candles)


# -- benchmark and beta -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "symbols, expected",
    [
        (["ETH/USDT", "BTC/USDT"], "BTC/USDT"),
        (["ETH/USDT:USDT", "BTC/USDT:USDT"], "BTC/USDT:USDT"),
        (["ETH/USDT"], None),
    ],
)
def test_benchmark_column_maps_the_configured_pair_to_the_venue_form(symbols, expected):
    assert benchmark_column(symbols, "BTC/USDT") == expected


def test_beta_of_a_doubled_return_series_is_two_and_benchmark_beta_is_one():
    returns = np.random.default_rng(0).normal(0.0, 0.01, 40)
    close = pd.DataFrame({"BTC/USDT": np.exp(np.cumsum(returns)), "ETH/USDT": np.exp(np.cumsum(2 * returns))})
    beta = compute_beta(close, "BTC/USDT", window_bars=10)
    assert beta.iloc[:8].isna().all().all()  # 1 return lost + 75 % of a 10-bar window needed
    np.testing.assert_allclose(beta["ETH/USDT"].iloc[10:], 2.0, rtol=1e-9)
    np.testing.assert_allclose(beta["BTC/USDT"].iloc[10:], 1.0, rtol=1e-9)


# -- compute_strategy ---------------------------------------------------------------------------------


def _zero_where(weights: pd.DataFrame, mask: pd.DataFrame) -> bool:
    return bool((weights.to_numpy()[mask.to_numpy(dtype=bool)] == 0).all())


def test_spot_output_is_aligned_and_weights_obey_the_long_only_limits(spot_output):
    weights = spot_output.target_weights
    panel_index = spot_output.panel.close.index
    for frame in (weights, spot_output.scores, spot_output.eligible, spot_output.volatility_annual_frac):
        assert frame.index.equals(panel_index)
        assert list(frame.columns) == list(spot_output.panel.close.columns)
    assert set(spot_output.contributions) == set(EnsembleParams().signals)
    assert set(spot_output.signals) == set(SIGNAL_NAMES)
    assert spot_output.beta is None and spot_output.benchmark == "BTC/USDT"
    assert np.isfinite(weights.to_numpy()).all()
    assert (weights >= 0).all().all()
    assert (weights.sum(axis=1) <= 1 + TOLERANCE).all()
    assert (weights <= SPOT.max_asset_weight_frac + TOLERANCE).all().all()
    assert ((weights > 0).sum(axis=1) <= SPOT.top_n).all()
    assert _zero_where(weights, ~spot_output.eligible)  # never outside the point-in-time universe
    assert _zero_where(weights, spot_output.scores.isna())
    assert (weights.loc[~spot_output.regime_is_bullish] == 0).all().all()  # bear_exposure_frac = 0
    assert (weights.sum(axis=1) > 0).sum() > 20  # the test is not vacuous


def test_perp_output_is_market_neutral_and_within_the_gross_cap(perp_output):
    weights = perp_output.target_weights
    assert perp_output.regime_is_bullish is None and perp_output.benchmark == "BTC/USDT:USDT"
    assert np.isfinite(weights.to_numpy()).all()
    np.testing.assert_allclose(weights.sum(axis=1), 0.0, atol=TOLERANCE)
    assert (weights.abs().sum(axis=1) <= PERP.max_gross_leverage + TOLERANCE).all()
    assert (weights.abs() <= PERP.max_asset_weight_frac + TOLERANCE).all().all()
    assert _zero_where(weights, ~perp_output.eligible)
    active = weights.abs().sum(axis=1) > 0
    assert active.sum() > 20
    beta_exposure = (weights[active] * perp_output.beta[active].fillna(0.0)).sum(axis=1)
    np.testing.assert_allclose(beta_exposure, 0.0, atol=1e-9)


def _truncate(candles: dict[str, pd.DataFrame], cut_ms: int) -> dict[str, pd.DataFrame]:
    cut = {symbol: frame[frame["timestamp"] <= cut_ms] for symbol, frame in candles.items()}
    return {symbol: frame for symbol, frame in cut.items() if len(frame) > 0}


@pytest.mark.parametrize(
    "perp, ensemble",
    [
        (False, EnsembleParams(method="adaptive_ic", ic_window_bars=100, ic_min_bars=20)),
        (True, EnsembleParams(method="rank_average")),
    ],
    ids=["spot_adaptive_ic", "perp_rank_average_beta_neutral"],
)
def test_cutting_the_future_leaves_past_targets_unchanged(perp, ensemble):
    candles = _universe(perpetual=perp)
    perp_params = replace(PERP, beta_neutral=True)
    full = _run(candles, is_perp=perp, ensemble=ensemble, perp=perp_params)
    union = full.target_weights.index
    for position in CUT_BARS:
        past = _truncate(candles, int(union[position]))
        cut = _run(past, is_perp=perp, ensemble=ensemble, perp=perp_params)
        truncated = cut.target_weights
        assert len(truncated) == position + 1
        expected = full.target_weights.loc[truncated.index, list(truncated.columns)]
        pd.testing.assert_frame_equal(expected, truncated, check_exact=True)
        pd.testing.assert_frame_equal(full.scores.loc[truncated.index, list(truncated.columns)], cut.scores)


def test_scaling_all_prices_leaves_weights_unchanged(spot_output):
    scaled = {
        symbol: frame.assign(**{column: frame[column] * 1e3 for column in ("open", "high", "low", "close")})
        for symbol, frame in _universe().items()
    }
    pd.testing.assert_frame_equal(_run(scaled).target_weights, spot_output.target_weights, atol=1e-9, rtol=0)


def test_a_needed_benchmark_that_is_missing_is_a_config_error():
    without_btc = {symbol: frame for symbol, frame in _universe().items() if symbol != "BTC/USDT"}
    with pytest.raises(ConfigError, match="spot.regime_filter needs the benchmark BTC/USDT"):
        _run(without_btc)
    no_regime = _run(without_btc, spot=replace(SPOT, regime_filter=False))
    assert no_regime.benchmark is None and bool(no_regime.regime_is_bullish.all())
    perp_without_btc = {f"{symbol}:USDT": frame for symbol, frame in without_btc.items()}
    with pytest.raises(ConfigError, match="perp.beta_neutral needs the benchmark"):
        _run(perp_without_btc, is_perp=True, perp=replace(PERP, beta_neutral=True))
    assert _run(perp_without_btc, is_perp=True).beta is None


# -- latest_targets -----------------------------------------------------------------------------------


def test_latest_targets_are_the_last_row_with_a_json_safe_breakdown(spot_output):
    as_of_ms = int(spot_output.target_weights.index[-1])
    weights, breakdown = latest_targets(spot_output, as_of_ms=as_of_ms)
    assert weights == spot_output.target_weights.iloc[-1].to_dict()
    assert set(breakdown) == set(weights)
    json.dumps({"weights": weights, "breakdown": breakdown}, allow_nan=False)  # raises on NaN/inf
    for symbol, explanation in breakdown.items():
        assert set(explanation) == {
            "weight",
            "score",
            "contributions",
            "signals",
            "volatility_annual_frac",
            "eligible",
            "regime_is_bullish",
            "beta",
            "close",
        }
        assert explanation["weight"] == weights[symbol]
        assert explanation["regime_is_bullish"] == bool(spot_output.regime_is_bullish.iloc[-1])
        if explanation["score"] is not None:
            total = sum(explanation["contributions"].values())
            assert total == pytest.approx(explanation["score"], abs=1e-12)
    stopped = breakdown["DOGE/USDT"]  # its data stopped at bar 420: no price, no score, not held
    assert stopped == {**stopped, "weight": 0.0, "score": None, "eligible": False, "close": None}
    assert breakdown["BTC/USDT"]["eligible"] is True
    assert breakdown["BTC/USDT"]["volatility_annual_frac"] > 0


def test_latest_targets_during_warm_up_has_no_scores_and_no_weights(perp_output):
    weights, breakdown = latest_targets(perp_output, as_of_ms=5 * HOUR_MS)
    assert set(weights.values()) == {0.0}
    assert all(item["score"] is None and item["eligible"] is False for item in breakdown.values())
    assert all(item["regime_is_bullish"] is None and item["beta"] is None for item in breakdown.values())
    json.dumps(breakdown, allow_nan=False)


def test_latest_targets_for_a_time_that_is_not_a_bar_is_a_data_error(spot_output):
    with pytest.raises(DataError, match="no strategy row at as_of_ms=123"):
        latest_targets(spot_output, as_of_ms=123)


def test_a_symbol_without_data_gets_the_same_breakdown_keys_at_weight_zero(spot_output):
    _, breakdown = latest_targets(spot_output, as_of_ms=int(spot_output.target_weights.index[-1]))
    empty = no_data_breakdown()
    assert set(empty) == set(breakdown["BTC/USDT"])
    assert empty["weight"] == 0.0 and empty["eligible"] is False
    json.dumps(empty, allow_nan=False)


# -- data_fingerprint ---------------------------------------------------------------------------------


def test_fingerprint_is_deterministic_and_sees_the_last_bar():
    candles = {"BTC/USDT": _candles([0, 10], [1.0, 2.0]), "ETH/USDT": _candles([0], [5.0])}
    fingerprint = data_fingerprint(candles)
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert data_fingerprint(dict(reversed(candles.items()))) == fingerprint
    assert data_fingerprint({**candles, "ETH/USDT": _candles([0], [5.5])}) != fingerprint
    assert data_fingerprint({**candles, "ETH/USDT": _candles([0, 10], [5.0, 5.0])}) != fingerprint
    assert data_fingerprint({"BTC/USDT": candles["BTC/USDT"]}) != fingerprint

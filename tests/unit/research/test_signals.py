"""lib.research.signals: normalizers with exact numbers, signal directions, invariants, the panel, params."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError, IndicatorError
from lib.research.signal_params import SIGNAL_NAMES, SignalParams
from lib.research.signals import (
    compute_base_signals,
    compute_signal_panel,
    realized_volatility,
    rolling_zscore,
    scale_by_rolling_rms,
)
from tests.helpers import HOUR_MS, SMALL, synthetic_candles


def test_rms_scaling_keeps_sign_and_zero_exactly():
    values = pd.Series([1.0, -1.0, 1.0, -1.0, 2.0, 0.0])
    score = scale_by_rolling_rms(values, window_bars=4, min_bars=2, clip=3.0)
    expected = [np.nan, -1.0, 1.0, -1.0, 2.0 / math.sqrt(7.0 / 4.0), 0.0]
    np.testing.assert_allclose(score, expected, rtol=1e-12)


def test_rms_scaling_clips_and_scores_an_all_zero_window_zero():
    score = scale_by_rolling_rms(pd.Series([1.0, 1.0, 1.0, 10.0]), window_bars=4, min_bars=1, clip=1.5)
    np.testing.assert_allclose(score, [1.0, 1.0, 1.0, 1.5])
    zeros = scale_by_rolling_rms(pd.Series([0.0, 0.0, 0.0]), window_bars=2, min_bars=2, clip=3.0)
    np.testing.assert_allclose(zeros, [np.nan, 0.0, 0.0])


def test_rolling_zscore_is_demeaned_and_flat_windows_score_zero():
    score = rolling_zscore(pd.Series([1.0, 2.0, 3.0, 4.0, 4.0, 4.0]), window_bars=3, min_bars=3, clip=3.0)
    np.testing.assert_allclose(score, [np.nan, np.nan, 1.0, 1.0, math.sqrt(1.0 / 3.0), 0.0])


def test_realized_volatility_is_causal_std_and_spans_missing_rows():
    index = pd.Index(np.arange(6, dtype=np.int64) * HOUR_MS, name="timestamp")
    log_close = np.array([0.0, 0.01, -0.01, 0.02, 0.0, 0.03])
    close = pd.DataFrame({"A/USDT": np.exp(log_close), "B/USDT": np.exp(log_close)}, index=index)
    close.loc[index[3], "B/USDT"] = np.nan  # B misses bar 3: its bar-4 return runs from bar 2
    volatility = realized_volatility(close, window=4)
    returns_a = np.diff(log_close)
    assert volatility["A/USDT"].iloc[:3].isna().all()  # needs ceil(0.75 * 4) = 3 returns
    assert volatility["A/USDT"].iloc[3] == pytest.approx(np.std(returns_a[:3], ddof=1))
    assert volatility["A/USDT"].iloc[5] == pytest.approx(np.std(returns_a[1:5], ddof=1))
    assert np.isnan(volatility["B/USDT"].iloc[3])  # no price, no value
    returns_b = [0.01, -0.02, 0.01, 0.03]  # bars 1, 2, 4 (from bar 2), 5
    assert volatility["B/USDT"].iloc[4] == pytest.approx(np.std(returns_b[:3], ddof=1))
    assert volatility["B/USDT"].iloc[5] == pytest.approx(np.std(returns_b[1:], ddof=1))


def test_realized_volatility_rejects_a_window_below_two():
    with pytest.raises(ConfigError, match="window must be >= 2"):
        realized_volatility(pd.DataFrame({"A/USDT": [1.0, 2.0]}), window=1)


def test_base_signals_have_one_bounded_column_per_signal_on_the_candle_index():
    candles = synthetic_candles(1200, seed=21)
    signals = compute_base_signals(candles, SignalParams())
    assert list(signals.columns) == list(SIGNAL_NAMES)
    assert signals.index.equals(pd.Index(candles["timestamp"], name="timestamp"))
    defined = signals.iloc[300:]
    assert defined.notna().all().all()
    assert (defined.abs() <= SignalParams().score_clip).all().all()
    root_mean_square = np.sqrt((defined**2).mean())
    assert root_mean_square.between(0.8, 1.25).all(), root_mean_square  # comparable unit scale


def _trending(drift: float, seed: int) -> pd.DataFrame:
    return synthetic_candles(500, seed=seed, drift=drift, vol=0.01)


def test_signal_directions_match_their_definitions():
    up = compute_base_signals(_trending(0.004, seed=31), SMALL).iloc[-150:].mean()
    down = compute_base_signals(_trending(-0.004, seed=31), SMALL).iloc[-150:].mean()
    assert up["trend"] > 0.5 > -0.5 > down["trend"]
    assert up["momentum"] > 0.5 > -0.5 > down["momentum"]
    assert up["mean_reversion"] < 0 < down["mean_reversion"]  # overbought scores low


def test_volatility_scores_low_when_volatility_rises():
    calm, wild = synthetic_candles(400, seed=41, vol=0.005), synthetic_candles(100, seed=42, vol=0.03)
    wild = wild.assign(
        timestamp=wild["timestamp"] + 400 * HOUR_MS,
        **{
            col: wild[col] * calm["close"].iloc[-1] / wild["open"].iloc[0]
            for col in ("open", "high", "low", "close")
        },
    )
    signals = compute_base_signals(pd.concat([calm, wild], ignore_index=True), SMALL)
    assert signals["volatility"].iloc[410:440].mean() < -1.0
    assert signals["volatility"].iloc[300:400].abs().mean() < 1.5


def test_volume_scores_high_when_volume_comes_on_up_bars():
    candles = synthetic_candles(400, seed=51)
    up_bar = candles["close"].diff() > 0
    heavy_up = candles.assign(volume=np.where(up_bar & (candles.index >= 300), 50.0, 1.0))
    signals = compute_base_signals(heavy_up, SMALL)
    assert signals["volume"].iloc[320:].mean() > 1.0


@pytest.mark.parametrize("price_factor", [1024.0, 1.0 / 64.0, 37.5])
def test_signals_are_invariant_to_price_scale(price_factor):
    candles = synthetic_candles(400, seed=61)
    scaled = candles.assign(**{col: candles[col] * price_factor for col in ("open", "high", "low", "close")})
    pd.testing.assert_frame_equal(
        compute_base_signals(candles, SMALL), compute_base_signals(scaled, SMALL), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("volume_factor", [1000.0, 0.001])
def test_signals_are_invariant_to_volume_scale(volume_factor):
    """OBV scales with volume, but the flow share (and so every signal) does not."""
    candles = synthetic_candles(400, seed=62)
    scaled = candles.assign(volume=candles["volume"] * volume_factor)
    pd.testing.assert_frame_equal(
        compute_base_signals(candles, SMALL), compute_base_signals(scaled, SMALL), rtol=1e-9, atol=1e-9
    )


def test_short_history_raises_when_strict_and_is_nan_otherwise():
    params = replace(SMALL, roc_lengths=(3, 60), norm_min_bars=2)
    candles = synthetic_candles(40, seed=71)  # enough for every indicator but roc 60
    with pytest.raises(IndicatorError, match="roc"):
        compute_base_signals(candles, params)
    signals = compute_base_signals(candles, params, strict=False)
    assert signals["momentum"].isna().all()
    assert signals.drop(columns="momentum").iloc[-1].notna().all()


def test_panel_is_per_asset_signals_on_the_union_index():
    btc = synthetic_candles(300, seed=81)
    eth = synthetic_candles(200, seed=82, start_bar=150)
    tiny = synthetic_candles(12, seed=83, start_bar=290)
    panel = compute_signal_panel({"BTC/USDT": btc, "ETH/USDT": eth, "NEW/USDT": tiny}, SMALL)
    assert set(panel) == set(SIGNAL_NAMES)
    union = pd.Index(np.arange(350, dtype=np.int64) * HOUR_MS, name="timestamp")
    for name, wide in panel.items():
        assert wide.index.equals(union) and list(wide.columns) == ["BTC/USDT", "ETH/USDT", "NEW/USDT"]
        eth_alone = compute_base_signals(eth, SMALL)[name]
        pd.testing.assert_series_equal(wide["ETH/USDT"].loc[eth_alone.index], eth_alone, check_names=False)
        assert wide["ETH/USDT"].iloc[:150].isna().all() and wide["BTC/USDT"].iloc[300:].isna().all()
        assert wide["NEW/USDT"].isna().all()  # too little history: NaN, and the panel still builds


def test_panel_of_nothing_is_a_data_error():
    with pytest.raises(DataError, match="at least one symbol"):
        compute_signal_panel({}, SignalParams())


BAD_PARAMS = [
    ({"ema_fast_length": 50, "ema_slow_length": 50}, "signals.ema_fast_length must be < ema_slow_length"),
    ({"ema_fast_length": 1}, "signals.ema_fast_length must be >= 2"),
    ({"adx_length": 0}, "signals.adx_length must be >= 1"),
    ({"roc_lengths": ()}, "signals.roc_lengths"),
    ({"roc_lengths": (10, 10)}, "signals.roc_lengths"),
    ({"roc_lengths": (0, 10)}, "signals.roc_lengths"),
    ({"bbands_std": 0.0}, "signals.bbands_std must be > 0"),
    ({"supertrend_multiplier": -1.0}, "signals.supertrend_multiplier must be > 0"),
    ({"norm_min_bars": 1}, "signals.norm_min_bars"),
    ({"norm_window_bars": 50, "norm_min_bars": 60}, "signals.norm_min_bars"),
    ({"score_clip": 0.0}, "signals.score_clip must be > 0"),
    ({"realized_vol_length": 1}, "signals.realized_vol_length must be >= 2"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_PARAMS)
def test_bad_signal_params_raise_config_error_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        SignalParams(**overrides)

"""lib.research.indicators: exact values on tiny frames, warm-up and error handling, the registry contract."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import DataError, IndicatorError
from lib.research import indicators
from lib.research.indicators import (
    INDICATORS,
    compute_adx,
    compute_atr,
    compute_bbands,
    compute_ema_cross,
    compute_obv,
    compute_realized_vol,
    compute_roc,
    compute_rsi,
    compute_supertrend,
    to_candle_frame,
    wilder_adx,
)
from lib.research.signal_params import SignalParams
from tests.helpers import synthetic_candles

DAY_MS = 86_400_000


def candles_from_close(close, *, spread=0.0, volume=None) -> pd.DataFrame:
    """Candles whose open is the previous close, high/low = max/min(open, close) +/- spread."""
    close = np.asarray(close, dtype="float64")
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {
            "timestamp": np.arange(len(close), dtype=np.int64) * DAY_MS,
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": np.ones(len(close)) if volume is None else np.asarray(volume, dtype="float64"),
        }
    )


def test_ema_cross_is_sma_seeded_and_exact_on_a_ramp():
    result = compute_ema_cross(candles_from_close(np.arange(1.0, 11.0)), fast_length=2, slow_length=3)
    # EMA(3) seeds with mean(1, 2, 3) = 2 and then lags a unit ramp by 1; EMA(2) lags it by 0.5.
    np.testing.assert_allclose(result["ema_slow"].iloc[2:], np.arange(2.0, 10.0), rtol=1e-12)
    np.testing.assert_allclose(result["ema_fast"].iloc[2:], np.arange(2.5, 10.5), rtol=1e-12)
    assert result.iloc[:2].isna().all().all()
    assert list(result.index) == [i * DAY_MS for i in range(10)]


def test_roc_is_a_fraction_per_horizon_with_common_warmup():
    result = compute_roc(candles_from_close([100.0, 110.0, 121.0, 121.0, 60.5]), lengths=(1, 2))
    expected = pd.DataFrame(
        {"roc_1_frac": [np.nan, np.nan, 0.1, 0.0, -0.5], "roc_2_frac": [np.nan, np.nan, 0.21, 0.1, -0.5]},
        index=result.index,
    )
    pd.testing.assert_frame_equal(result, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("close", "expected"), [(np.arange(1.0, 21.0), 100.0), (np.arange(20.0, 0.0, -1.0), 0.0)]
)
def test_rsi_saturates_on_monotonic_prices_after_warmup(close, expected):
    rsi = compute_rsi(candles_from_close(close), length=5)["rsi"]
    assert rsi.iloc[:5].isna().all()
    np.testing.assert_allclose(rsi.iloc[5:], expected)


def test_bbands_percent_b_uses_population_std():
    result = compute_bbands(candles_from_close([1.0, 2.0, 3.0]), length=3, std=2.0).iloc[-1]
    std = math.sqrt(2.0 / 3.0)
    assert result["bb_mid"] == pytest.approx(2.0)
    assert result["bb_upper"] == pytest.approx(2.0 + 2.0 * std)
    assert result["bb_lower"] == pytest.approx(2.0 - 2.0 * std)
    assert result["bb_percent"] == pytest.approx(0.5 + 1.0 / (4.0 * std))
    assert result["bb_bandwidth"] == pytest.approx(100.0 * 4.0 * std / 2.0)


def test_atr_of_constant_range_is_that_range():
    candles = candles_from_close(np.full(12, 10.0), spread=1.0)
    result = compute_atr(candles, length=5)
    assert result.iloc[:5].isna().all().all()
    np.testing.assert_allclose(result["atr"].iloc[5:], 2.0)
    np.testing.assert_allclose(result["natr_frac"].iloc[5:], 0.2)


def test_realized_vol_is_sample_std_of_log_returns():
    log_returns = [0.01, -0.01, 0.02, -0.03, 0.01]
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))
    result = compute_realized_vol(candles_from_close(close), length=3)["realized_vol_frac"]
    expected = [np.std(log_returns[i - 3 : i], ddof=1) for i in (3, 4, 5)]
    assert result.iloc[:3].isna().all()
    np.testing.assert_allclose(result.iloc[3:], expected, rtol=1e-10)


def test_obv_flow_is_net_signed_volume_share():
    candles = candles_from_close([1.0, 2.0, 1.0, 1.0, 3.0, 4.0], volume=[10, 20, 30, 40, 50, 60])
    result = compute_obv(candles, flow_length=2)
    # signed volume: +20, -30, 0 (unchanged close), +50, +60
    np.testing.assert_allclose(result["obv_flow_frac"].iloc[3:], [-30 / 70, 50 / 90, 110 / 110])
    np.testing.assert_allclose(result["obv"].iloc[3:], [-10.0, 40.0, 100.0])
    assert result.iloc[:3].isna().all().all()


def test_adx_and_supertrend_follow_a_steady_uptrend():
    candles = candles_from_close(np.linspace(100.0, 160.0, 60), spread=0.5)
    adx = compute_adx(candles, length=5)
    assert adx.iloc[:10].isna().all().all() and adx.iloc[10:].notna().all().all()
    assert (adx["dmp"].iloc[10:] > adx["dmn"].iloc[10:]).all()
    assert adx["adx"].iloc[-1] > 50.0
    supertrend = compute_supertrend(candles, length=5, multiplier=2.0)
    assert supertrend.iloc[:5].isna().all().all()
    assert (supertrend["supertrend_direction"].iloc[5:] == 1.0).all()
    assert (supertrend["supertrend"].iloc[5:] < candles["close"].iloc[5:].to_numpy()).all()


def test_supertrend_direction_flips_on_a_crash():
    close = np.concatenate([np.linspace(100.0, 120.0, 30), np.linspace(119.0, 60.0, 30)])
    direction = compute_supertrend(candles_from_close(close, spread=0.5), length=5)["supertrend_direction"]
    assert direction.iloc[29] == 1.0 and direction.iloc[-1] == -1.0


def test_registry_outputs_are_float_frames_on_the_candle_index_with_our_names():
    candles = synthetic_candles(300, seed=7)
    for name, indicator in INDICATORS.items():
        result = indicator(candles)
        assert result.index.equals(pd.Index(candles["timestamp"], name="timestamp")), name
        assert all(dtype == np.float64 for dtype in result.dtypes), name
        assert all(column == column.lower() for column in result.columns), name  # no pandas-ta names
        assert result.iloc[-1].notna().all(), name
        assert np.isfinite(result.to_numpy()[~np.isnan(result.to_numpy())]).all(), name


def test_default_lengths_come_from_signal_params():
    candles = synthetic_candles(300, seed=8)
    defaults = SignalParams()
    pd.testing.assert_frame_equal(compute_rsi(candles), compute_rsi(candles, length=defaults.rsi_length))
    assert list(compute_roc(candles).columns) == [f"roc_{n}_frac" for n in defaults.roc_lengths]


def test_timestamp_index_and_timestamp_column_are_equivalent():
    candles = synthetic_candles(200, seed=9)
    pd.testing.assert_frame_equal(compute_adx(candles), compute_adx(candles.set_index("timestamp")))


def test_input_candles_are_not_modified():
    candles = synthetic_candles(200, seed=10)
    before = candles.copy()
    for indicator in INDICATORS.values():
        indicator(candles)
    pd.testing.assert_frame_equal(candles, before)


SHORT_INPUTS = [
    (compute_ema_cross, {"fast_length": 3, "slow_length": 10}, 9, "ema (length=10) needs >= 10 bars, got 9"),
    (compute_adx, {"length": 5}, 10, "adx (length=5) needs >= 11 bars, got 10"),
    (compute_supertrend, {"length": 7}, 7, "supertrend (length=7) needs >= 8 bars, got 7"),
    (compute_roc, {"lengths": (2, 30)}, 30, "roc (length=30) needs >= 31 bars, got 30"),
    (compute_rsi, {"length": 14}, 14, "rsi (length=14) needs >= 15 bars, got 14"),
    (compute_bbands, {"length": 20}, 19, "bbands (length=20) needs >= 20 bars, got 19"),
    (compute_atr, {"length": 14}, 14, "atr (length=14) needs >= 15 bars, got 14"),
    (compute_realized_vol, {"length": 20}, 20, "realized_vol (length=20) needs >= 21 bars, got 20"),
    (compute_obv, {"flow_length": 20}, 21, "obv (length=20) needs >= 22 bars, got 21"),
]


@pytest.mark.parametrize(("indicator", "kwargs", "rows", "message"), SHORT_INPUTS)
def test_short_history_raises_indicator_error_naming_length_and_rows(indicator, kwargs, rows, message):
    candles = synthetic_candles(60, seed=11).iloc[:rows]
    with pytest.raises(IndicatorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        indicator(candles, **kwargs)
    indicator(synthetic_candles(60, seed=11).iloc[: rows + 1], **kwargs)  # one more bar is enough


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_empty_candles_raise_indicator_error(name):
    with pytest.raises(IndicatorError, match="got 0"):
        INDICATORS[name](synthetic_candles(5, seed=13).iloc[:0])


def test_a_none_from_pandas_ta_becomes_indicator_error():
    with pytest.raises(IndicatorError, match=r"pandas-ta rsi \(length=14\) returned no result for 3 bars"):
        indicators._checked("rsi", None, length=14, rows=3)


def _broken(change):
    candles = synthetic_candles(10, seed=12)
    return change(candles.copy())


BAD_CANDLES = [
    ("missing column", lambda c: c.drop(columns=["volume"]), "lack columns"),
    ("duplicate timestamp", lambda c: pd.concat([c, c.iloc[[-1]]]), "unique and increasing"),
    ("unsorted", lambda c: c.iloc[::-1], "unique and increasing"),
    ("zero price", lambda c: c.assign(low=c["low"].where(c.index != 3, 0.0)), "finite and > 0"),
    ("nan close", lambda c: c.assign(close=c["close"].where(c.index != 5)), "finite and > 0"),
    ("negative volume", lambda c: c.assign(volume=-c["volume"]), "volume must be finite and >= 0"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_CANDLES, ids=[row[0] for row in BAD_CANDLES])
def test_malformed_candles_raise_data_error(case, change, message):
    with pytest.raises(DataError, match=message):
        to_candle_frame(_broken(change))


@pytest.mark.realdata
@pytest.mark.parametrize("timeframe", ["1d", "1h"])
def test_wilder_adx_is_bit_identical_to_pandas_ta_adx_on_real_candles(shared_data_dir, timeframe):
    """The vectorized zero rule must not change a single bit of pandas-ta's ADX (every coin, NaNs included)."""
    import pandas_ta as ta

    paths = sorted((shared_data_dir / "market" / timeframe).glob("*.parquet"))
    for path in paths if timeframe == "1d" else paths[:4]:
        frame = pd.read_parquet(path).set_index("timestamp").astype("float64")
        for length in (5, 14):
            expected = ta.adx(frame["high"], frame["low"], frame["close"], length=length, talib=False, tvmode=False)
            ours = wilder_adx(frame["high"], frame["low"], frame["close"], length=length)
            assert ours is not None
            for key, prefix in (("adx", "ADX_"), ("dmp", "DMP_"), ("dmn", "DMN_")):
                column = next(c for c in expected.columns if c.startswith(prefix))
                want, got = expected[column].to_numpy(), ours[key].to_numpy()
                assert np.array_equal(want, got, equal_nan=True), (path.name, length, key)
                assert np.array_equal(np.signbit(want), np.signbit(got)), (path.name, length, key)

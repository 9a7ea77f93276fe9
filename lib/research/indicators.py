"""Pure: causal base indicators on one asset's candles; the only module that imports pandas-ta.

Wraps the pandas-ta 0.4 API so its quirks cannot leak: keywords everywhere, ``talib=False`` wherever
the function takes it (results never depend on whether TA-Lib is installed), a ``None`` result becomes
``IndicatorError``, and output columns get stable names of our own (pandas-ta renames them between
versions, e.g. ``BBP_20_2.0`` -> ``BBP_20_2.0_2.0``).

Every indicator here is causal: the value at bar t uses bars <= t only. Nothing centered or shifted
backwards (``dpo(centered=True)``, ``adx(tvmode=True)``'s internal ``shift(-length)``, ``offset``) is
allowed. Each function masks its warm-up rows to NaN and refuses input shorter than warm-up + 1 bars,
so a value never depends on how much history follows it, or on pandas-ta's start-up conventions.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import pandas as pd
import pandas_ta as ta

from lib.core.errors import DataError, IndicatorError
from lib.research.signal_params import SignalParams

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
"""Candle value columns (besides the ``timestamp`` open time, int64 ms UTC)."""

_DEFAULTS = SignalParams()  # frozen: the single source of the default lengths below


def to_candle_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """One asset's candles -> float64 ``OHLCV_COLUMNS`` indexed by ``timestamp`` (candle open time).

    Accepts the file schema (a ``timestamp`` column) or a frame already indexed by timestamp.

    Raises:
        DataError: missing columns, unsorted or duplicate timestamps, non-finite or non-positive
            prices, negative or non-finite volume.
    """
    frame = candles.set_index("timestamp") if "timestamp" in candles.columns else candles
    missing = [column for column in OHLCV_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"candles lack columns {missing}; expected timestamp + {list(OHLCV_COLUMNS)}")
    if not (frame.index.is_unique and frame.index.is_monotonic_increasing):
        raise DataError("candle timestamps must be unique and increasing; clean them with lib.data.ohlcv first")
    values = frame.loc[:, list(OHLCV_COLUMNS)].astype("float64")
    values.index.name = "timestamp"
    prices = values[["open", "high", "low", "close"]].to_numpy()
    if not (np.isfinite(prices).all() and (prices > 0).all()):
        raise DataError("candle prices must be finite and > 0; validate them with lib.data.ohlcv first")
    volume = values["volume"].to_numpy()
    if not (np.isfinite(volume).all() and (volume >= 0).all()):
        raise DataError("candle volume must be finite and >= 0; validate it with lib.data.ohlcv first")
    return values


def _require_rows(name: str, frame: pd.DataFrame, *, length: int, min_rows: int) -> None:
    if len(frame) < min_rows:
        raise IndicatorError(f"{name} (length={length}) needs >= {min_rows} bars, got {len(frame)}")


def _checked[R: (pd.Series, pd.DataFrame)](name: str, result: R | None, *, length: int, rows: int) -> R:
    """pandas-ta returns None instead of raising (short or all-NaN input): make that loud."""
    if result is None:
        raise IndicatorError(f"pandas-ta {name} (length={length}) returned no result for {rows} bars")
    return result


def _column(result: pd.DataFrame, prefix: str, *, name: str) -> pd.Series:
    """The one pandas-ta output column starting with ``prefix`` (guards against renames)."""
    matches = [column for column in result.columns if str(column).startswith(prefix)]
    if len(matches) != 1:
        raise IndicatorError(f"pandas-ta {name}: expected one column {prefix}*, got {list(result.columns)}")
    return result[matches[0]]


def _finish(frame: pd.DataFrame, columns: Mapping[str, pd.Series], *, warmup_bars: int) -> pd.DataFrame:
    """Assemble float64 output on the candle index with the first ``warmup_bars`` rows NaN."""
    output = pd.DataFrame({key: np.asarray(value, dtype="float64") for key, value in columns.items()})
    output.index = frame.index
    output.iloc[:warmup_bars] = np.nan
    return output


def compute_ema_cross(
    candles: pd.DataFrame,
    *,
    fast_length: int = _DEFAULTS.ema_fast_length,
    slow_length: int = _DEFAULTS.ema_slow_length,
) -> pd.DataFrame:
    """``ema_fast``, ``ema_slow`` (price units); SMA-seeded, defined from bar ``slow_length - 1``."""
    frame = to_candle_frame(candles)
    longest = max(fast_length, slow_length)
    _require_rows("ema", frame, length=longest, min_rows=longest)
    close, rows = frame["close"], len(frame)
    fast = _checked(
        "ema", ta.ema(close, length=fast_length, talib=False, presma=True), length=fast_length, rows=rows
    )
    slow = _checked(
        "ema", ta.ema(close, length=slow_length, talib=False, presma=True), length=slow_length, rows=rows
    )
    return _finish(frame, {"ema_fast": fast, "ema_slow": slow}, warmup_bars=longest - 1)


def compute_adx(candles: pd.DataFrame, *, length: int = _DEFAULTS.adx_length) -> pd.DataFrame:
    """``adx``, ``dmp``, ``dmn`` (0..100); Wilder smoothing twice, so defined from bar ``2 * length``.

    pandas-ta 0.4's ``adx`` (talib=False, tvmode=False) step for step (``wilder_adx``), without its ADXR.
    """
    frame = to_candle_frame(candles)
    _require_rows("adx", frame, length=length, min_rows=2 * length + 1)
    result = _checked("adx", wilder_adx(frame["high"], frame["low"], frame["close"], length=length),
                      length=length, rows=len(frame))
    return _finish(frame, result, warmup_bars=2 * length)


def wilder_adx(high: pd.Series, low: pd.Series, close: pd.Series, *, length: int) -> dict[str, pd.Series] | None:
    """pandas-ta 0.4.71b0's ``ta.adx(high, low, close, length, talib=False, tvmode=False)`` (mamode rma,
    drift 1, scalar 100), the same pandas-ta calls in the same order, except that its ``Series.apply(zero)``
    on the directional moves (one Python call per bar and side: ~1.6 M calls on 25 x 35k bars, a third of
    the signal panel's time) is the same rule vectorized: |x| < float epsilon -> 0. Bit-identical to
    ``ta.adx`` (tests/unit/research/test_indicators.py, on real candles). None where pandas-ta gives None."""
    atr = ta.atr(high=high, low=low, close=close, length=length, prenan=True)
    if atr is None or bool(atr.isna().all()):
        return None
    k = 100 / atr
    up = high - high.shift(1)
    down = low.shift(1) - low
    plus = ((up > down) & (up > 0)) * up
    minus = ((down > up) & (down > 0)) * down
    plus = plus.mask(plus.abs() < sys.float_info.epsilon, 0.0)  # pandas_ta.utils.zero, element-wise there
    minus = minus.mask(minus.abs() < sys.float_info.epsilon, 0.0)
    dmp = k * ta.rma(plus, length=length)
    dmn = k * ta.rma(minus, length=length)
    dx = 100 * (dmp - dmn).abs() / (dmp + dmn)
    return {"adx": ta.rma(dx, length=length), "dmp": dmp, "dmn": dmn}


def compute_supertrend(
    candles: pd.DataFrame,
    *,
    length: int = _DEFAULTS.supertrend_length,
    multiplier: float = _DEFAULTS.supertrend_multiplier,
) -> pd.DataFrame:
    """``supertrend`` (the active band, price units) and ``supertrend_direction`` (+1 up, -1 down).

    pandas-ta computes this in a Python loop (~0.6 s per 35k bars). Its inner ATR does not take a
    ``talib`` flag; TA-Lib is not a dependency of this project, so pandas-ta's own ATR is used.
    """
    frame = to_candle_frame(candles)
    _require_rows("supertrend", frame, length=length, min_rows=length + 1)
    result = _checked(
        "supertrend",
        ta.supertrend(
            frame["high"],
            frame["low"],
            frame["close"],
            length=length,
            atr_length=length,
            multiplier=float(multiplier),
        ),
        length=length,
        rows=len(frame),
    )
    columns = {
        "supertrend": _column(result, "SUPERT_", name="supertrend"),
        "supertrend_direction": _column(result, "SUPERTd_", name="supertrend"),
    }
    return _finish(frame, columns, warmup_bars=length)


def compute_roc(candles: pd.DataFrame, *, lengths: tuple[int, ...] = _DEFAULTS.roc_lengths) -> pd.DataFrame:
    """``roc_<n>_frac`` = close_t / close_{t-n} - 1 for each n in ``lengths`` (a fraction, not %)."""
    frame = to_candle_frame(candles)
    longest = max(lengths)
    _require_rows("roc", frame, length=longest, min_rows=longest + 1)
    columns = {
        f"roc_{n}_frac": _checked(
            "roc", ta.roc(frame["close"], length=n, scalar=1.0, talib=False), length=n, rows=len(frame)
        )
        for n in lengths
    }
    return _finish(frame, columns, warmup_bars=longest)


def compute_rsi(candles: pd.DataFrame, *, length: int = _DEFAULTS.rsi_length) -> pd.DataFrame:
    """``rsi`` (0..100), defined from bar ``length`` (pandas-ta 0.4 would start at bar 1)."""
    frame = to_candle_frame(candles)
    _require_rows("rsi", frame, length=length, min_rows=length + 1)
    rsi = _checked("rsi", ta.rsi(frame["close"], length=length, talib=False), length=length, rows=len(frame))
    return _finish(frame, {"rsi": rsi}, warmup_bars=length)


def compute_bbands(
    candles: pd.DataFrame, *, length: int = _DEFAULTS.bbands_length, std: float = _DEFAULTS.bbands_std
) -> pd.DataFrame:
    """Bollinger bands on an SMA with population std: ``bb_lower/mid/upper`` (price units),
    ``bb_bandwidth`` (% of mid) and ``bb_percent`` (%B: 0 at the lower band, 1 at the upper)."""
    frame = to_candle_frame(candles)
    _require_rows("bbands", frame, length=length, min_rows=length)
    result = _checked(
        "bbands",
        ta.bbands(
            frame["close"],
            length=length,
            lower_std=float(std),
            upper_std=float(std),
            ddof=0,
            mamode="sma",
            talib=False,
        ),
        length=length,
        rows=len(frame),
    )
    prefixes = {
        "bb_lower": "BBL_",
        "bb_mid": "BBM_",
        "bb_upper": "BBU_",
        "bb_bandwidth": "BBB_",
        "bb_percent": "BBP_",
    }
    columns = {key: _column(result, prefix, name="bbands") for key, prefix in prefixes.items()}
    return _finish(frame, columns, warmup_bars=length - 1)


def compute_atr(candles: pd.DataFrame, *, length: int = _DEFAULTS.atr_length) -> pd.DataFrame:
    """``atr`` (Wilder, price units) and ``natr_frac`` = atr / close, defined from bar ``length``."""
    frame = to_candle_frame(candles)
    _require_rows("atr", frame, length=length, min_rows=length + 1)
    atr = _checked(
        "atr",
        ta.atr(frame["high"], frame["low"], frame["close"], length=length, mamode="rma", talib=False),
        length=length,
        rows=len(frame),
    )
    return _finish(frame, {"atr": atr, "natr_frac": atr / frame["close"]}, warmup_bars=length)


def compute_realized_vol(
    candles: pd.DataFrame, *, length: int = _DEFAULTS.realized_vol_length
) -> pd.DataFrame:
    """``realized_vol_frac``: sample std of the last ``length`` log returns (per bar, not annualized)."""
    frame = to_candle_frame(candles)
    _require_rows("realized_vol", frame, length=length, min_rows=length + 1)
    log_return = np.log(frame["close"]).diff()
    volatility = log_return.rolling(length, min_periods=length).std()
    return _finish(frame, {"realized_vol_frac": volatility}, warmup_bars=length)


def compute_obv(candles: pd.DataFrame, *, flow_length: int = _DEFAULTS.obv_flow_length) -> pd.DataFrame:
    """``obv`` (base units, cumulative from the first bar) and ``obv_flow_frac``.

    obv_flow_frac = (OBV_t - OBV_{t-n}) / sum(volume over the last n bars), in [-1, 1]: the net share
    of volume on up bars. Unlike OBV's level it does not depend on where the history starts, and it
    is unchanged by scaling prices or volumes. Defined from bar ``flow_length + 1``.
    """
    frame = to_candle_frame(candles)
    _require_rows("obv", frame, length=flow_length, min_rows=flow_length + 2)
    obv = _checked(
        "obv", ta.obv(frame["close"], frame["volume"], talib=False), length=flow_length, rows=len(frame)
    )
    flow = obv.diff(flow_length) / frame["volume"].rolling(flow_length, min_periods=flow_length).sum()
    return _finish(frame, {"obv": obv, "obv_flow_frac": flow}, warmup_bars=flow_length + 1)


INDICATORS: Mapping[str, Callable[[pd.DataFrame], pd.DataFrame]] = MappingProxyType(
    {
        "ema_cross": compute_ema_cross,
        "adx": compute_adx,
        "supertrend": compute_supertrend,
        "roc": compute_roc,
        "rsi": compute_rsi,
        "bbands": compute_bbands,
        "atr": compute_atr,
        "realized_vol": compute_realized_vol,
        "obv": compute_obv,
    }
)
"""Every base indicator with its default lengths: name -> f(candles) -> frame on the candle index."""

"""Pure: turn one asset's indicators into normalized base signals, and build the wide signal panel.

Five base signals (``SIGNAL_NAMES``), each a score per asset and bar where high = expected to go up:

- ``trend``: log(EMA fast / EMA slow) and the ADX directional spread (+ supertrend direction, optional);
- ``momentum``: log returns over each of ``roc_lengths`` bars;
- ``mean_reversion``: -(RSI - 50) and -(Bollinger %B - 0.5) (oversold scores high);
- ``volatility``: -z(log NATR) and -z(log realized vol) (calm relative to the asset's own past scores high);
- ``volume``: OBV flow = net signed volume / total volume over ``obv_flow_length`` bars.

Every component is normalized causally per asset with trailing statistics of its own past (bars <= t):
directional components are divided by their trailing root-mean-square (a z-score that keeps zero as the
neutral point, so a persistent trend is not averaged away); volatility components, whose level has no
natural zero, get a demeaned trailing z-score. Components of one signal are averaged and rescaled the
same way; every score is clipped to ``[-score_clip, score_clip]``.

The section (``SignalParams``) and the signal names live in ``lib.research.signal_params``, which loads
neither pandas nor pandas-ta.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType, ModuleType

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataError, IndicatorError
from lib.research.signal_params import SIGNAL_NAMES, SignalParams


def _indicators() -> ModuleType:
    """``lib.research.indicators``, imported on first use: it loads pandas-ta and numba (~0.5 s, ~60 MB),
    which a strategy without the ensemble's signals (the trend core book) never needs."""
    from lib.research import indicators

    return indicators


WINDOW_MIN_VALID_FRAC = 0.75
"""A trailing statistic on a wide (union-index) frame needs this share of its window valid: gap rows
(exchange outages, an asset's own missing bars) must not blank a whole window of output."""


def _clip(values: np.ndarray, lower: float, upper: float | None = None) -> np.ndarray:
    """pandas' ``Series.clip`` on an array (each ``Series.where`` costs ~1 ms per call on hourly
    histories): thresholds sorted, NaN and -0.0 kept, a value is replaced only when out of range."""
    keep = np.isnan(values)
    if upper is not None:
        lower, upper = min(lower, upper), max(lower, upper)
    result = np.where(keep | (values >= lower), values, lower)
    if upper is not None:
        result = np.where(keep | (values <= upper), result, upper)
    return result


def scale_by_rolling_rms(values: pd.Series, *, window_bars: int, min_bars: int, clip: float) -> pd.Series:
    """``x_t / sqrt(mean(x^2 over the trailing window))``, clipped to ``[-clip, clip]``.

    A z-score around zero rather than around the trailing mean: the sign of a directional component is
    its meaning, so it is kept. Only bars <= t enter the value at t. A window of zeros scores 0.
    """
    mean_square = (values * values).rolling(window_bars, min_periods=min_bars).mean().to_numpy()
    mean_square = _clip(mean_square, 0.0)
    raw = values.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        score = raw / np.sqrt(mean_square)
    score = np.where((raw == 0.0) & ~np.isnan(mean_square), 0.0, score)
    return pd.Series(_clip(score, -clip, clip), index=values.index, name=values.name)


def rolling_zscore(values: pd.Series, *, window_bars: int, min_bars: int, clip: float) -> pd.Series:
    """``(x_t - trailing mean) / trailing std`` clipped to ``[-clip, clip]``; a flat window scores 0."""
    rolling = values.rolling(window_bars, min_periods=min_bars)
    mean, std = rolling.mean().to_numpy(), rolling.std().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        score = (values.to_numpy() - mean) / std
    score = np.where(std == 0.0, 0.0, score)
    return pd.Series(_clip(score, -clip, clip), index=values.index, name=values.name)


def realized_volatility(close_wide: pd.DataFrame, *, window: int) -> pd.DataFrame:
    """Per-bar standard deviation of log returns over the trailing ``window`` bars (time x symbol).

    A return across an asset's missing rows runs from its last valid close, so a gap costs one
    return, not the window; the value needs ``WINDOW_MIN_VALID_FRAC`` of the window valid and is
    NaN where the asset has no price at t. Not annualized (multiply by sqrt(periods_per_year)).
    """
    if window < 2:
        raise ConfigError(f"realized volatility window must be >= 2 bars, got {window}")
    log_close = np.log(close_wide.where(close_wide > 0))
    log_return = log_close - log_close.ffill().shift(1)
    min_bars = max(2, int(np.ceil(window * WINDOW_MIN_VALID_FRAC)))
    volatility = log_return.rolling(window, min_periods=min_bars).std()
    return volatility.where(close_wide.notna())


def _directional(values: pd.Series, params: SignalParams) -> pd.Series:
    return scale_by_rolling_rms(
        values, window_bars=params.norm_window_bars, min_bars=params.norm_min_bars, clip=params.score_clip
    )


def _combine(components: list[pd.Series], params: SignalParams) -> pd.Series:
    """Average normalized components (NaN unless all are defined) and rescale the average."""
    if len(components) == 1:
        return components[0]
    # pandas' concat(axis=1).mean(axis=1, skipna=False) without its frame: the same (time, component)
    # view of a (component, time) block, so numpy sums the components in the same order.
    stacked = np.stack([component.to_numpy(dtype="float64") for component in components])
    average = pd.Series(stacked.T.sum(axis=1) / len(components), index=components[0].index)
    return _directional(average, params)


def _trend(frame: pd.DataFrame, params: SignalParams) -> pd.Series:
    emas = _indicators().compute_ema_cross(
        frame, fast_length=params.ema_fast_length, slow_length=params.ema_slow_length
    )
    adx = _indicators().compute_adx(frame, length=params.adx_length)
    components = [
        _directional(np.log(emas["ema_fast"] / emas["ema_slow"]), params),
        _directional((adx["dmp"] - adx["dmn"]) / (adx["dmp"] + adx["dmn"]) * adx["adx"] / 100.0, params),
    ]
    if params.trend_use_supertrend:
        supertrend = _indicators().compute_supertrend(
            frame, length=params.supertrend_length, multiplier=params.supertrend_multiplier
        )
        components.append(_directional(supertrend["supertrend_direction"], params))
    return _combine(components, params)


def _momentum(frame: pd.DataFrame, params: SignalParams) -> pd.Series:
    roc = _indicators().compute_roc(frame, lengths=params.roc_lengths)
    return _combine(
        [_directional(np.log1p(roc[f"roc_{n}_frac"]), params) for n in params.roc_lengths], params
    )


def _mean_reversion(frame: pd.DataFrame, params: SignalParams) -> pd.Series:
    rsi = _indicators().compute_rsi(frame, length=params.rsi_length)["rsi"]
    bbands = _indicators().compute_bbands(frame, length=params.bbands_length, std=params.bbands_std)
    components = [_directional(50.0 - rsi, params), _directional(0.5 - bbands["bb_percent"], params)]
    return _combine(components, params)


def _volatility(frame: pd.DataFrame, params: SignalParams) -> pd.Series:
    natr = _indicators().compute_atr(frame, length=params.atr_length)["natr_frac"]
    realized = _indicators().compute_realized_vol(frame, length=params.realized_vol_length)["realized_vol_frac"]
    components = [
        rolling_zscore(
            -np.log(level.where(level > 0)),
            window_bars=params.norm_window_bars,
            min_bars=params.norm_min_bars,
            clip=params.score_clip,
        )
        for level in (natr, realized)
    ]
    return _combine(components, params)


def _volume(frame: pd.DataFrame, params: SignalParams) -> pd.Series:
    flow = _indicators().compute_obv(frame, flow_length=params.obv_flow_length)["obv_flow_frac"]
    return _directional(flow, params)


_BUILDERS: Mapping[str, Callable[[pd.DataFrame, SignalParams], pd.Series]] = MappingProxyType(
    {
        "trend": _trend,
        "momentum": _momentum,
        "mean_reversion": _mean_reversion,
        "volatility": _volatility,
        "volume": _volume,
    }
)


def compute_base_signals(candles: pd.DataFrame, params: SignalParams, *, strict: bool = True) -> pd.DataFrame:
    """One asset's candles -> one column per ``SIGNAL_NAMES`` entry, indexed by candle open time.

    Values at bar t use only bars <= t; each lies in ``[-score_clip, score_clip]`` or is NaN (warm-up).
    With ``strict=False`` a signal whose indicators lack history is all NaN instead of raising.

    Raises:
        IndicatorError: (strict only) an indicator needs more bars than the candles have.
        DataError: malformed candles (see ``lib.research.indicators.to_candle_frame``).
    """
    frame = _indicators().to_candle_frame(candles)
    columns: dict[str, pd.Series] = {}
    for name in SIGNAL_NAMES:
        try:
            columns[name] = _BUILDERS[name](frame, params).astype("float64")
        except IndicatorError:
            if strict:
                raise
            columns[name] = pd.Series(np.nan, index=frame.index, dtype="float64")
    return pd.DataFrame(columns, index=frame.index)


def _candle_index(candles: pd.DataFrame) -> pd.Index:
    """The index ``to_candle_frame`` would give, without its float copy of every column (~26 MB on
    hourly histories that glibc keeps): read ``timestamp`` directly when it is a sorted, unique int64
    column; anything else goes through the full validation (and its DataError)."""
    if "timestamp" in candles.columns:
        timestamps = candles["timestamp"]
        if timestamps.dtype == np.int64:
            index = pd.Index(timestamps.to_numpy(), name="timestamp")
            if index.is_unique and index.is_monotonic_increasing:
                return index
    return _indicators().to_candle_frame(candles).index


def compute_signal_panel(
    candles_by_symbol: Mapping[str, pd.DataFrame], params: SignalParams
) -> dict[str, pd.DataFrame]:
    """Signal name -> wide frame (time x symbol) on the sorted union of all candle timestamps.

    An asset gets NaN where it has no candle, and for a whole signal when it has too little history
    for that signal's indicators (the rest of the panel is unaffected).

    Raises:
        DataError: no symbols, or malformed candles for one of them.
    """
    if not candles_by_symbol:
        raise DataError("signal panel needs candles for at least one symbol, got none")
    # Memory bounds hourly histories: the wide arrays are allocated once, up front, and each symbol's
    # signals are written into them as soon as computed (no per-symbol frames kept, no second copy).
    indexes = [_candle_index(candles) for candles in candles_by_symbol.values()]
    union = indexes[0]
    for index in indexes[1:]:
        union = union.union(index)  # sorted: every candle index is increasing
    union = union.rename("timestamp")
    symbols = list(candles_by_symbol)
    wide = {name: np.full((len(symbols), len(union)), np.nan) for name in SIGNAL_NAMES}  # (symbol, time)
    for column, (candles, index) in enumerate(zip(candles_by_symbol.values(), indexes, strict=True)):
        frame = compute_base_signals(candles, params, strict=False)
        rows = union.get_indexer(index)
        for name in SIGNAL_NAMES:
            wide[name][column, rows] = frame[name].to_numpy(dtype="float64")
        del frame
    # (symbol, time) is the block layout pandas gives a frame built from one Series per symbol.
    return {name: pd.DataFrame(wide[name].T, index=union, columns=symbols) for name in SIGNAL_NAMES}

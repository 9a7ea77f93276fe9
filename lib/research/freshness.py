"""Pure: which candles a live run may use (staleness gate) and a fingerprint of the data a run used.

Split from ``lib.research.strategy`` (which re-exports these names): they are about live inputs, not the
strategy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from lib.core.errors import DataError
from lib.core.timeframes import last_closed_open_ms, timeframe_ms
from lib.data.ohlcv import format_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class FreshCandles:
    """The candles a live run may use at ``now_ms``.

    ``as_of_ms``: open time of the newest closed candle that every fresh symbol has (the bar the
    targets are decided at). ``candles``: every symbol's candles cut at ``as_of_ms`` (symbols left
    with none are dropped); a stale symbol keeps its history, so it is simply not eligible at
    ``as_of_ms`` (weight 0). ``stale``: symbol -> open time of its last closed candle (None =
    none). ``notes`` explain stale symbols and a lagging ``as_of_ms`` for targets.json.
    """

    as_of_ms: int
    candles: dict[str, pd.DataFrame]
    stale: dict[str, int | None]
    notes: tuple[str, ...]


def select_fresh_candles(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    *,
    now_ms: int,
    timeframe: str,
    max_staleness_bars: int,
    benchmark: str,
) -> FreshCandles:
    """Fail closed on stale data. Candles after ``last_closed_open_ms(now_ms, timeframe)`` are
    dropped (the forming candle, or the future of an ``--as-of`` run); a series is fresh when its
    last closed candle opens at most ``max_staleness_bars`` bars before that one.

    Raises:
        DataError: the benchmark is stale or absent, or most symbols are stale.
    """
    step_ms = timeframe_ms(timeframe)
    expected_ms = last_closed_open_ms(now_ms, timeframe)
    oldest_ok_ms = expected_ms - max_staleness_bars * step_ms
    closed = {symbol: frame[frame["timestamp"] <= expected_ms] for symbol, frame in candles_by_symbol.items()}
    last_open_ms = {
        symbol: int(frame["timestamp"].iloc[-1]) if len(frame) else None for symbol, frame in closed.items()
    }
    fresh_last = {
        symbol: last for symbol, last in last_open_ms.items() if last is not None and last >= oldest_ok_ms
    }
    stale = {symbol: last for symbol, last in last_open_ms.items() if symbol not in fresh_last}

    def describe(symbol: str) -> str:
        last = stale[symbol]
        return f"{symbol} last candle {'none' if last is None else format_ms(last)}"

    limit = f"expected {timeframe} candle {format_ms(expected_ms)}, at most {max_staleness_bars} bar(s) older"
    if benchmark not in closed or benchmark in stale:
        found = describe(benchmark) if benchmark in stale else f"{benchmark} not loaded"
        raise DataError(f"stale benchmark: {found} ({limit}); run fetch_prices or check the exchange")
    if 2 * len(stale) > len(closed):
        listed = "; ".join(describe(symbol) for symbol in stale)
        raise DataError(
            f"stale prices: {len(stale)} of {len(closed)} symbols ({listed}) ({limit}); "
            "run fetch_prices or check the exchange"
        )
    as_of_ms = min(fresh_last.values())
    notes = [f"stale, weight 0: {describe(symbol)} ({limit})" for symbol in stale]
    if as_of_ms < expected_ms:
        lagging = [symbol for symbol, last in fresh_last.items() if last == as_of_ms]
        lagging_text = "all fresh symbols" if len(lagging) == len(fresh_last) else ", ".join(lagging)
        notes.append(
            f"as of {format_ms(as_of_ms)}, {(expected_ms - as_of_ms) // step_ms} bar(s) before the last "
            f"closed candle: the newest candle common to all fresh symbols (lagging: {lagging_text})"
        )
    used = {
        symbol: frame[frame["timestamp"] <= as_of_ms].reset_index(drop=True)
        for symbol, frame in closed.items()
    }
    return FreshCandles(
        as_of_ms=as_of_ms,
        candles={symbol: frame for symbol, frame in used.items() if len(frame)},
        stale=stale,
        notes=tuple(notes),
    )


def data_fingerprint(candles_by_symbol: Mapping[str, pd.DataFrame]) -> str:
    """sha256 hex over (symbol, last timestamp, row count, last close) of each series, symbols sorted.

    Deterministic, so a person (or rebalance) can tell which data produced a targets file.
    """
    digest = hashlib.sha256()
    for symbol in sorted(candles_by_symbol):
        candles = candles_by_symbol[symbol]
        if len(candles):
            last_ms, last_close = int(candles["timestamp"].iloc[-1]), repr(float(candles["close"].iloc[-1]))
        else:
            last_ms, last_close = -1, "none"
        digest.update(f"{symbol}|{last_ms}|{len(candles)}|{last_close}\n".encode())
    return digest.hexdigest()

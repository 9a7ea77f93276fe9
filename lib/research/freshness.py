"""Pure: which stored candles a live run may use at ``now_ms`` (staleness gate; late symbols are held,
not traded) and a fingerprint of the data a run used.

Split from ``lib.research.strategy`` (which re-exports these names): they are about live inputs, not the
strategy. Why a separate rule from the backtest: live data arrive per symbol, and one symbol a bar late
must neither move the whole book back to yesterday's signal nor be traded on a bar it does not have.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import pandas as pd

from lib.core.errors import DataError
from lib.core.timeframes import last_closed_open_ms, timeframe_ms
from lib.data.ohlcv import format_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class FreshCandles:
    """The candles a live run may use at ``now_ms``.

    ``as_of_ms``: the bar the targets are decided at: the newest closed candle that a strict majority of
    the fresh symbols have. ``candles``: every symbol's candles cut at ``as_of_ms`` (symbols left with none
    are dropped). ``late``: fresh symbols whose last candle is older than ``as_of_ms`` (symbol -> its open
    time): no signal at ``as_of_ms``, so the book HOLDS them (rebalance does not trade them); a late
    benchmark's regime is carried from its last candle. ``stale``: symbols beyond ``max_staleness_bars``
    (symbol -> last open time, None = none): weight 0, and held too (a dead market cannot be traded on).
    ``notes`` explain both for targets.json.
    """

    as_of_ms: int
    candles: dict[str, pd.DataFrame]
    stale: dict[str, int | None]
    late: dict[str, int]
    notes: tuple[str, ...]


def select_fresh_candles(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    *,
    now_ms: int,
    timeframe: str,
    max_staleness_bars: int,
    benchmark: str,
    cut: Collection[str] = (),
) -> FreshCandles:
    """Fail closed on stale data. Candles after ``last_closed_open_ms(now_ms, timeframe)`` are
    dropped (the forming candle, or the future of an ``--as-of`` run); a series is fresh when its
    last closed candle opens at most ``max_staleness_bars`` bars before that one.

    ``cut``: symbols whose series the caller cut on purpose (before a quarantined price jump; they are held
    for it). Their end is no late data, so it does not vote on ``as_of_ms`` (unless no other fresh symbol is
    left): a jump on most coins must not move the coins that have the bar back to the bar before.

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
        last = last_open_ms.get(symbol)
        why = (", cut before a quarantined price jump: a person decides it (scripts.confirm_jump)" if symbol in cut
               else "")
        return f"{symbol} last candle {'none' if last is None else format_ms(last)}{why}"

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
    voters = [last for symbol, last in fresh_last.items() if symbol not in cut] or list(fresh_last.values())
    newest_first = sorted(voters, reverse=True)
    as_of_ms = newest_first[len(newest_first) // 2]  # reached by a strict majority of the fresh symbols
    late = {symbol: last for symbol, last in fresh_last.items() if last < as_of_ms}
    notes = [f"stale, weight 0: {describe(symbol)} ({limit}); held, not traded" for symbol in stale]
    notes += [f"late, held (not traded this run): {describe(symbol)}, the book is decided at "
              f"{format_ms(as_of_ms)}" + ("; the regime is carried from its last candle" if symbol == benchmark
                                         else "") for symbol in sorted(late)]
    if as_of_ms < expected_ms:
        notes.append(
            f"as of {format_ms(as_of_ms)}, {(expected_ms - as_of_ms) // step_ms} bar(s) before the last "
            "closed candle: the newest candle a majority of the fresh symbols have"
        )
    used = {
        symbol: frame[frame["timestamp"] <= as_of_ms].reset_index(drop=True)
        for symbol, frame in closed.items()
    }
    return FreshCandles(
        as_of_ms=as_of_ms,
        candles={symbol: frame for symbol, frame in used.items() if len(frame)},
        stale=stale,
        late=late,
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

"""Edge: talks to a MarketData venue. Downloads the candles/funding a series is missing: explicit-`since`
paging, forming candle dropped, validation with one re-fetch, gap re-requests. Writes nothing.

The script decides what to do with the result (write it, or keep the stored file when it is bad):
bad data never reaches the disk because `fetch_candle_update` raises DataError instead of returning it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from loguru import logger

from lib.core import storage
from lib.core.errors import DataError
from lib.core.paths import ProjectPaths
from lib.core.timeframes import MS_PER_DAY, last_closed_open_ms, timeframe_ms
from lib.core.venue import MarketData
from lib.data import funding, ohlcv
from lib.data.stored import read_candle_timestamps, stored_candle_span

MAX_PAGES_PER_SERIES = 100_000  # a bound on paging loops, in case a venue keeps returning the same page
CLOSE_GRACE_MS = 30_000  # a candle counts as closed only this long after its close: our clock may run ahead
FUNDING_DUE_MS = 8 * 3_600_000  # Binance settles funding every 8 h: none for longer than that is suspicious
GAP_CONFIRM_MIN_MS = MS_PER_DAY
"""A candle still missing after its re-request becomes a permanent known gap only once its open is this much
(or 3 bars, if longer) before the last closed candle: until then later runs ask for it again."""


def exchange_now_ms(venue: MarketData, now_ms: int) -> int:
    """The run's clock, never ahead of the exchange's own clock by more than CLOSE_GRACE_MS: a local clock that
    runs ahead would otherwise store the forming candle as final. Ahead by more: the exchange's time is used."""
    server_ms = venue.fetch_server_time_ms()
    if server_ms is not None and now_ms - server_ms > CLOSE_GRACE_MS:
        logger.warning("the local clock is {:.0f} s ahead of the exchange's: using the exchange's time "
                       "(fix the host's clock: NTP)", (now_ms - server_ms) / 1000)
        return server_ms
    return now_ms


def candles_up_to_date(candles_path: Path, gaps_path: Path, timeframe: str, *, now_ms: int) -> bool:
    """True when ``fetch_candle_update`` would find nothing to do for this series, decided without the
    exchange and without reading the prices: the stored file's last candle (Parquet footer) is the last
    closed one by ``now_ms`` (less CLOSE_GRACE_MS, as there), and the file has no hole that is not a known gap
    (its row count says whether there is any hole; only then are its timestamps read). False when unsure.

    The local clock is safe here: running ahead only moves the last closed candle later (fetch then).
    """
    span = stored_candle_span(candles_path)
    if span is None or span.last_ms < last_closed_open_ms(now_ms - CLOSE_GRACE_MS, timeframe):
        return False
    if span.rows == (span.last_ms - span.first_ms) // timeframe_ms(timeframe) + 1:
        return True  # unique, on-grid rows (validated when written) filling first..last: no hole
    timestamps = read_candle_timestamps(candles_path)
    known_gaps = storage.read_parquet(gaps_path, columns=ohlcv.KNOWN_GAP_COLUMNS)
    return not ohlcv.find_gaps(timestamps, timeframe, known_gaps=known_gaps)


def due_series(paths: ProjectPaths, symbols: Sequence[str], timeframes: Sequence[str], *,
               now_ms: int) -> set[tuple[str, str]]:
    """(symbol, timeframe) of every series that may have new candles (``candles_up_to_date`` is False)."""
    return {(symbol, timeframe) for symbol in symbols for timeframe in timeframes
            if not candles_up_to_date(paths.ohlcv(timeframe, symbol), paths.known_gaps(timeframe, symbol), timeframe,
                                      now_ms=now_ms)}


def gap_confirm_ms(timeframe: str) -> int:
    return max(GAP_CONFIRM_MIN_MS, 3 * timeframe_ms(timeframe))


@dataclass(frozen=True, slots=True)
class CandleUpdate:
    candles: pd.DataFrame  # merged: stored + new, validated
    new_rows: int
    known_gaps: pd.DataFrame  # merged known gaps (confirmed missing on the exchange)
    new_gaps: list[tuple[int, int]]
    jumps_kept: list[ohlcv.CandleProblem]
    requests: int


def fetch_candle_update(
    venue: MarketData, symbol: str, timeframe: str, *, stored: pd.DataFrame | None, stored_gaps: pd.DataFrame | None,
    backfill_start_ms: int, now_ms: int, limit: int, max_jump_frac: float,
    on_page: Callable[[int], None] = lambda rows: None,
) -> CandleUpdate:
    """Everything new for one series, merged with what is stored.

    Raises:
        DataError: the venue's candles fail validation twice (nothing is returned, so nothing is written).
    """
    now_ms -= CLOSE_GRACE_MS
    since_ms = ohlcv.next_since_ms(stored, timeframe, backfill_start_ms=backfill_start_ms)
    last_closed_ms = last_closed_open_ms(now_ms, timeframe)
    previous_close = float(stored["close"].iloc[-1]) if stored is not None and len(stored) else None
    requests = 0

    def download(start_ms: int, end_ms: int) -> pd.DataFrame:
        nonlocal requests
        frame, count = _download_range(venue, symbol, timeframe, start_ms=start_ms, end_ms=end_ms, limit=limit,
                                       now_ms=now_ms, on_page=on_page)
        requests += count
        return frame

    new = download(since_ms, last_closed_ms)
    problems = ohlcv.validate(new, timeframe, max_jump_frac=max_jump_frac, previous_close=previous_close)
    if problems:
        logger.warning("{} {}: {} problem(s) in new candles ({}); re-fetching once", symbol, timeframe,
                       len(problems), ohlcv.describe_problems(problems))
        new = download(since_ms, last_closed_ms)
        problems = ohlcv.validate(new, timeframe, max_jump_frac=max_jump_frac, previous_close=previous_close)
        fatal = [problem for problem in problems if ohlcv.is_fatal(problem)]
        if fatal:
            raise DataError(f"{symbol} {timeframe}: exchange candles invalid after a re-fetch: "
                            f"{ohlcv.describe_problems(fatal)}")
    jumps_kept = list(problems)
    for jump in jumps_kept:
        logger.warning("{} {}: price jump kept after re-fetch: {}", symbol, timeframe, jump.detail)

    base = stored if stored is not None else ohlcv.empty_frame()
    merged = ohlcv.merge(base, new)
    gaps = ohlcv.find_gaps(merged, timeframe, known_gaps=stored_gaps) if len(merged) else []
    new_gaps: list[tuple[int, int]] = []
    for gap_start, gap_end in gaps:
        refill = download(gap_start, gap_end)
        refill = refill[(refill["timestamp"] >= gap_start) & (refill["timestamp"] <= gap_end)]
        fatal = [p for p in ohlcv.validate(refill, timeframe, max_jump_frac=max_jump_frac) if ohlcv.is_fatal(p)]
        if fatal:
            raise DataError(f"{symbol} {timeframe}: invalid candles while re-requesting a gap: "
                            f"{ohlcv.describe_problems(fatal)}")
        if len(refill):
            logger.warning("{} {}: gap {}..{} re-fetched ({} candles)", symbol, timeframe, gap_start, gap_end,
                           len(refill))
            merged = ohlcv.merge(merged, refill)
        for remaining in ohlcv.find_gaps(merged, timeframe, start_ms=gap_start, end_ms=gap_end,
                                         known_gaps=stored_gaps):
            if remaining[1] > last_closed_ms - gap_confirm_ms(timeframe):  # maybe a transient hole: ask again
                logger.warning("{} {}: exchange has no candles {}..{} yet; the next runs ask again before it "
                               "becomes a known gap", symbol, timeframe, *remaining)
                continue
            logger.warning("{} {}: exchange has no candles {}..{}; recorded as a known gap", symbol, timeframe,
                           *remaining)
            new_gaps.append(remaining)
    known_gaps = ohlcv.merge_gaps(stored_gaps, new_gaps, timeframe=timeframe)
    return CandleUpdate(candles=merged, new_rows=len(merged) - len(base), known_gaps=known_gaps,
                        new_gaps=new_gaps, jumps_kept=jumps_kept, requests=requests)


def _download_range(
    venue: MarketData, symbol: str, timeframe: str, *, start_ms: int, end_ms: int, limit: int, now_ms: int,
    on_page: Callable[[int], None],
) -> tuple[pd.DataFrame, int]:
    """Closed candles with open time in [start_ms, end_ms], paging forward with an explicit since.

    Always makes at least one request (so a no-op run still confirms the venue has nothing new).
    """
    step_ms = timeframe_ms(timeframe)
    pages: list[pd.DataFrame] = []
    cursor, requests, confirmed_empty = start_ms, 0, False
    while requests == 0 or cursor <= end_ms:
        if requests >= MAX_PAGES_PER_SERIES:
            raise DataError(f"{symbol} {timeframe}: paging did not advance after {requests} requests")
        rows = venue.fetch_ohlcv(symbol, timeframe, since_ms=cursor, limit=limit)
        requests += 1
        if not rows and cursor <= end_ms and not confirmed_empty:
            # closed candles are due but the reply holds none (an empty body some venue did not flag?): ask
            # once more before taking it as the end of the data
            logger.warning("{} {}: no candles from {} on although some are due; asking again", symbol,
                           timeframe, cursor)
            confirmed_empty = True
            continue
        page = ohlcv.to_frame(rows)
        page = ohlcv.drop_forming(page[page["timestamp"] >= cursor], timeframe, now_ms=now_ms)
        page = page[page["timestamp"] <= end_ms]
        if page.empty:
            break
        pages.append(page)
        on_page(len(page))
        cursor = int(page["timestamp"].max()) + step_ms
    frame = pd.concat(pages, ignore_index=True) if pages else ohlcv.empty_frame()
    return frame, requests


def fetch_funding_update(
    venue: MarketData, symbol: str, *, stored: pd.DataFrame | None, backfill_start_ms: int, now_ms: int,
    limit: int, max_abs_rate: float,
) -> tuple[pd.DataFrame, int]:
    """Stored funding history plus every settlement since the last stored one; (merged, new rows).

    Raises:
        DataError: the venue's funding rates fail validation (nothing is returned).
    """
    cursor = funding.next_funding_since_ms(stored, backfill_start_ms=backfill_start_ms)
    pages: list[pd.DataFrame] = []
    confirmed_empty = False
    for _ in range(MAX_PAGES_PER_SERIES):
        entries = venue.fetch_funding_history(symbol, since_ms=cursor, limit=limit)
        if not entries and not pages and not confirmed_empty and cursor <= now_ms - FUNDING_DUE_MS:
            logger.warning("{} funding: no settlement from {} on although one is due; asking again", symbol, cursor)
            confirmed_empty = True
            continue
        page = funding.to_funding_frame(entries)
        page = page[(page["timestamp"] >= cursor) & (page["timestamp"] <= now_ms)]
        if page.empty:
            break
        pages.append(page)
        cursor = int(page["timestamp"].max()) + 1
    # paged on the raw stamps (a rounded one can fall before the cursor), stored on the hour
    new = funding.on_the_hour(pd.concat(pages, ignore_index=True) if pages else funding.to_funding_frame([]))
    problems = funding.validate_funding(new, max_abs_rate=max_abs_rate)
    if problems:
        raise DataError(f"{symbol} funding: invalid rates from the exchange: {'; '.join(problems[:5])}")
    base = funding.on_the_hour(stored) if stored is not None else funding.to_funding_frame([])
    merged = funding.merge_funding(base, new)
    return merged, len(merged) - len(base)

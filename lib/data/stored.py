"""Edge: reads stored candle and funding files (lib.core.storage's schema-checked Parquet reader) for the
research scripts, refusing candles that fail validation; and what a candle file spans, from its Parquet
footer alone (fetch_prices' "nothing new" check must not read every full series)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lib.core import storage
from lib.core.errors import DataError
from lib.core.paths import ProjectPaths, venue_dir_name
from lib.core.symbols import from_slug, to_perpetual, to_slug
from lib.data import ohlcv, quarantine
from lib.data.funding import FUNDING_COLUMNS


@dataclass(frozen=True, slots=True)
class StoredSpan:
    """First and last candle open time (ms) and the row count of a stored candle file."""

    first_ms: int
    last_ms: int
    rows: int


def stored_candle_span(path: Path) -> StoredSpan | None:
    """The span of the candle file ``path`` from its Parquet footer (row-group min/max statistics of
    ``timestamp``, written by pyarrow with every file), without reading a candle. None when the file is
    missing or empty, its schema is not the candle schema, or a statistic is absent: the caller then reads
    the file the ordinary way (which also reports a bad file)."""
    try:
        metadata = pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return None
    names = tuple(metadata.schema.names)
    if names != ohlcv.OHLCV_COLUMNS or metadata.num_rows == 0:
        return None
    column = names.index("timestamp")
    if metadata.schema.column(column).physical_type != "INT64":
        return None
    lows, highs = [], []
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(column).statistics
        if statistics is None or not statistics.has_min_max:
            return None
        lows.append(int(statistics.min))
        highs.append(int(statistics.max))
    return StoredSpan(first_ms=min(lows), last_ms=max(highs), rows=int(metadata.num_rows))


def read_candle_timestamps(path: Path) -> pd.DataFrame:
    """Only the ``timestamp`` column of a stored candle file (for a gap check without the prices).

    Raises:
        DataError: the file cannot be read.
    """
    try:
        values = pq.read_table(path, columns=["timestamp"]).column("timestamp").to_numpy()
    except (OSError, pa.ArrowException, KeyError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    return pd.DataFrame({"timestamp": np.asarray(values, dtype="int64")})


def read_valid_candles(path: Path, timeframe: str, *, max_jump_frac: float) -> pd.DataFrame:
    """Raises DataError when the file is missing, empty or holds invalid candles (jumps are only flagged)."""
    candles = storage.read_parquet(path, columns=ohlcv.OHLCV_COLUMNS, dtypes=ohlcv.OHLCV_DTYPES)
    if candles is None or candles.empty:
        raise DataError(f"no candles in {path}; run fetch_prices (or check --data-dir / --symbols)")
    problems = ohlcv.validate(candles, timeframe, max_jump_frac=max_jump_frac)
    if fatal := [problem for problem in problems if ohlcv.is_fatal(problem)]:
        raise DataError(f"{path}: {ohlcv.describe_problems(fatal)}")
    return candles


def read_funding_until(path: Path, end_ms: int | None) -> pd.DataFrame | None:
    """Funding rates settled at or before ``end_ms`` (None: all of them); None when the file does not exist."""
    rates = storage.read_parquet(path, columns=FUNDING_COLUMNS)
    return rates if rates is None or end_ms is None else rates[rates["timestamp"] <= end_ms]


def series_files(
    timeframe: str, *, is_perp: bool, data_dir: Path | None, symbols: Sequence[str] | None,
    configured_symbols: Sequence[str], exchange_id: str, data_root: Path, state_root: Path,
) -> dict[str, tuple[Path, Path]]:  # fmt: skip
    """symbol -> (candle file, funding file) for a research run: ``data_dir`` in the layout of ../shared/data
    (DIR/market/<timeframe>/, DIR/funding/; every file there unless ``symbols``), else the project's own data/.
    Perpetual strategies name their symbols as perpetuals.

    Raises:
        DataError: ``data_dir`` holds no candle file for ``timeframe``.
    """
    if data_dir is not None:
        market = data_dir / "market" / timeframe
        slugs = ([to_slug(symbol) for symbol in symbols] if symbols
                 else sorted(path.stem for path in market.glob("*.parquet") if "." not in path.stem))
        if not slugs:
            raise DataError(f"no candle files in {market}; expected <BASE>-<QUOTE>.parquet files")
        rates = data_dir / "funding"
        return {from_slug(slug, perpetual=is_perp): (market / f"{slug}.parquet", rates / f"{slug}.parquet")
                for slug in slugs}
    paths = ProjectPaths(data_root, state_root, venue_dir_name(exchange_id, "swap" if is_perp else "spot"))
    chosen = [to_perpetual(symbol) if is_perp else symbol for symbol in symbols or configured_symbols]
    return {symbol: (paths.ohlcv(timeframe, symbol), paths.funding(symbol)) for symbol in chosen}


@dataclass(frozen=True, slots=True)
class LiveCandles:
    """One symbol's candles for a live run: validated and quarantined on the whole file, then only the tail
    from ``keep_from_ms`` kept (at least the last candle, so a stale series still says when it stopped).
    ``first_ms``: the file's first candle (None: no file); ``cut_at_ms``: the undecided jump the series was
    cut before (None: not cut); ``notes``: the quarantine's notes (jumps among the last candles: pending or
    recently decided), not every jump in the file's history."""

    candles: pd.DataFrame
    first_ms: int | None
    cut_at_ms: int | None
    notes: tuple[str, ...]


def read_live_candles(path: Path, symbol: str, timeframe: str, *, closed_until_ms: int, keep_from_ms: int,
                      max_jump_frac: float, confirm_bars: int, decided: Mapping[str, set[int]]) -> LiveCandles:
    """The stored candles of ``symbol`` that closed by ``closed_until_ms`` (open time), checked as described
    in ``LiveCandles``. A missing file is no data (the symbol is then stale, not fatal).

    Raises:
        DataError: the file is unreadable, empty or holds invalid candles.
    """
    candles = storage.read_parquet(path, columns=ohlcv.OHLCV_COLUMNS, dtypes=ohlcv.OHLCV_DTYPES)
    if candles is None:
        return LiveCandles(ohlcv.empty_frame(), None, None, (f"{symbol}: no candle file {path.name} (never "
                                                              "fetched): no data",))
    if candles.empty:
        raise DataError(f"{path} holds no candles; delete it and run fetch_prices")
    problems = ohlcv.validate(candles, timeframe, max_jump_frac=max_jump_frac)
    if fatal := [problem for problem in problems if ohlcv.is_fatal(problem)]:
        raise DataError(f"{path}: {ohlcv.describe_problems(fatal)}; delete it and run fetch_prices")
    # what is left are price jumps: the quarantine decides them and notes those this run's decision meets (pending
    # or among the last candles); every jump of the file's history, noted again every run, buried real warnings
    checked = quarantine.apply_quarantine(
        candles[candles["timestamp"] <= closed_until_ms], symbol=symbol, max_jump_frac=max_jump_frac,
        confirm_bars=confirm_bars, confirmed=decided["confirm"], rejected=decided["reject"])
    kept = checked.candles
    first = int(kept["timestamp"].to_numpy().searchsorted(keep_from_ms, side="left"))
    first = min(first, max(len(kept) - 1, 0))
    kept = kept.iloc[first:].reset_index(drop=True) if first else kept
    return LiveCandles(kept, int(candles["timestamp"].iloc[0]), checked.cut_at_ms, checked.notes)

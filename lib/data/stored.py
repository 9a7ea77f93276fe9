"""Edge: reads stored candle and funding files (lib.core.storage's schema-checked Parquet reader) for the
research scripts, refusing candles that fail validation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lib.core import storage
from lib.core.errors import DataError
from lib.data import ohlcv
from lib.data.funding import FUNDING_COLUMNS


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

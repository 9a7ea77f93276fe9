"""Hand-written price and target frames for the backtester's unit tests (one builder for every test file)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.core.timeframes import MS_PER_HOUR


def price_frame(columns: dict[str, list[float]], step_ms: int = MS_PER_HOUR) -> pd.DataFrame:
    """One column per symbol, bars ``step_ms`` apart from epoch 0 (the backtester's int64 ms index)."""
    n_bars = len(next(iter(columns.values())))
    index = pd.Index(np.arange(n_bars, dtype=np.int64) * step_ms, name="timestamp")
    return pd.DataFrame(columns, index=index, dtype=float)


def decision_targets(like: pd.DataFrame, rows: dict[int, dict[str, float]]) -> pd.DataFrame:
    """All-NaN frame (no decision) except the given bar positions (unnamed symbols get weight 0 there)."""
    targets = pd.DataFrame(np.nan, index=like.index, columns=like.columns)
    for position, weights in rows.items():
        targets.iloc[position] = [weights.get(symbol, 0.0) for symbol in like.columns]
    return targets

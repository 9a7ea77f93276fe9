"""Pure: the backtester's input checks and per-bar arrays: target validation, each asset's data end, and
funding settlements per bar (split from lib.research.backtester, which owns the walk)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.research.backtest_params import BacktestParams

WEIGHT_SUM_TOLERANCE = 1e-9  # spot targets may sum to 1 + this (float noise), not more


def last_close_bar(close: np.ndarray) -> np.ndarray:
    """Per column: the position of the last finite close, -1 for a column without any."""
    has_close = np.isfinite(close)
    return np.where(has_close.any(axis=0), len(close) - 1 - np.argmax(has_close[::-1], axis=0), -1)


def check_targets(target: np.ndarray, params: BacktestParams, index: pd.Index) -> None:
    if np.isinf(target).any():
        raise DataError("target_weights contains inf")
    if params.market != "spot":
        return
    if (target < 0).any():
        row = int(np.flatnonzero((target < 0).any(axis=1))[0])
        raise DataError(f"spot target_weights must be >= 0; negative weight at {index[row]}")
    over = np.nansum(target, axis=1) > 1.0 + WEIGHT_SUM_TOLERANCE
    if over.any():
        row = index[int(np.argmax(over))]
        raise DataError(f"spot target_weights must sum to <= 1 (no leverage); row {row}")


def funding_per_unit(
    funding_wide: pd.DataFrame, index: pd.Index, columns: pd.Index, funding_price: np.ndarray
) -> np.ndarray:
    """Quote paid per unit held during each bar: sum of rates settled in the bar x the bar's open.

    Settlements outside [first open, last open + bar length) are ignored; the bar length is the
    smallest step of the index, so a run on truncated data charges the same settlements.
    """
    unknown = funding_wide.columns.difference(columns)
    if len(unknown):
        raise DataError(f"funding_wide has symbols without prices: {list(unknown)}")
    bar_opens = np.asarray(index)
    bar_length = np.diff(bar_opens).min() if len(bar_opens) > 1 else 1
    settled = np.asarray(funding_wide.index)
    bar = np.searchsorted(bar_opens, settled, side="right") - 1
    inside = (bar >= 0) & (settled < bar_opens[np.maximum(bar, 0)] + bar_length)
    rates = np.zeros(funding_price.shape)
    col_pos = columns.get_indexer(funding_wide.columns)
    values = np.nan_to_num(funding_wide.to_numpy(dtype=float))
    for source_col, target_col in enumerate(col_pos):
        np.add.at(rates[:, target_col], bar[inside], values[inside, source_col])
    return rates * funding_price

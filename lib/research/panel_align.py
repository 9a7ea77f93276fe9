"""Pure: a frame read on a panel's rows and columns, label-aligned as pandas aligns, without a copy when the labels
already match (``reindex`` always copies: on 25 coins x 35k hourly bars, 7 MB and its page faults per frame)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def on_panel(frame: pd.DataFrame, like: pd.DataFrame, *, missing: object = np.nan) -> pd.DataFrame:
    """``frame`` reindexed like ``like`` (``missing`` where it has no value); itself when the labels already match."""
    same_index = frame.index.equals(like.index) and frame.index.dtype == like.index.dtype
    same_columns = frame.columns.equals(like.columns) and frame.columns.dtype == like.columns.dtype
    same_names = frame.index.names == like.index.names and frame.columns.names == like.columns.names
    if same_index and same_columns and same_names:
        return frame
    return frame.reindex(index=like.index, columns=like.columns, fill_value=missing)

"""Tiny returns matrices for the protocol tests (a UTC daily index and seeded noise)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def days(count: int, start: str = "2019-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=count, freq="D", tz="UTC")


def noise(rows: int, columns: int, *, seed: int, scale: float = 0.01, mean: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(mean, scale, (rows, columns)), index=days(rows),
                        columns=[f"c{k}" for k in range(columns)])

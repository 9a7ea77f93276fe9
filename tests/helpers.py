"""Test helpers shared by unit tests: deterministic synthetic candles and short-window signal params."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from lib.research.signal_params import SignalParams

HOUR_MS = 3_600_000

SMALL = SignalParams(
    ema_fast_length=5,
    ema_slow_length=20,
    adx_length=7,
    trend_use_supertrend=True,
    supertrend_length=7,
    roc_lengths=(3, 10, 30),
    rsi_length=7,
    bbands_length=10,
    atr_length=7,
    realized_vol_length=10,
    obv_flow_length=10,
    norm_window_bars=80,
    norm_min_bars=15,
)
"""Short windows, so that every signal is defined over most of a few hundred bars."""


def synthetic_candles(bars: int, *, seed: int, start_bar: int = 0, drift: float = 0.0, vol: float = 0.01):
    """Deterministic random-walk hourly candles (file schema: ``timestamp`` column + OHLCV)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(drift, vol, bars)))
    open_ = np.concatenate([[close[0] * np.exp(rng.normal(0.0, vol / 2))], close[:-1]])
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, vol / 2, bars)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, vol / 2, bars)))
    return pd.DataFrame(
        {
            "timestamp": (start_bar + np.arange(bars, dtype=np.int64)) * HOUR_MS,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.lognormal(3.0, 0.6, bars),
        }
    )


SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
"""numpy seeds of random test books: Hypothesis picks them (derandomized, so every run checks the same ones)
and a property counts as one test, not one per seed."""


def random_examples(count: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``count`` Hypothesis examples, no deadline (a book can take a while), no example database."""
    return settings(max_examples=count, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

"""Pure: a paired stationary block bootstrap (Politis & Romano 1994) confidence interval of
Sharpe(strategy) - Sharpe(benchmark).

Paired: every resample draws the SAME days for both series, so their correlation (a crypto strategy and
BTC move together) is kept and the interval is of the difference, not of two independent guesses. Blocks
of geometric length (mean ``mean_block_days``) wrap around the end (circular), keeping volatility
clustering inside blocks. Seeded (numpy's PCG64 via ``default_rng``): the same inputs give the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.research.protocol.frame import ANNUALIZE, sharpe_per_period


@dataclass(frozen=True, slots=True, kw_only=True)
class BootstrapParams:
    resamples: int = 2000
    mean_block_days: float = 20.0
    confidence: float = 0.95
    seed: int = 20221231

    def __post_init__(self) -> None:
        if self.resamples < 100 or self.mean_block_days < 1 or not 0.5 < self.confidence < 1:
            raise ConfigError("bootstrap: resamples >= 100, mean_block_days >= 1, 0.5 < confidence < 1")


def stationary_indices(n_obs: int, params: BootstrapParams) -> np.ndarray:
    """(resamples x n_obs) row numbers: each row a stationary-bootstrap resample of range(n_obs)."""
    rng = np.random.default_rng(params.seed)
    restart = rng.random((params.resamples, n_obs)) < 1.0 / params.mean_block_days
    starts = rng.integers(0, n_obs, size=(params.resamples, n_obs))
    indices = np.empty((params.resamples, n_obs), dtype=np.int64)
    indices[:, 0] = starts[:, 0]
    for day in range(1, n_obs):
        indices[:, day] = np.where(restart[:, day], starts[:, day], (indices[:, day - 1] + 1) % n_obs)
    return indices


def sharpe_difference_interval(strategy: pd.Series, benchmark: pd.Series, params: BootstrapParams) -> dict[str, float]:
    """Annualized Sharpe(strategy) - Sharpe(benchmark): the point estimate, the percentile interval at
    ``params.confidence`` and the share of resamples in which the strategy's Sharpe is not higher.

    Raises:
        DataError: the two series are not on the same index or are shorter than 2 * mean_block_days.
    """
    if not strategy.index.equals(benchmark.index):
        raise DataError("bootstrap: strategy and benchmark returns must share one index (paired days)")
    if len(strategy) < 2 * params.mean_block_days:
        raise DataError(f"bootstrap: {len(strategy)} days are too few for {params.mean_block_days}-day blocks")
    both = np.column_stack([strategy.to_numpy(dtype=float), benchmark.to_numpy(dtype=float)])
    indices = stationary_indices(len(both), params)
    samples = both[indices]  # resamples x days x 2
    sharpe = sharpe_per_period(samples, axis=1) * ANNUALIZE  # resamples x 2
    difference = sharpe[:, 0] - sharpe[:, 1]
    difference = difference[np.isfinite(difference)]
    tail = (1.0 - params.confidence) / 2.0
    low, high = np.quantile(difference, [tail, 1.0 - tail]) if len(difference) else (np.nan, np.nan)
    point = float(sharpe_per_period(both, axis=0)[0] - sharpe_per_period(both, axis=0)[1]) * ANNUALIZE
    return {
        "difference": point, "low": float(low), "high": float(high), "confidence": params.confidence,
        "share_not_better": float((difference <= 0).mean()) if len(difference) else float("nan"),
        "resamples": float(len(difference)),
        "mean_block_days": params.mean_block_days, "seed": float(params.seed),
    }  # fmt: skip

"""Pure: cross-sectional alt sleeves (momentum and short-term reversal) from a wide close panel to weights.

Input: closes indexed by bar (time x symbol, NaN where a coin has no candle). Output: long-only target
weights decided at the close of bar t from closes up to t (the backtester trades them at t+1); each
picked coin gets ``1 / n`` so the sleeve's gross exposure is at most 1 and is less when fewer than
``n`` coins qualify (the rest is cash). Only coins with a close at t and a full lookback are ranked.
Ties are broken by column order, so the result is deterministic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError


def past_return(close_wide: pd.DataFrame, *, lookback: int, skip: int = 0) -> pd.DataFrame:
    """``close[t - skip] / close[t - skip - lookback] - 1``; NaN where either close or the close at t is missing."""
    if lookback < 1 or skip < 0:
        raise ConfigError(f"need lookback >= 1 and skip >= 0, got {lookback}, {skip}")
    values = close_wide.astype(float).where(close_wide > 0)
    score = values.shift(skip) / values.shift(skip + lookback) - 1.0
    return score.where(values.notna())


def top_n_weights(score: pd.DataFrame, *, n: int, highest: bool = True, min_score: float | None = None) -> pd.DataFrame:
    """``1 / n`` on the ``n`` best-scored coins of each row (highest or lowest), 0 elsewhere.

    ``min_score`` (for ``highest``) drops coins whose score is not above it, e.g. 0 for "only coins
    that went up": an absolute filter on top of the relative rank.
    """
    if n < 1:
        raise ConfigError(f"top-n needs n >= 1, got {n}")
    values = score.to_numpy(dtype=float)
    signed = values if highest else -values
    eligible = ~np.isnan(values)
    if min_score is not None:
        eligible &= values > min_score if highest else values < min_score
    keyed = np.where(eligible, signed, -np.inf)
    order = np.argsort(-keyed, axis=1, kind="stable")  # stable: ties keep column order
    picks = order[:, :n]
    weights = np.zeros_like(values)
    rows = np.arange(len(values))[:, None]
    chosen = np.take_along_axis(eligible, picks, axis=1)
    weights[rows, picks] = np.where(chosen, 1.0 / n, 0.0)
    return pd.DataFrame(weights, index=score.index, columns=score.columns)


def momentum_weights(
    close_wide: pd.DataFrame, *, lookback: int = 30, skip: int = 3, top_n: int = 5, min_score: float | None = 0.0
) -> pd.DataFrame:
    """Cross-sectional momentum: long the ``top_n`` coins by return over ``lookback`` bars ending
    ``skip`` bars ago (skipping the most recent bars, where short-term reversal lives); by default only
    coins whose past return is positive."""
    score = past_return(close_wide, lookback=lookback, skip=skip)
    return top_n_weights(score, n=top_n, highest=True, min_score=min_score)


def reversal_weights(close_wide: pd.DataFrame, *, lookback: int = 3, bottom_n: int = 5) -> pd.DataFrame:
    """Short-term mean reversion: long the ``bottom_n`` coins with the lowest return over the last
    ``lookback`` bars."""
    score = past_return(close_wide, lookback=lookback, skip=0)
    return top_n_weights(score, n=bottom_n, highest=False)


def hold_between_rebalances(weights: pd.DataFrame, *, every: int) -> pd.DataFrame:
    """Keep each row's weights for ``every`` bars (rebalance on bars 0, every, 2*every, ... of the
    index), to cut the turnover of a daily re-rank; a coin whose close disappears is the
    caller's/backtester's problem (its weight stays until the next rebalance)."""
    if every < 1:
        raise ConfigError(f"rebalance interval must be >= 1 bar, got {every}")
    keep = np.arange(len(weights)) % every == 0
    return weights.where(pd.Series(keep, index=weights.index), np.nan).ffill()

"""Pure: the per-bar risk model of the sleeves: a shrunk covariance, correlation clusters, effective bets.

Why shrinkage: a 25-asset sample covariance from ~90 daily returns is noisy enough to make risk parity
chase estimation error; Ledoit-Wolf pulls it toward a scaled identity by the optimal amount. Why
clusters: twenty alts that move as one are one bet, not twenty; assets whose correlation is high are
grouped (average linkage) so a risk budget can be split per cluster first.

Both are small numpy re-implementations of kept ones, because compute_signals is a cron script: importing
sklearn and scipy.cluster costs ~1.5 s and ~160 MB at each cold start. Unit tests pin them to
``sklearn.covariance.ledoit_wolf`` and ``scipy.cluster.hierarchy`` (average linkage + fcluster distance).

Causal: the model at bar t uses the log returns of the ``window_bars`` bars ending at t only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_VALID_FRAC = 0.9  # an asset enters the risk model once this share of its window has returns


@dataclass(frozen=True, slots=True)
class RowRisk:
    """Risk model at one bar for the assets ``members`` (column positions in the panel).

    ``covariance`` is annualized (members x members); ``clusters`` labels 1..K per member.
    """

    members: np.ndarray
    covariance: np.ndarray
    clusters: np.ndarray

    @property
    def volatility(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))


def log_returns(close_wide: pd.DataFrame) -> np.ndarray:
    """Bar log returns (time x symbol, C-ordered for the compiled book); across a missing bar from the last valid
    close; NaN before. The same operations as pandas' ``log - log.ffill().shift(1)`` (equal bit for bit,
    tests/unit/research/sleeves/test_risk.py), in numpy: ~5x faster on hourly panels and no Fortran-ordered copy."""
    close = close_wide.to_numpy(dtype=float)
    log_close = np.full(close.shape, np.nan)
    np.log(close, out=log_close, where=close > 0)
    rows = np.arange(close.shape[0])[:, None]
    last_valid = np.maximum.accumulate(np.where(np.isnan(log_close), 0, rows), axis=0)
    returns = np.full(close.shape, np.nan)
    returns[1:] = log_close[1:] - np.take_along_axis(log_close, last_valid, axis=0)[:-1]
    return returns


def row_risk(
    returns: np.ndarray,
    row: int,
    candidates: np.ndarray,
    *,
    window_bars: int,
    cluster_correlation: float,
    periods_per_year: float,
    compiled: bool = False,
) -> RowRisk | None:
    """The risk model at ``row`` over the ``candidates`` (column positions) with enough returns in the
    window; None when fewer than one qualifies. Missing returns count as 0 (no move). ``compiled``: the whole
    model (membership, Ledoit-Wolf, clusters) runs in one call of lib.research.sleeves.risk_kernel (the same
    operations in the same order: the same covariance and labels)."""
    if compiled:
        from lib.research.sleeves import risk_kernel  # numba loads on first use

        cut = math.sqrt((1.0 - cluster_correlation) / 2.0)
        members, covariance, labels = risk_kernel.risk_model(returns, row, candidates.astype(np.int64), window_bars,
                                                             cut, float(periods_per_year))
        return RowRisk(members=members, covariance=covariance, clusters=labels) if members.size else None
    start = row - window_bars + 1
    if start < 0 or candidates.size == 0:
        return None
    window = returns[start : row + 1][:, candidates]
    valid = np.isfinite(window)
    members_mask = valid.mean(axis=0) >= MIN_VALID_FRAC
    if not members_mask.any():
        return None
    sample = np.where(valid[:, members_mask], window[:, members_mask], 0.0)
    covariance = ledoit_wolf_covariance(sample) * periods_per_year
    members = candidates[members_mask]
    clusters = correlation_clusters(covariance, cluster_correlation, compiled=compiled)
    return RowRisk(members=members, covariance=covariance, clusters=clusters)


def ledoit_wolf_covariance(sample: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance of ``sample`` (observations x assets, demeaned here), as
    ``sklearn.covariance.ledoit_wolf`` computes it: (1 - delta) S + delta mu I, S the biased sample
    covariance, mu = trace(S) / p, delta the estimated optimal shrinkage."""
    centered = sample - sample.mean(axis=0)
    n, p = centered.shape
    if p == 1:
        return np.atleast_2d(np.mean(centered**2))
    squared = centered**2
    trace_terms = squared.sum(axis=0) / n
    mu = trace_terms.sum() / p
    delta_raw = float(np.sum((centered.T @ centered) ** 2)) / n**2
    beta = (float(np.sum(squared.T @ squared)) / n - delta_raw) / (p * n)
    delta = (delta_raw - 2.0 * mu * trace_terms.sum() + p * mu**2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * (centered.T @ centered / n)
    shrunk.flat[:: p + 1] += shrinkage * mu
    return shrunk


def correlation_clusters(covariance: np.ndarray, cluster_correlation: float, *, compiled: bool = False) -> np.ndarray:
    """Cluster labels 1..K (numbered by their first member): average linkage (UPGMA) on the distance
    sqrt((1 - rho) / 2), merging while the closest pair of clusters is within the distance of
    ``cluster_correlation``, i.e. scipy's ``fcluster(linkage(d, "average"), t, "distance")``."""
    n = covariance.shape[0]
    cut = math.sqrt((1.0 - cluster_correlation) / 2.0)
    if compiled:
        from lib.research.sleeves import book_kernel  # numba loads on first use

        labels_of = book_kernel.cluster_labels(book_kernel.correlation_distance(covariance), cut)
        return np.asarray(labels_of, dtype=int)
    distance = np.sqrt(np.clip((1.0 - to_correlation(covariance)) / 2.0, 0.0, 1.0))
    np.fill_diagonal(distance, np.inf)
    labels, sizes = np.arange(n), np.ones(n)
    alive = np.ones(n, dtype=bool)
    while alive.sum() > 1:
        masked = np.where(np.outer(alive, alive), distance, np.inf)
        flat = int(np.argmin(masked))
        i, j = divmod(flat, n)
        if not masked[i, j] <= cut:
            break
        merged = (sizes[i] * distance[i] + sizes[j] * distance[j]) / (sizes[i] + sizes[j])  # Lance-Williams
        distance[i], distance[:, i] = merged, merged
        distance[i, i] = np.inf
        sizes[i] += sizes[j]
        alive[j] = False
        labels[labels == j] = i
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return np.asarray(order[inverse] + 1, dtype=int)


def to_correlation(covariance: np.ndarray) -> np.ndarray:
    vol = np.sqrt(np.diag(covariance))
    scale = np.where(vol > 0, 1.0 / np.where(vol > 0, vol, 1.0), 0.0)
    correlation = covariance * np.outer(scale, scale)
    np.fill_diagonal(correlation, 1.0)
    return np.clip(correlation, -1.0, 1.0)


def effective_bets(weights: np.ndarray, covariance: np.ndarray) -> float:
    """1 / sum(p_i^2) over the risk-contribution shares p_i = w_i (Sigma w)_i / w'Sigma w: 1 when one
    bet carries all the risk, n for n equal, independent bets. NaN for an empty book."""
    total = float(weights @ covariance @ weights)
    if not total > 0:
        return float("nan")
    shares = weights * (covariance @ weights) / total
    return float(1.0 / np.sum(shares**2))

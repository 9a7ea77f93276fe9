"""Pure: the per-bar risk model of the sleeves: a shrunk covariance, correlation clusters, effective bets.

Why shrinkage: a 25-asset sample covariance from ~90 daily returns is noisy enough to make risk parity
chase estimation error; Ledoit-Wolf (sklearn's kept implementation) pulls it toward a scaled identity by
the optimal amount. Why clusters: twenty alts that move as one are one bet, not twenty; assets whose
correlation is high are grouped (average linkage) so a risk budget can be split per cluster first.

Causal: the model at bar t uses the log returns of the ``window_bars`` bars ending at t only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.covariance import ledoit_wolf

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
    """Bar log returns (time x symbol); across a missing bar from the last valid close; NaN before."""
    log_close = np.log(close_wide.where(close_wide > 0))
    return (log_close - log_close.ffill().shift(1)).to_numpy(dtype=float)


def row_risk(
    returns: np.ndarray,
    row: int,
    candidates: np.ndarray,
    *,
    window_bars: int,
    cluster_correlation: float,
    periods_per_year: float,
) -> RowRisk | None:
    """The risk model at ``row`` over the ``candidates`` (column positions) with enough returns in the
    window; None when fewer than one qualifies. Missing returns count as 0 (no move)."""
    start = row - window_bars + 1
    if start < 0 or candidates.size == 0:
        return None
    window = returns[start : row + 1][:, candidates]
    valid = np.isfinite(window)
    members_mask = valid.mean(axis=0) >= MIN_VALID_FRAC
    if not members_mask.any():
        return None
    sample = np.where(valid[:, members_mask], window[:, members_mask], 0.0)
    covariance, _ = ledoit_wolf(sample)
    covariance = np.atleast_2d(covariance) * periods_per_year
    members = candidates[members_mask]
    clusters = correlation_clusters(covariance, cluster_correlation)
    return RowRisk(members=members, covariance=covariance, clusters=clusters)


def correlation_clusters(covariance: np.ndarray, cluster_correlation: float) -> np.ndarray:
    """Cluster labels 1..K: average linkage on the distance sqrt((1 - rho) / 2), cut where the linked
    correlation falls below ``cluster_correlation``. One asset -> one cluster."""
    n = covariance.shape[0]
    if n == 1:
        return np.ones(1, dtype=int)
    correlation = to_correlation(covariance)
    distance = np.sqrt(np.clip((1.0 - correlation) / 2.0, 0.0, 1.0))
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    cut = math.sqrt((1.0 - cluster_correlation) / 2.0)
    return np.asarray(fcluster(tree, t=cut, criterion="distance"), dtype=int)


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

"""Pure: conviction -> long-only weights for one bar: risk budgets, inverse vol / risk parity, vol target,
fractional-Kelly cap, per-asset cap, no leverage.

Steps (``size_row``), all on the members of a ``RowRisk`` (assets with a covariance at that bar):
1. Risk budgets b_i = conviction_i x share_i. ``cluster_aware``: each correlation cluster gets 1/K of
   the budget, split equally among its members (twenty alts moving as one share ONE bet's budget);
   otherwise share_i = 1/n. sum(b) in [0, 1] is the share of the risk budget in use.
2. Direction y: ``inverse_vol`` (y_i = b_i / vol_i, each asset's stand-alone risk proportional to its
   budget) or ``risk_parity`` (risk contributions y_i (Sigma y)_i proportional to b_i on the shrunk
   covariance: equal risk contribution when budgets are equal).
3. Scale s so the book's volatility sqrt(s^2 y'Sigma y) = ``target_vol_annual_frac`` x sum(b): the
   trend is volatility-targeted, and half the risk budget in use means half the target volatility.
4. Fractional Kelly cap: s <= ``kelly_fraction`` x y'mu / y'Sigma y, the growth-optimal scale along y
   under the prior mu_i = ``assumed_sharpe`` x conviction_i x vol_i (no return forecast is fitted).
5. Each weight <= ``max_asset_weight_frac`` (clipped, the rest stays cash); sum <= 1 (scaled down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.research.sleeves.params import SizingParams
from lib.research.sleeves.risk import RowRisk

ERC_TOLERANCE = 1e-12
ERC_MAX_ITERATIONS = 100


@dataclass(frozen=True, slots=True)
class SizedRow:
    """Weights over ``RowRisk.members`` and why: budgets, the scales tried and which one bound."""

    weights: np.ndarray
    budgets: np.ndarray
    vol_scale: float  # s from the volatility target
    kelly_scale: float  # the Kelly cap on s (inf when disabled)
    binding: str  # "none" | "vol_target" | "kelly" | "asset_cap" | "no_leverage"


def risk_budgets(conviction: np.ndarray, clusters: np.ndarray, *, cluster_aware: bool) -> np.ndarray:
    """b_i = conviction_i / (K x n_k(i)) (cluster-aware) or conviction_i / n; conviction NaN -> 0."""
    held = np.nan_to_num(np.clip(conviction, 0.0, 1.0))
    if not cluster_aware:
        return held / held.size
    _, inverse, counts = np.unique(clusters, return_inverse=True, return_counts=True)
    return held / (counts.size * counts[inverse])


def risk_parity_weights(covariance: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Long-only weights (summing to 1) whose risk contributions w_i (Sigma w)_i are proportional to
    ``budgets`` (> 0). Newton's method on min 1/2 y'Sigma y - sum b_i ln y_i (strictly convex; its
    minimum has y_i (Sigma y)_i = b_i), with a step cut that keeps y > 0; then w = y / sum(y)."""
    b = budgets / budgets.sum()
    y = b / np.sqrt(np.diag(covariance))
    for _ in range(ERC_MAX_ITERATIONS):
        gradient = covariance @ y - b / y
        hessian = covariance + np.diag(b / y**2)
        step = np.linalg.solve(hessian, gradient)
        shrink = 1.0
        while np.any(y - shrink * step <= 0):
            shrink /= 2.0
        y = y - shrink * step
        if np.max(np.abs(gradient * y)) < ERC_TOLERANCE:
            break
    return y / y.sum()


def size_row(conviction: np.ndarray, risk: RowRisk, params: SizingParams, *, compiled: bool = False) -> SizedRow:
    """Weights over ``risk.members`` from their ``conviction`` (aligned with members, in [0, 1]).
    ``compiled``: the same steps run in lib.research.sleeves.book_kernel (same numbers to 1e-12)."""
    if compiled:
        from lib.research.sleeves import book_kernel  # numba loads on first use

        settings = np.array([params.method == "inverse_vol", params.cluster_aware, params.target_vol_annual_frac,
                             params.kelly_fraction, params.assumed_sharpe, params.max_asset_weight_frac,
                             ERC_TOLERANCE, ERC_MAX_ITERATIONS], dtype=float)
        weights, budgets, vol_scale, kelly_scale, binding = book_kernel.size_row(
            conviction, risk.clusters, risk.covariance, settings)
        return SizedRow(weights, budgets, vol_scale, kelly_scale, book_kernel.BINDINGS[binding])
    budgets = risk_budgets(conviction, risk.clusters, cluster_aware=params.cluster_aware)
    weights = np.zeros(budgets.size)
    active = np.flatnonzero(budgets > 0)
    if active.size == 0:
        return SizedRow(weights, budgets, 0.0, float("inf"), "none")
    cov = risk.covariance[np.ix_(active, active)]
    vol = np.sqrt(np.diag(cov))
    b = budgets[active]
    direction = b / vol if params.method == "inverse_vol" else risk_parity_weights(cov, b)
    variance = float(direction @ cov @ direction)
    vol_scale = params.target_vol_annual_frac * float(b.sum()) / np.sqrt(variance)
    kelly_scale = float("inf")
    if params.kelly_fraction > 0:
        mu = params.assumed_sharpe * np.clip(conviction[active], 0.0, 1.0) * vol
        kelly_scale = max(params.kelly_fraction * float(direction @ mu) / variance, 0.0)
    scale, binding = (vol_scale, "vol_target") if vol_scale <= kelly_scale else (kelly_scale, "kelly")
    sized = scale * direction
    if (sized > params.max_asset_weight_frac).any():
        sized = np.minimum(sized, params.max_asset_weight_frac)
        binding = "asset_cap"
    if sized.sum() > 1.0:
        sized = sized / sized.sum()
        binding = "no_leverage"
    weights[active] = sized
    return SizedRow(weights, budgets, vol_scale, kelly_scale, binding)

"""Pure: the sleeve book's sequential inner loops compiled with numba: risk-parity Newton, average-linkage
clusters, turnover control.

Each is the same operations in the same order as its numpy reference (``sizing.risk_parity_weights``,
``risk.correlation_clusters``, ``turnover.control_turnover``, which stay as the references): sums over
assets use numpy's own pairwise summation (``lib.research.sim_kernel._numpy_sum``), products the same BLAS
calls, so the book's weights equal the reference's (tests/unit/research/sleeves/test_book_kernel.py
holds them to 1e-12 on random inputs and on real daily and hourly data). One exception: the risk-parity Newton
step solves its system by an in-place Cholesky factorization (the Hessian Sigma + diag(b / y^2) is symmetric
positive definite) where the reference calls LAPACK's LU solve: 2.2x faster (~16k solves in an hourly backtest,
~0.3 s) and equal to rounding (8e-17 apart on real hourly risk models). Imported lazily by the sleeve book
(numba loads in ~0.3 s); compiled code is cached next to this file on first use.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from lib.research.sim_kernel import _numpy_sum

COMPILED_FROM_SHA256 = "8667909d230605b48793cff8886e1efdc06f5c6d6690268bd3bca19b264cb631"  # see test_kernel_cache.py

UNCHANGED, ENTRY, EXIT, RESIZED, KEPT_BY_BAND = 0, 1, 2, 3, 4  # as lib.research.sleeves.turnover


@njit(cache=True, error_model="numpy")
def risk_parity_weights(
    covariance: np.ndarray, budgets: np.ndarray, tolerance: float, max_iterations: int
) -> np.ndarray:  # pragma: no cover (compiled)
    """``sizing.risk_parity_weights``: Newton on min 1/2 y'Sigma y - sum b_i ln y_i, step cut keeping y > 0; the
    same iterations and stopping rule, the Newton system solved by Cholesky (module docstring)."""
    n = budgets.size
    b = budgets / _numpy_sum(budgets)
    y: np.ndarray = np.empty(n)
    for k in range(n):
        y[k] = b[k] / np.sqrt(covariance[k, k])
    step = np.empty(n)
    factor = np.empty((n, n))  # lower triangle: the Hessian's Cholesky factor
    for _ in range(max_iterations):
        gradient = np.dot(covariance, y) - b / y
        for j in range(n):
            diagonal = covariance[j, j] + b[j] / (y[j] * y[j])
            for k in range(j):
                diagonal -= factor[j, k] * factor[j, k]
            diagonal = math.sqrt(diagonal)
            factor[j, j] = diagonal
            for i in range(j + 1, n):
                below = covariance[i, j]
                for k in range(j):
                    below -= factor[i, k] * factor[j, k]
                factor[i, j] = below / diagonal
        for i in range(n):  # forward: L z = gradient
            value = gradient[i]
            for k in range(i):
                value -= factor[i, k] * step[k]
            step[i] = value / factor[i, i]
        for i in range(n - 1, -1, -1):  # back: L' step = z
            value = step[i]
            for k in range(i + 1, n):
                value -= factor[k, i] * step[k]
            step[i] = value / factor[i, i]
        shrink = 1.0
        while _any_non_positive(y, step, shrink):
            shrink /= 2.0
        for k in range(n):
            y[k] = y[k] - shrink * step[k]
        worst = 0.0  # np.max(np.abs(gradient * y)), NaN included (then no stop, as in numpy)
        for k in range(n):
            size = abs(gradient[k] * y[k])
            if math.isnan(size) or size > worst:
                worst = size
            if math.isnan(worst):
                break
        if worst < tolerance:
            break
    return y / _numpy_sum(y)


@njit(cache=True, error_model="numpy")
def _any_non_positive(y: np.ndarray, step: np.ndarray, shrink: float) -> bool:  # pragma: no cover (compiled)
    """``np.any(y - shrink * step <= 0)`` without the temporary array (a plain loop: numba compiles it to one)."""
    for k in range(y.size):  # noqa: SIM110 (a generator in any() is not what numba compiles well)
        if y[k] - shrink * step[k] <= 0:
            return True
    return False


@njit(cache=True, error_model="numpy")
def correlation_distance(covariance: np.ndarray) -> np.ndarray:  # pragma: no cover (compiled)
    """``risk.correlation_clusters``' distance sqrt(clip((1 - clip(rho, -1, 1)) / 2, 0, 1)), rho = cov_ij x
    (s_i s_j) with s = 1 / vol (0 where vol is not > 0); inf on the diagonal; NaN stays NaN as in np.clip."""
    n = covariance.shape[0]
    scale = np.empty(n)
    for k in range(n):
        vol = np.sqrt(covariance[k, k])
        scale[k] = 1.0 / vol if vol > 0 else 0.0
    distance = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                distance[i, j] = np.inf
                continue
            rho = covariance[i, j] * (scale[i] * scale[j])
            if not math.isnan(rho):
                rho = min(max(rho, -1.0), 1.0)
            half = (1.0 - rho) / 2.0
            if not math.isnan(half):
                half = min(max(half, 0.0), 1.0)
            distance[i, j] = np.sqrt(half)
    return distance


@njit(cache=True, error_model="numpy")
def cluster_labels(distance: np.ndarray, cut: float) -> np.ndarray:  # pragma: no cover (compiled)
    """``risk.correlation_clusters`` from its distance matrix (diagonal inf; modified in place): merge the
    closest alive pair (numpy's argmin: first minimum in row-major order, a NaN wins) while within ``cut``
    (Lance-Williams average update); labels 1..K numbered by their first member."""
    n = distance.shape[0]
    labels = np.arange(n)
    sizes = np.ones(n)
    alive = np.ones(n, dtype=np.bool_)
    n_alive = n
    while n_alive > 1:
        best, best_i, best_j, found_nan = np.inf, 0, 0, False
        for i in range(n):
            for j in range(n):
                value = distance[i, j] if alive[i] and alive[j] else np.inf
                if math.isnan(value):
                    best_i, best_j, found_nan = i, j, True
                    break
                if value < best:
                    best, best_i, best_j = value, i, j
            if found_nan:
                break
        i, j = best_i, best_j
        value = distance[i, j] if alive[i] and alive[j] else np.inf
        if not value <= cut:
            break
        merged = (sizes[i] * distance[i] + sizes[j] * distance[j]) / (sizes[i] + sizes[j])
        distance[i, :] = merged
        distance[:, i] = merged
        distance[i, i] = np.inf
        sizes[i] += sizes[j]
        alive[j] = False
        n_alive -= 1
        for k in range(n):
            if labels[k] == j:
                labels[k] = i
    numbered = np.zeros(n, dtype=np.int64)
    seen = np.zeros(n, dtype=np.int64)  # label -> its number (0: not seen yet)
    count = 0
    for k in range(n):
        if seen[labels[k]] == 0:
            count += 1
            seen[labels[k]] = count
        numbered[k] = seen[labels[k]]
    return numbered


@njit(cache=True, error_model="numpy")
def control_turnover(
    clean: np.ndarray, min_weight: float, band_abs: float, band_rel: float, min_rebalance: float
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover (compiled)
    """``turnover.control_turnover`` on raw targets already clipped at 0 with NaN as 0 (time x asset)."""
    n_rows, n_assets = clean.shape
    targets = np.zeros_like(clean)
    reasons = np.zeros(clean.shape, dtype=np.int8)
    previous = np.zeros(n_assets)
    wanted = np.empty(n_assets)
    change = np.empty(n_assets)
    moved = np.empty(n_assets)
    for row in range(n_rows):
        wants_any, holds_any = False, False
        for k in range(n_assets):
            wants_any |= clean[row, k] != 0
            holds_any |= previous[k] != 0
        if not (wants_any or holds_any):
            continue
        entries_or_exits = False
        n_moved = 0
        for k in range(n_assets):
            raw = clean[row, k]
            wanted[k] = raw if raw >= min_weight else 0.0
            held = previous[k] > 0
            change[k] = abs(wanted[k] - previous[k])
            exit_ = held and wanted[k] == 0
            entry = (not held) and wanted[k] > 0
            move = held and not exit_ and change[k] >= band_abs + band_rel * previous[k]
            kept = held and not exit_ and not move
            code = UNCHANGED
            if entry:
                code = ENTRY
            elif exit_:
                code = EXIT
            elif move:
                code = RESIZED
                moved[n_moved] = change[k]
                n_moved += 1
            elif kept and change[k] > 0:
                code = KEPT_BY_BAND
            reasons[row, k] = code
            entries_or_exits |= entry or exit_
            if kept:
                wanted[k] = previous[k]  # targets = where(kept, previous, wanted)
        if not entries_or_exits and _numpy_sum(moved[:n_moved]) < min_rebalance:
            for k in range(n_assets):
                if reasons[row, k] == RESIZED:
                    reasons[row, k] = KEPT_BY_BAND
            targets[row] = previous
            continue
        total = _numpy_sum(wanted)
        if total > 1.0:
            for k in range(n_assets):
                wanted[k] = wanted[k] / total
        previous = wanted.copy()
        targets[row] = previous
    return targets, reasons


BINDINGS = ("none", "vol_target", "kelly", "asset_cap", "no_leverage")  # sizing.SizedRow.binding by code


@njit(cache=True, error_model="numpy")
def size_row(
    conviction: np.ndarray, clusters: np.ndarray, covariance: np.ndarray, settings: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float, int]:  # pragma: no cover (compiled)
    """``sizing.size_row``: (weights, budgets, vol_scale, kelly_scale, index of the binding in ``BINDINGS``).
    ``settings`` (one array: each argument costs numba's dispatcher a type check per call): inverse_vol (1/0),
    cluster_aware (1/0), target vol, Kelly fraction, assumed Sharpe, max asset weight, ERC tolerance and
    iterations."""
    inverse_vol, cluster_aware = settings[0] != 0, settings[1] != 0
    target_vol, kelly_fraction, assumed_sharpe, max_asset_weight = settings[2], settings[3], settings[4], settings[5]
    tolerance, max_iterations = settings[6], int(settings[7])
    n = conviction.size
    held = np.empty(n)
    for k in range(n):
        value = min(max(conviction[k], 0.0), 1.0)
        held[k] = 0.0 if math.isnan(conviction[k]) else value
    budgets = np.empty(n)
    if not cluster_aware:
        for k in range(n):
            budgets[k] = held[k] / n
    else:
        n_clusters = 0
        for k in range(n):
            first = True
            for other in range(k):
                if clusters[other] == clusters[k]:
                    first = False
                    break
            n_clusters += 1 if first else 0
        for k in range(n):
            count = 0
            for other in range(n):
                count += 1 if clusters[other] == clusters[k] else 0
            budgets[k] = held[k] / (n_clusters * count)
    weights = np.zeros(n)
    active = np.flatnonzero(budgets > 0)
    if active.size == 0:
        return weights, budgets, 0.0, np.inf, 0
    m = active.size
    cov = np.empty((m, m))
    for a in range(m):
        for c in range(m):
            cov[a, c] = covariance[active[a], active[c]]
    vol = np.empty(m)
    b = np.empty(m)
    for a in range(m):
        vol[a] = np.sqrt(cov[a, a])
        b[a] = budgets[active[a]]
    direction = b / vol if inverse_vol else risk_parity_weights(cov, b, tolerance, max_iterations)
    variance = np.dot(np.dot(direction, cov), direction)
    vol_scale = target_vol * _numpy_sum(b) / np.sqrt(variance)
    kelly_scale = np.inf
    if kelly_fraction > 0:
        mu = np.empty(m)
        for a in range(m):
            mu[a] = assumed_sharpe * min(max(conviction[active[a]], 0.0), 1.0) * vol[a]
        kelly_scale = max(kelly_fraction * np.dot(direction, mu) / variance, 0.0)
    if vol_scale <= kelly_scale:
        scale, binding = vol_scale, 1
    else:
        scale, binding = kelly_scale, 2
    sized = scale * direction
    if np.any(sized > max_asset_weight):
        sized = np.minimum(sized, max_asset_weight)
        binding = 3
    if _numpy_sum(sized) > 1.0:
        sized = sized / _numpy_sum(sized)
        binding = 4
    for a in range(m):
        weights[active[a]] = sized[a]
    return weights, budgets, vol_scale, kelly_scale, binding


@njit(cache=True, error_model="numpy")
def _quadratic(weights: np.ndarray, covariance: np.ndarray) -> float:  # pragma: no cover (compiled)
    """``float(weights @ covariance @ weights)`` with numpy's association: (w' Sigma) w."""
    return np.dot(np.dot(weights, covariance), weights)


@njit(cache=True, error_model="numpy")
def combine_row(
    sleeves: np.ndarray, budgets: np.ndarray, covariance: np.ndarray, max_book_vol: float, max_asset_weight: float
) -> tuple[np.ndarray, np.ndarray, float, float, float]:  # pragma: no cover (compiled)
    """``combiner.combine_row`` plus ``risk.effective_bets`` of its weights, on ``sleeves`` (one row of weights
    per sleeve, aligned with ``budgets``): (weights, contributions per sleeve, vol_scale, predicted vol after
    the caps, effective bets)."""
    n_sleeves, n = sleeves.shape
    parts = np.empty((n_sleeves, n))
    for s in range(n_sleeves):
        for k in range(n):
            value = max(sleeves[s, k], 0.0)
            parts[s, k] = budgets[s] * (0.0 if math.isnan(sleeves[s, k]) else value)
    raw = np.zeros(n)
    if n_sleeves > 0:
        raw = parts[0].copy()
        for s in range(1, n_sleeves):
            raw = raw + parts[s]
    predicted = np.sqrt(max(_quadratic(raw, covariance), 0.0))
    vol_scale = min(1.0, max_book_vol / predicted) if predicted > 0 else 1.0
    capped = np.minimum(raw * vol_scale, max_asset_weight)
    if _numpy_sum(capped) > 1.0:
        capped = capped / _numpy_sum(capped)
    ratio = np.zeros(n)
    for k in range(n):
        if raw[k] > 0:
            ratio[k] = capped[k] / raw[k]
    contributions = parts * ratio
    final_vol = np.sqrt(max(_quadratic(capped, covariance), 0.0))
    total = _quadratic(capped, covariance)
    bets = np.nan
    if total > 0:
        shares = capped * np.dot(covariance, capped) / total
        bets = 1.0 / _numpy_sum(shares**2)
    return capped, contributions, vol_scale, final_vol, bets

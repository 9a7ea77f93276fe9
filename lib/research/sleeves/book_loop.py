"""Pure: the trend-only sleeve book's row loop in one compiled call (numba), for long histories.

``lib.research.sleeves.book.compute_book`` walks the bars that want a position one by one in Python: per bar
~20 small numpy calls (the eligible set, the members' conviction, comparisons, slices written back), ~0.6 s on
25 coins x 35k hourly bars before any arithmetic. For a book of the trend core alone (``trend_core``, the shipped
strategy) this module runs the same walk inside numba: the same refresh rule (a new risk model once per clock
period and when the eligible set changes), the same kernels in the same order (``book_kernel.risk_model``,
``size_row``, ``combine_row``), re-sizing only when the members' conviction changed and re-combining only when
the sizing or the risk model did (both are deterministic, so skipping a recomputation of equal inputs cannot
change a number). The frames it fills are the reference loop's; tests/unit/research/sleeves/test_book_kernel.py
holds them to the numpy reference's to 1e-12. Imported lazily (numba loads on first use).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from lib.research.sleeves.book_kernel import BINDINGS, combine_row, size_row
from lib.research.sleeves.params import CombinerParams, SizingParams
from lib.research.sleeves.risk_kernel import risk_model

COMPILED_FROM_SHA256 = "86b1c501ec91cf7dfa988a40ba4c4f583fe935e83b2e8e9a36cf315e297b0e99"  # see test_kernel_cache.py

NO_BINDING = -1  # a bar without a sized row (no risk model): its trend_binding stays None


@njit(cache=True, error_model="numpy")
def _trend_rows(
    returns: np.ndarray, conviction: np.ndarray, eligible: np.ndarray, periods: np.ndarray, rows: np.ndarray,
    window_bars: int, cut: float, periods_per_year: float, sizing: np.ndarray, max_book_vol: float,
    max_asset_weight: float, raw: np.ndarray, weights: np.ndarray, contributions: np.ndarray,
    trend_budgets: np.ndarray, clusters: np.ndarray, stats: np.ndarray, bindings: np.ndarray,
) -> None:  # pragma: no cover (compiled)
    """Fills the output arrays (time x asset; ``stats`` time x 4; ``bindings`` per bar) at ``rows``."""
    n_assets = eligible.shape[1]
    has_risk, risk_period = False, -1
    previous = np.zeros(n_assets, dtype=np.bool_)
    members = np.empty(0, dtype=np.int64)
    covariance = np.empty((0, 0))
    labels = np.empty(0, dtype=np.int64)
    sized_conviction = np.empty(0)
    sized = np.empty(0)
    budgets = np.empty(0)
    binding = NO_BINDING
    combined = np.empty(0)
    parts = np.empty((1, 0))
    final_vol, vol_scale, bets = np.nan, np.nan, np.nan
    cluster_count = np.nan
    unit_budget = np.ones(1)
    for position in range(rows.size):
        row = rows[position]
        changed = position == 0
        for k in range(n_assets):
            changed |= eligible[row, k] != previous[k]
            previous[k] = eligible[row, k]
        stale = False  # sizing (and so the combination) must be recomputed
        if not has_risk or periods[row] != risk_period or changed:
            risk_period = periods[row]
            members, covariance, labels = risk_model(returns, row, np.flatnonzero(eligible[row]), window_bars, cut,
                                                     periods_per_year)
            has_risk = members.size > 0
            if has_risk:
                cluster_count = float(labels.max())  # labels are 1..K
            stale = True
        if not has_risk:
            continue
        m = members.size
        row_conviction = np.empty(m)
        for k in range(m):
            row_conviction[k] = conviction[row, members[k]]
        if not stale:
            for k in range(m):
                now, before = row_conviction[k], sized_conviction[k]
                if not (now == before or (math.isnan(now) and math.isnan(before))):
                    stale = True
                    break
        if stale:
            sized, budgets, _, _, binding = size_row(row_conviction, labels, covariance, sizing)
            sized_conviction = row_conviction
            combined, parts, vol_scale, final_vol, bets = combine_row(
                sized.reshape((1, m)), unit_budget, covariance, max_book_vol, max_asset_weight)
        for k in range(m):
            asset = members[k]
            clusters[row, asset] = labels[k]
            weights[row, asset] = sized[k]
            trend_budgets[row, asset] = budgets[k]
            raw[row, asset] = combined[k]
            contributions[row, asset] = parts[0, k]
        bindings[row] = binding
        stats[row, 0], stats[row, 1], stats[row, 2], stats[row, 3] = final_vol, vol_scale, bets, cluster_count


def fill_trend_rows(
    returns: np.ndarray, conviction: np.ndarray, eligible: np.ndarray, periods: np.ndarray, rows: np.ndarray, *,
    sizing: SizingParams, combiner: CombinerParams, periods_per_year: float, raw: np.ndarray,
    weights: np.ndarray, contributions: np.ndarray, trend_budgets: np.ndarray, clusters: np.ndarray,
    stats: np.ndarray, stats_binding: list[str | None],
) -> None:
    """The trend-only book's loop over ``rows`` (bars that want a position), filling the reference loop's outputs
    in place: ``raw``, the sleeve's ``weights`` and ``contributions``, ``trend_budgets``, ``clusters`` (time x
    asset, C-ordered float), the first 4 columns of ``stats`` and ``stats_binding``."""
    from lib.research.sleeves.sizing import ERC_MAX_ITERATIONS, ERC_TOLERANCE

    settings = np.array([sizing.method == "inverse_vol", sizing.cluster_aware, sizing.target_vol_annual_frac,
                         sizing.kelly_fraction, sizing.assumed_sharpe, sizing.max_asset_weight_frac,
                         ERC_TOLERANCE, ERC_MAX_ITERATIONS], dtype=float)
    bindings = np.full(len(stats_binding), NO_BINDING, dtype=np.int64)
    block = np.full((stats.shape[0], 4), np.nan)
    _trend_rows(np.ascontiguousarray(returns, dtype=float), np.ascontiguousarray(conviction, dtype=float),
                np.ascontiguousarray(eligible, dtype=np.bool_), np.ascontiguousarray(periods, dtype=np.int64),
                rows.astype(np.int64), sizing.window_bars, math.sqrt((1.0 - sizing.cluster_correlation) / 2.0),
                float(periods_per_year), settings, combiner.max_book_vol_annual_frac, combiner.max_asset_weight_frac,
                raw, weights, contributions, trend_budgets, clusters, block, bindings)
    stats[:, :4] = block
    for row in np.flatnonzero(bindings != NO_BINDING).tolist():
        stats_binding[row] = BINDINGS[int(bindings[row])]

"""Pure: several sleeves -> one long-only book with per-sleeve risk budgets, keeping who wants what.

Each sleeve delivers its own fully sized weights (sum <= 1, each volatility-targeted by
``lib.research.sleeves.sizing``), so capital budgets are risk budgets: the raw book is
sum_s B_s x w_s with B_s = budget_s / sum(budgets). The book is then capped: its predicted
volatility (shrunk covariance) at most ``max_book_vol_annual_frac`` (scaled down only), each weight
at most ``max_asset_weight_frac``, sum <= 1. ``contributions`` keep, per sleeve, the part of each
final weight that sleeve asked for (they add up to the book's weight), for targets.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lib.research.sleeves.params import CombinerParams


@dataclass(frozen=True, slots=True)
class CombinedRow:
    """One bar's book over the risk members: ``weights``, per-sleeve ``contributions`` (summing to it),
    the volatility scale applied (1 = not binding) and the book's predicted volatility after it."""

    weights: np.ndarray
    contributions: dict[str, np.ndarray]
    vol_scale: float
    predicted_vol_annual_frac: float


def normalized_budgets(names: tuple[str, ...], budgets: tuple[float, ...]) -> dict[str, float]:
    total = float(sum(budgets))
    return {name: float(budget) / total for name, budget in zip(names, budgets, strict=True)}


def combine_row(
    sleeve_weights: Mapping[str, np.ndarray],
    budgets: Mapping[str, float],
    covariance: np.ndarray,
    params: CombinerParams,
) -> CombinedRow:
    """The book of one bar from each sleeve's weights (aligned with ``covariance``'s assets)."""
    parts = {name: budgets[name] * np.nan_to_num(np.clip(weights, 0.0, None))
             for name, weights in sleeve_weights.items()}
    raw = np.sum(list(parts.values()), axis=0) if parts else np.zeros(covariance.shape[0])
    variance = float(raw @ covariance @ raw)
    predicted = float(np.sqrt(max(variance, 0.0)))
    vol_scale = min(1.0, params.max_book_vol_annual_frac / predicted) if predicted > 0 else 1.0
    capped = np.minimum(raw * vol_scale, params.max_asset_weight_frac)
    if capped.sum() > 1.0:
        capped = capped / capped.sum()
    ratio = np.divide(capped, raw, out=np.zeros_like(raw), where=raw > 0)
    contributions = {name: part * ratio for name, part in parts.items()}
    final_vol = float(np.sqrt(max(float(capped @ covariance @ capped), 0.0)))
    return CombinedRow(capped, contributions, vol_scale, final_vol)

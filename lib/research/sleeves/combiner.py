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

from lib.core.errors import ConfigError

SLEEVE_NAMES = ("trend_core", "xsection_momentum", "ensemble")
"""Sleeves the combiner knows: the trend core, cross-sectional alt momentum (lib.research.xsection), and the
legacy spot ensemble's weights as a sleeve."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CombinerParams:
    """Sleeves of the ``combined`` strategy and their risk budgets (TOML section ``combiner``)."""

    sleeves: tuple[str, ...] = ("trend_core", "xsection_momentum")
    budgets: tuple[float, ...] = (0.7, 0.3)
    max_book_vol_annual_frac: float = 0.6
    max_asset_weight_frac: float = 0.35

    def __post_init__(self) -> None:
        unknown = [name for name in self.sleeves if name not in SLEEVE_NAMES]
        if not self.sleeves or unknown or len(set(self.sleeves)) != len(self.sleeves):
            raise ConfigError(f"combiner.sleeves must be distinct names among {SLEEVE_NAMES}, got {self.sleeves}")
        if len(self.budgets) != len(self.sleeves):
            raise ConfigError(f"combiner.budgets needs one budget per sleeve, got {self.budgets} for {self.sleeves}")
        if any(not (np.isfinite(b) and b > 0) for b in self.budgets):
            raise ConfigError(f"combiner.budgets must be finite and > 0, got {self.budgets}")
        if not (np.isfinite(self.max_book_vol_annual_frac) and self.max_book_vol_annual_frac > 0):
            raise ConfigError(f"combiner.max_book_vol_annual_frac must be > 0, got {self.max_book_vol_annual_frac}")
        if not 0 < self.max_asset_weight_frac <= 1:
            raise ConfigError(f"combiner.max_asset_weight_frac must be in (0, 1], got {self.max_asset_weight_frac}")


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

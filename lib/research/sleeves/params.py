"""Pure: the sleeve book's config sections ([trend], [sizing], [combiner], [turnover]), light enough for the
config loader to import without numpy or pandas; the sleeves read them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from lib.core.errors import ConfigError

SLEEVE_NAMES = ("trend_core", "xsection_momentum", "ensemble")
"""Sleeves the combiner knows: the trend core, cross-sectional alt momentum (lib.research.xsection), and the
legacy spot ensemble's weights as a sleeve."""
CARRY_SLEEVE = "funding_carry"
"""The funding-carry pair book as a capital sleeve of ``combined`` (lib.research.carry.combined): not one of the
spot sleeves above; its budget is a capital share, the spot sleeves share the rest."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrendParams:
    """Trend core sleeve (TOML section ``trend``)."""

    horizons_bars: tuple[int, ...] = (20, 60, 120)  # SMA lookbacks, in bars of the strategy timeframe
    entry_buffer_frac: float = 0.02  # hysteresis half-width around the SMA (0.02 = +-2 %)

    def __post_init__(self) -> None:
        if not self.horizons_bars or any(h < 2 for h in self.horizons_bars):
            raise ConfigError(f"trend.horizons_bars must be a non-empty list of ints >= 2, got {self.horizons_bars}")
        if len(set(self.horizons_bars)) != len(self.horizons_bars):
            raise ConfigError(f"trend.horizons_bars has duplicates: {self.horizons_bars}")
        if not (math.isfinite(self.entry_buffer_frac) and 0 <= self.entry_buffer_frac < 1):
            raise ConfigError(f"trend.entry_buffer_frac must be in [0, 1), got {self.entry_buffer_frac}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingParams:
    """Sizing of every sleeve and the risk model (TOML section ``sizing``)."""

    method: Literal["inverse_vol", "risk_parity"] = "risk_parity"
    cluster_aware: bool = True
    target_vol_annual_frac: float = 0.4
    kelly_fraction: float = 0.5  # 0 disables the Kelly cap
    assumed_sharpe: float = 1.0  # prior Sharpe of a full-conviction holding (Kelly cap only)
    max_asset_weight_frac: float = 0.35
    window_bars: int = 90  # covariance window
    refresh_every_bars: int = 7  # re-estimate covariance and clusters this often (and when the universe changes)
    cluster_correlation: float = 0.7  # average-linkage correlation above which assets are one bet (protocol v2's pick)

    def __post_init__(self) -> None:
        if self.method not in ("inverse_vol", "risk_parity"):
            raise ConfigError(f"sizing.method must be inverse_vol or risk_parity, got {self.method!r}")
        for key in ("target_vol_annual_frac", "kelly_fraction", "assumed_sharpe"):
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 <= value <= 10):
                raise ConfigError(f"sizing.{key} must be in [0, 10], got {value}")
        if self.target_vol_annual_frac <= 0:
            raise ConfigError(f"sizing.target_vol_annual_frac must be > 0, got {self.target_vol_annual_frac}")
        if not 0 < self.max_asset_weight_frac <= 1:
            raise ConfigError(f"sizing.max_asset_weight_frac must be in (0, 1], got {self.max_asset_weight_frac}")
        if self.window_bars < 10:
            raise ConfigError(f"sizing.window_bars must be >= 10, got {self.window_bars}")
        if not 1 <= self.refresh_every_bars <= 1000:
            raise ConfigError(f"sizing.refresh_every_bars must be in [1, 1000], got {self.refresh_every_bars}")
        if not -1 < self.cluster_correlation < 1:
            raise ConfigError(f"sizing.cluster_correlation must be in (-1, 1), got {self.cluster_correlation}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CombinerParams:
    """Sleeves of the ``combined`` strategy and their risk budgets (TOML section ``combiner``)."""

    sleeves: tuple[str, ...] = ("trend_core", "xsection_momentum")
    budgets: tuple[float, ...] = (0.7, 0.3)
    max_book_vol_annual_frac: float = 0.6
    max_asset_weight_frac: float = 0.35

    def __post_init__(self) -> None:
        unknown = [name for name in self.sleeves if name not in (*SLEEVE_NAMES, CARRY_SLEEVE)]
        if not self.sleeves or unknown or len(set(self.sleeves)) != len(self.sleeves):
            raise ConfigError(f"combiner.sleeves must be distinct names among {(*SLEEVE_NAMES, CARRY_SLEEVE)}, "
                              f"got {self.sleeves}")
        if set(self.sleeves) == {CARRY_SLEEVE}:
            raise ConfigError("combiner.sleeves: funding_carry alone is strategy.name = 'funding_carry'; the combined "
                              "book needs at least one spot sleeve next to it")
        if len(self.budgets) != len(self.sleeves):
            raise ConfigError(f"combiner.budgets needs one budget per sleeve, got {self.budgets} for {self.sleeves}")
        if any(not (math.isfinite(b) and b > 0) for b in self.budgets):
            raise ConfigError(f"combiner.budgets must be finite and > 0, got {self.budgets}")
        if not (math.isfinite(self.max_book_vol_annual_frac) and self.max_book_vol_annual_frac > 0):
            raise ConfigError(f"combiner.max_book_vol_annual_frac must be > 0, got {self.max_book_vol_annual_frac}")
        if not 0 < self.max_asset_weight_frac <= 1:
            raise ConfigError(f"combiner.max_asset_weight_frac must be in (0, 1], got {self.max_asset_weight_frac}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnoverParams:
    """Turnover control (TOML section ``turnover``); all zero = trade every raw change."""

    min_weight_frac: float = 0.01
    band_abs_frac: float = 0.02
    band_rel_frac: float = 0.25
    min_rebalance_frac: float = 0.05

    def __post_init__(self) -> None:
        for key in ("min_weight_frac", "band_abs_frac", "band_rel_frac", "min_rebalance_frac"):
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise ConfigError(f"turnover.{key} must be in [0, 1], got {value}")

"""Pure: the ``[spot]`` and ``[perp]`` sections (SpotParams, PerpParams): how scores become target weights.

Kept apart from ``lib.research.portfolio`` so that loading the config does not load pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from lib.core.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotParams:
    """Long-only spot sizing (TOML section ``spot``)."""

    top_n: int = 5  # hold at most this many assets
    min_score: float = 0.0  # only scores strictly above this (>= 0) are bought
    weighting: Literal["score_inverse_vol", "inverse_vol"] = "score_inverse_vol"
    max_asset_weight_frac: float = 0.25
    target_vol_annual_frac: float = 0.5  # scale the book down to this; 0 disables
    assumed_correlation: float = 0.7  # pairwise correlation used for the book's volatility
    regime_filter: bool = True
    regime_sma_bars: int = 200
    bear_exposure_frac: float = 0.0  # share of the normal weights kept in a bearish regime

    def __post_init__(self) -> None:
        if self.top_n < 1:
            raise ConfigError(f"spot.top_n must be >= 1, got {self.top_n}")
        if not (math.isfinite(self.min_score) and self.min_score >= 0):
            raise ConfigError(f"spot.min_score must be finite and >= 0, got {self.min_score}")
        if self.weighting not in ("score_inverse_vol", "inverse_vol"):
            raise ConfigError(
                f"spot.weighting must be score_inverse_vol or inverse_vol, got {self.weighting!r}"
            )
        if not 0 < self.max_asset_weight_frac <= 1:
            raise ConfigError(
                f"spot.max_asset_weight_frac must be in (0, 1], got {self.max_asset_weight_frac}"
            )
        if not (math.isfinite(self.target_vol_annual_frac) and self.target_vol_annual_frac >= 0):
            raise ConfigError(f"spot.target_vol_annual_frac must be >= 0, got {self.target_vol_annual_frac}")
        if not 0 <= self.assumed_correlation <= 1:
            raise ConfigError(f"spot.assumed_correlation must be in [0, 1], got {self.assumed_correlation}")
        if self.regime_sma_bars < 2:
            raise ConfigError(f"spot.regime_sma_bars must be >= 2, got {self.regime_sma_bars}")
        if not 0 <= self.bear_exposure_frac <= 1:
            raise ConfigError(f"spot.bear_exposure_frac must be in [0, 1], got {self.bear_exposure_frac}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PerpParams:
    """Market-neutral perpetuals sizing (TOML section ``perp``)."""

    top_k: int = 3  # long the k best, short the k worst
    weighting: Literal["equal", "inverse_vol"] = "inverse_vol"
    max_gross_leverage: float = 1.0  # sum of |weights|
    max_asset_weight_frac: float = 0.25  # per-asset |weight|
    beta_neutral: bool = False  # also make sum(weight * beta_to_btc) = 0

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"perp.top_k must be >= 1, got {self.top_k}")
        if self.weighting not in ("equal", "inverse_vol"):
            raise ConfigError(f"perp.weighting must be equal or inverse_vol, got {self.weighting!r}")
        if not 0 < self.max_gross_leverage <= 10:
            raise ConfigError(f"perp.max_gross_leverage must be in (0, 10], got {self.max_gross_leverage}")
        if not 0 < self.max_asset_weight_frac <= self.max_gross_leverage:
            raise ConfigError(
                "perp.max_asset_weight_frac must be in (0, perp.max_gross_leverage], "
                f"got {self.max_asset_weight_frac}"
            )

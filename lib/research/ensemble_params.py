"""Pure: the ``[ensemble]`` section (EnsembleParams): how the base signals are combined into one score.

Kept apart from ``lib.research.ensemble`` so that loading the config does not load pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from lib.core.errors import ConfigError
from lib.research.signal_params import SIGNAL_NAMES

EnsembleMethod = Literal["equal_weight", "rank_average", "adaptive_ic"]
IcMethod = Literal["spearman_cross_section", "pearson_time_series"]
IcFallback = Literal["equal_weight", "zero"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsembleParams:
    """TOML section ``[ensemble]``. Horizons and windows are in bars of the configured timeframe.

    ``ic_method``: ``spearman_cross_section`` ranks assets per bar (what matters for picking assets,
    needs ``ic_min_assets``) and averages the per-bar IC over ``ic_window_bars``;
    ``pearson_time_series`` correlates each asset with itself over ``ic_window_bars`` (what matters for
    timing) and averages across assets. ``ic_fallback`` applies when no signal has a usable positive
    weight (warm-up, or all ICs floored to 0): equal weights, or all-zero weights (score 0).
    """

    method: EnsembleMethod = "equal_weight"
    signals: tuple[str, ...] = SIGNAL_NAMES
    ic_method: IcMethod = "spearman_cross_section"
    ic_horizon_bars: int = 1
    ic_window_bars: int = 250
    ic_min_bars: int = 60
    ic_min_assets: int = 3
    ic_floor: float = 0.0
    ic_fallback: IcFallback = "equal_weight"

    def __post_init__(self) -> None:
        for key, allowed in (
            ("method", EnsembleMethod),
            ("ic_method", IcMethod),
            ("ic_fallback", IcFallback),
        ):
            if getattr(self, key) not in get_args(allowed):
                raise ConfigError(
                    f"ensemble.{key} must be one of {get_args(allowed)}, got {getattr(self, key)!r}"
                )
        unknown = [name for name in self.signals if name not in SIGNAL_NAMES]
        if not self.signals or unknown or len(set(self.signals)) != len(self.signals):
            raise ConfigError(
                f"ensemble.signals must be distinct names from {SIGNAL_NAMES}, got {self.signals!r}"
            )
        if self.ic_horizon_bars < 1:
            raise ConfigError(f"ensemble.ic_horizon_bars must be >= 1, got {self.ic_horizon_bars}")
        if not 2 <= self.ic_min_bars <= self.ic_window_bars:
            raise ConfigError(
                f"ensemble.ic_min_bars must be in [2, ic_window_bars={self.ic_window_bars}], "
                f"got {self.ic_min_bars}"
            )
        if self.ic_min_assets < 2:
            raise ConfigError(f"ensemble.ic_min_assets must be >= 2, got {self.ic_min_assets}")
        if not -1.0 <= self.ic_floor <= 0.0:
            raise ConfigError(f"ensemble.ic_floor must be in [-1, 0], got {self.ic_floor}")

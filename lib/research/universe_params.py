"""Pure: the ``[universe]`` section (UniverseParams): which assets are eligible at a bar.

Kept apart from ``lib.research.universe`` so that loading the config does not load pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lib.core.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class UniverseParams:
    """TOML section ``[universe]``; bar counts are in bars of the configured timeframe.

    ``max_assets`` = 0 keeps every eligible asset; otherwise only the ``max_assets`` most liquid
    (by trailing median dollar volume; ties go to the earlier column) stay eligible at each bar.
    """

    min_history_bars: int = 250  # >= the default signals' warm-up (~220 bars), so eligible implies scored
    dollar_volume_window_bars: int = 30
    min_dollar_volume_quote: float = 100_000.0
    max_assets: int = 0

    def __post_init__(self) -> None:
        if self.min_history_bars < 1:
            raise ConfigError(f"universe.min_history_bars must be >= 1, got {self.min_history_bars}")
        if self.dollar_volume_window_bars < 1:
            raise ConfigError(
                f"universe.dollar_volume_window_bars must be >= 1, got {self.dollar_volume_window_bars}"
            )
        threshold = self.min_dollar_volume_quote
        if not (math.isfinite(threshold) and threshold >= 0):
            raise ConfigError(f"universe.min_dollar_volume_quote must be finite and >= 0, got {threshold}")
        if self.max_assets < 0:
            raise ConfigError(f"universe.max_assets must be >= 0 (0 = no cap), got {self.max_assets}")

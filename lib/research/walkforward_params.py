"""Pure: the ``[walkforward]`` section (WalkForwardParams): the walk-forward layout and selection metric.

Kept apart from ``lib.research.walkforward`` so that loading the config does not load pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lib.core.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkForwardParams:
    """Walk-forward layout and selection metric (TOML section ``walkforward``)."""

    train_bars: int = 730
    test_bars: int = 180
    expanding: bool = False  # True: every train window starts at the first bar
    metric: Literal["sharpe", "sortino", "calmar", "cagr_frac", "total_return_frac"] = "sharpe"
    cost_levels_bps: tuple[float, ...] = (0.0, 10.0, 25.0, 50.0)

    def __post_init__(self) -> None:
        if self.train_bars < 2:
            raise ConfigError(f"walkforward.train_bars must be >= 2, got {self.train_bars}")
        if self.test_bars < 2:
            raise ConfigError(f"walkforward.test_bars must be >= 2, got {self.test_bars}")
        if self.metric not in ("sharpe", "sortino", "calmar", "cagr_frac", "total_return_frac"):
            raise ConfigError(f"walkforward.metric is not a known metric: {self.metric!r}")
        if not self.cost_levels_bps or any(not 0 <= level < 1000 for level in self.cost_levels_bps):
            raise ConfigError(
                f"walkforward.cost_levels_bps must be values in [0, 1000), got {self.cost_levels_bps}"
            )

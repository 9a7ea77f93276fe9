"""Pure: the ``[walkforward]`` section (WalkForwardParams): the walk-forward layout and selection metric.

Windows are calendar days, never bar counts, so one layout means the same spans on hourly and daily bars.
Kept apart from ``lib.research.walkforward`` so that loading the config does not load pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from lib.core.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkForwardParams:
    """Walk-forward layout in calendar days and selection metric (TOML section ``walkforward``)."""

    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "train_bars": "train_days (calendar days, the same on every timeframe; e.g. train_days = 730)",
        "test_bars": "test_days (calendar days, the same on every timeframe; e.g. test_days = 180)",
    }
    """Keys the section no longer has -> what to write instead (the config loader says so)."""

    train_days: int = 730
    test_days: int = 180
    purge_days: int = 1  # days dropped from the end of each train window (outcomes that reach into the test)
    embargo_days: int = 0  # a further gap between train and test, against serial correlation
    expanding: bool = False  # True: every train window starts at the first bar
    metric: Literal["sharpe", "sortino", "calmar", "cagr_frac", "total_return_frac"] = "sharpe"
    cost_levels_bps: tuple[float, ...] = (0.0, 10.0, 25.0, 50.0)

    def __post_init__(self) -> None:
        if self.train_days < 1:
            raise ConfigError(f"walkforward.train_days must be >= 1, got {self.train_days}")
        if self.test_days < 1:
            raise ConfigError(f"walkforward.test_days must be >= 1, got {self.test_days}")
        for key in ("purge_days", "embargo_days"):
            if getattr(self, key) < 0:
                raise ConfigError(f"walkforward.{key} must be >= 0, got {getattr(self, key)}")
        if self.metric not in ("sharpe", "sortino", "calmar", "cagr_frac", "total_return_frac"):
            raise ConfigError(f"walkforward.metric is not a known metric: {self.metric!r}")
        if not self.cost_levels_bps or any(not 0 <= level < 1000 for level in self.cost_levels_bps):
            raise ConfigError(
                f"walkforward.cost_levels_bps must be values in [0, 1000), got {self.cost_levels_bps}"
            )

    @property
    def gap_days(self) -> int:
        """Days between the last train day and the first test day (purge + embargo)."""
        return self.purge_days + self.embargo_days

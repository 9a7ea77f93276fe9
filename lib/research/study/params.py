"""Pure: the ``[study]`` config section (the backtest script's research defaults), light enough for the config
loader (no pandas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lib.core.errors import ConfigError

MissingFunding = Literal["drop", "proxy", "zero"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyParams:
    """Research defaults of the backtest script (TOML section ``study``).

    ``missing_funding`` (perps, symbols without a funding history): ``drop`` them from the universe
    (honest, the default), ``proxy`` = charge the mean rate of the symbols that have one at each
    settlement, ``zero`` = charge nothing (optimistic).
    """

    spot_top_n_grid: tuple[int, ...] = (3, 5, 8)
    perp_top_k_grid: tuple[int, ...] = (1, 2, 3)
    rebalance_days_grid: tuple[int, ...] = (1, 7)
    equal_weight_rebalance_days: int = 30
    missing_funding: MissingFunding = "drop"

    def __post_init__(self) -> None:
        for key in ("spot_top_n_grid", "perp_top_k_grid", "rebalance_days_grid"):
            values = getattr(self, key)
            if not values or any(value < 1 for value in values):
                raise ConfigError(f"study.{key} must be a non-empty list of ints >= 1, got {values}")
        if (days := self.equal_weight_rebalance_days) < 1:
            raise ConfigError(f"study.equal_weight_rebalance_days must be >= 1, got {days}")
        if self.missing_funding not in ("drop", "proxy", "zero"):
            raise ConfigError(f"study.missing_funding must be drop/proxy/zero, got {self.missing_funding!r}")

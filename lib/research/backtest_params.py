"""Pure: the ``[backtest]`` section (BacktestParams): the simulation's costs, frictions and schedule.

Kept apart from ``lib.research.backtester`` so that loading the config does not load pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from lib.core.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestParams:
    """Simulation costs and frictions (TOML section ``backtest``)."""

    market: Literal["spot", "perp"] = "spot"
    starting_capital_quote: float = 1000.0
    fee_bps: float = 10.0  # taker fee on traded notional
    slippage_bps: float = 5.0  # fixed part, applied to the fill price
    slippage_vol_mult: float = 0.0  # extra slippage = mult x per-bar volatility fraction
    min_notional_quote: float = 10.0  # smaller orders are skipped
    no_trade_band_frac: float = 0.0  # keep a weight that is this close to its target
    rebalance_every_bars: int = 1  # only rows at positions 0, k, 2k, ... are decisions
    model_live_risk: bool = True  # apply [risk]: drawdown halt, daily-loss reduce-only, caps (lib.research.live_risk)
    # days until a person clears a drawdown halt and the book re-arms (0: never). 7 = "a person checks within a
    # week", a staffing assumption fixed before any result with it was seen; not tuned.
    halt_review_days: int = 7

    def __post_init__(self) -> None:
        if self.market not in ("spot", "perp"):
            raise ConfigError(f"backtest.market must be spot or perp, got {self.market!r}")
        if not (math.isfinite(self.starting_capital_quote) and self.starting_capital_quote > 0):
            raise ConfigError(
                f"backtest.starting_capital_quote must be > 0, got {self.starting_capital_quote}"
            )
        for key in ("fee_bps", "slippage_bps"):
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 <= value < 1000):
                raise ConfigError(f"backtest.{key} must be in [0, 1000), got {value}")
        for key in ("slippage_vol_mult", "min_notional_quote", "no_trade_band_frac"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"backtest.{key} must be finite and >= 0, got {value}")
        if self.halt_review_days < 0:
            raise ConfigError(f"backtest.halt_review_days must be >= 0 (0: never re-arm), got {self.halt_review_days}")
        if self.rebalance_every_bars < 1:
            raise ConfigError(f"backtest.rebalance_every_bars must be >= 1, got {self.rebalance_every_bars}")

"""Pure: the ``[strategy]`` section (StrategySection) and the strategy names, read by the composition in
``lib.research.strategy``, the backtest study and the config loader (no pandas here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from lib.core.errors import ConfigError
from lib.core.symbols import split_symbol
from lib.core.timeframes import timeframe_ms

StrategyName = Literal["spot_long_only", "perp_market_neutral", "trend_core", "xsection_momentum", "combined",
                       "funding_carry"]
SPOT_STRATEGY: Final = "spot_long_only"
PERP_STRATEGY: Final = "perp_market_neutral"
TREND_CORE: Final = "trend_core"
XSECTION_MOMENTUM: Final = "xsection_momentum"
COMBINED: Final = "combined"
CARRY_STRATEGY: Final = "funding_carry"
"""Spot long + USD-M short of each coin (lib.research.carry); traded on two accounts by lib.execution.carry_run.
Not in STRATEGY_NAMES: the signal composition of lib.research.strategy does not run it."""
BOOK_STRATEGIES = (TREND_CORE, XSECTION_MOMENTUM, COMBINED)
"""A single-sleeve book per sleeve name (budget 1), and the combined book of ``combiner.sleeves``."""
STRATEGY_NAMES = (SPOT_STRATEGY, PERP_STRATEGY, *BOOK_STRATEGIES)


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategySection:
    """Which strategy turns signals into targets, on which candles, how often."""

    name: StrategyName = TREND_CORE  # chosen by the research protocol (docs/RESULTS.md, docs/research/)
    timeframe: str = "1d"  # candles the signals are computed on (must be one of data.timeframes)
    rebalance_every_bars: int = 1  # backtest schedule; live cadence is the crontab's
    benchmark_symbol: str = "BTC/USDT"  # regime filter, beta and the buy-and-hold benchmark
    volatility_window_bars: int = 30  # realized volatility used for sizing

    def __post_init__(self) -> None:
        try:
            timeframe_ms(self.timeframe)
            split_symbol(self.benchmark_symbol)
        except ConfigError as error:
            raise ConfigError(f"strategy: {error}") from None
        if not 1 <= self.rebalance_every_bars <= 10_000:
            raise ConfigError(f"strategy.rebalance_every_bars must be in [1, 10000], got {self.rebalance_every_bars}")
        if not 2 <= self.volatility_window_bars <= 10_000:
            raise ConfigError(
                f"strategy.volatility_window_bars must be in [2, 10000], got {self.volatility_window_bars}"
            )

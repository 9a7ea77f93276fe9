"""Pure: the settings of one study run: the research defaults (``StudyParams``), every section the strategy
and the simulation read (``StudySettings``), ``section.field`` overrides, and the backtest parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lib.core.errors import ConfigError
from lib.research.backtest_params import BacktestParams
from lib.research.ensemble import EnsembleParams
from lib.research.live_risk import LiveRiskLimits
from lib.research.portfolio import PerpParams, SpotParams
from lib.research.signal_params import SignalParams
from lib.research.sleeves.book import BookSettings
from lib.research.sleeves.params import CombinerParams, SizingParams, TrendParams, TurnoverParams
from lib.research.strategy_params import BOOK_STRATEGIES, PERP_STRATEGY, SPOT_STRATEGY, STRATEGY_NAMES, StrategySection
from lib.research.study.json_values import json_safe
from lib.research.study.params import MissingFunding as MissingFunding  # re-exported
from lib.research.study.params import StudyParams as StudyParams
from lib.research.universe import UniverseParams

GRID_SECTIONS = ("strategy", "signals", "ensemble", "universe", "spot", "perp", "backtest",
                 "trend", "sizing", "combiner", "turnover")  # grid keys
PARAM_SECTIONS = tuple(name for name in GRID_SECTIONS if name != "strategy")  # config sections = StudySettings fields
MARKET_BY_STRATEGY: Mapping[str, Literal["spot", "perp"]] = {
    SPOT_STRATEGY: "spot", PERP_STRATEGY: "perp", **dict.fromkeys(BOOK_STRATEGIES, "spot")}


@dataclass(frozen=True, slots=True, kw_only=True)
class StudySettings:
    """Every config section the strategy and the simulation read (one grid point = one of these)."""

    strategy: StrategySection
    signals: SignalParams
    ensemble: EnsembleParams
    universe: UniverseParams
    spot: SpotParams
    perp: PerpParams
    backtest: BacktestParams
    trend: TrendParams = dataclasses.field(default_factory=TrendParams)  # the sleeve book's sections
    sizing: SizingParams = dataclasses.field(default_factory=SizingParams)
    combiner: CombinerParams = dataclasses.field(default_factory=CombinerParams)
    turnover: TurnoverParams = dataclasses.field(default_factory=TurnoverParams)
    live_risk: LiveRiskLimits | None = None  # [risk] as the backtest models it (None: not modelled)

    @property
    def book(self) -> BookSettings:
        return BookSettings(trend=self.trend, sizing=self.sizing, combiner=self.combiner, turnover=self.turnover)

def settings_from(config: Any, strategy: StrategySection) -> StudySettings:
    """The study settings of a loaded config (``lib.ops.config.Config``) with ``strategy`` in place of its own;
    its ``[risk]`` limits become ``live_risk`` (applied when ``backtest.model_live_risk``)."""
    risk = getattr(config, "risk", None)
    return StudySettings(strategy=strategy, live_risk=None if risk is None else LiveRiskLimits.from_risk_limits(risk),
                         **{key: getattr(config, key) for key in PARAM_SECTIONS})


def with_overrides(settings: StudySettings, overrides: Mapping[str, Any]) -> StudySettings:
    """``settings`` with each ``section.field`` of ``overrides`` replaced; ConfigError on an unknown
    key or a value the section rejects."""
    changed: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, field_name = split_key(settings, key)
        changed.setdefault(section, {})[field_name] = value
    replaced = {name: dataclasses.replace(getattr(settings, name), **kw) for name, kw in changed.items()}
    return dataclasses.replace(settings, **replaced)

def split_key(settings: StudySettings, key: str) -> tuple[str, str]:
    section, _, field_name = key.partition(".")
    if section not in GRID_SECTIONS:
        raise ConfigError(f"grid key {key!r}: section must be one of {', '.join(GRID_SECTIONS)}")
    names = {f.name for f in dataclasses.fields(getattr(settings, section))}
    if field_name not in names:
        raise ConfigError(f"grid key {key!r}: {section} has no field {field_name!r} (known: {sorted(names)})")
    return section, field_name

def to_backtest_params(settings: StudySettings) -> BacktestParams:
    """The simulation parameters: market from ``strategy.name``; the schedule from
    ``backtest.rebalance_every_bars`` when set (not 1), else ``strategy.rebalance_every_bars``.

    Raises:
        ConfigError: both schedules are set and differ, or the strategy name is unknown.
    """
    name = settings.strategy.name
    if name not in MARKET_BY_STRATEGY:
        raise ConfigError(f"strategy.name must be one of {', '.join(STRATEGY_NAMES)}, got {name!r}")
    in_backtest, in_strategy = settings.backtest.rebalance_every_bars, settings.strategy.rebalance_every_bars
    if 1 != in_backtest != in_strategy != 1:
        raise ConfigError(f"backtest.rebalance_every_bars ({in_backtest}) and strategy.rebalance_every_bars "
                          f"({in_strategy}) disagree; set only strategy.rebalance_every_bars")
    every_bars = in_backtest if in_backtest != 1 else in_strategy
    market = MARKET_BY_STRATEGY[name]
    if settings.backtest.market not in (market, BacktestParams().market):
        raise ConfigError(f"backtest.market = {settings.backtest.market!r} disagrees with strategy.name = {name!r}; "
                          "leave backtest.market unset (it follows the strategy)")
    return dataclasses.replace(settings.backtest, market=market, rebalance_every_bars=every_bars)

def settings_document(settings: StudySettings) -> dict[str, Any]:
    """Every section as plain JSON (tuples -> lists), for metrics.json."""
    return json_safe({name: dataclasses.asdict(getattr(settings, name)) for name in GRID_SECTIONS})  # type: ignore[no-any-return]

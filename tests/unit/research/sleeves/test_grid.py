"""The sleeve grids are valid settings overrides, distinct, defaults first."""

from __future__ import annotations

import pytest

from lib.ops.config import StrategySection
from lib.research.backtester import BacktestParams
from lib.research.ensemble import EnsembleParams
from lib.research.portfolio import PerpParams, SpotParams
from lib.research.signals import SignalParams
from lib.research.sleeves.grid import COMBINED_GRID, TREND_CORE_GRID, XSECTION_MOMENTUM_GRID
from lib.research.study import sections
from lib.research.universe import UniverseParams


@pytest.mark.parametrize("grid", [TREND_CORE_GRID, XSECTION_MOMENTUM_GRID, COMBINED_GRID],
                         ids=["trend_core", "xsection_momentum", "combined"])
def test_grid_entries_are_distinct_valid_overrides(grid):
    base = sections.StudySettings(strategy=StrategySection(name="trend_core"), signals=SignalParams(),
                               ensemble=EnsembleParams(), universe=UniverseParams(), spot=SpotParams(),
                               perp=PerpParams(), backtest=BacktestParams())
    assert grid[0] == {}
    books = [sections.with_overrides(base, overrides).book for overrides in grid]  # ConfigError if invalid
    assert len(set(books)) == len(grid)  # every entry changes the book

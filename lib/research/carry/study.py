"""Pure: one carry backtest end to end (weights on the full history, book from the start bar) and a grid of them.

Weights are computed on all bars up to the end (every input is causal, so earlier bars never see
later ones: tested by truncation) and the book starts flat at ``start_ms``. A grid returns one row of
metrics per configuration and the returns matrix (one column of daily net returns per configuration)
that the research protocol's deflated Sharpe consumes; each configuration is one task through ``map_tasks``
(lib.research.tasks), the market sent once per worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lib.core.errors import DataError
from lib.research.carry import report
from lib.research.carry.book import CarryBookResult, simulate_book
from lib.research.carry.market import CarryMarket, slice_market
from lib.research.carry.sleeve import CarryParams, carry_weights, perp_daily_volatility
from lib.research.tasks import MapTasks, serial_map

STRATEGY_NAME = "funding_carry"


@dataclass(frozen=True, slots=True)
class CarryRun:
    params: CarryParams
    book: CarryBookResult
    weights: pd.DataFrame  # targets decided at each close, from the start bar
    kelly_binds_frac: float
    metrics: dict[str, Any]

    @property
    def daily_net_returns(self) -> pd.Series:
        return report.daily_net_returns(self.book)


def run_carry(market: CarryMarket, params: CarryParams, *, start_ms: int | None = None,
              end_ms: int | None = None, capital_quote: float = 1000.0) -> CarryRun:
    """Backtest the sleeve on bars opening in [start_ms, end_ms]; nothing after end_ms is read."""
    market = slice_market(market, end_ms=end_ms)
    weights, kelly_binds = carry_weights(market, params)
    volatility = perp_daily_volatility(market, params)
    window = slice_market(market, start_ms=start_ms)
    if len(window.index) < 2:
        raise DataError(f"no carry bars from {start_ms} to {end_ms}")
    start = window.index[0]
    book = simulate_book(window, weights.loc[start:], params, capital_quote=capital_quote,
                         perp_volatility=volatility.loc[start:])
    found = report.carry_metrics(book, window.benchmark_close)
    binds = float(kelly_binds.loc[start:].mean())
    found["kelly_binds_frac"] = binds
    return CarryRun(params, book, weights.loc[start:], binds, found)


def grid_configurations(base: CarryParams, axes: Mapping[str, Iterable[Any]]) -> list[CarryParams]:
    """Every combination of the axes' values over ``base`` (invalid combinations, e.g. exit > enter, skipped)."""
    configs = [base]
    for name, values in axes.items():
        expanded = []
        for config in configs:
            for value in values:
                try:
                    expanded.append(dataclasses.replace(config, **{name: value}))
                except Exception:  # noqa: BLE001 - ConfigError from __post_init__: not a valid configuration
                    continue
        configs = expanded
    return configs


def config_label(params: CarryParams, names: Iterable[str]) -> str:
    return ",".join(f"{name}={getattr(params, name)}" for name in names)


@dataclass(frozen=True, slots=True, kw_only=True)
class GridShared:
    """What every configuration's task reads: the market, the span, and the axis names of the table."""

    market: CarryMarket
    start_ms: int | None
    end_ms: int | None
    names: tuple[str, ...]


def grid_task(config: CarryParams, shared: GridShared) -> tuple[dict[str, Any], pd.Series]:
    """One configuration's backtest -> (its metrics row, its daily net returns)."""
    run = run_carry(shared.market, config, start_ms=shared.start_ms, end_ms=shared.end_ms)
    flat = {key: value for key, value in run.metrics.items() if not key.startswith("yearly_")}
    flat.update({f"return_{year}": value for year, value in run.metrics["yearly_returns"].items()})
    for year, parts in run.metrics["yearly_breakdown"].items():
        flat.update({f"{name.removesuffix('_quote')}_{year}": value for name, value in parts.items()})
    return {"config": config_label(config, shared.names), **{name: getattr(config, name) for name in shared.names},
            **flat}, run.daily_net_returns


def run_grid(market: CarryMarket, configs: list[CarryParams], names: list[str], *, start_ms: int | None,
             end_ms: int | None, progress: Callable[[int], None] | None = None,
             map_tasks: MapTasks = serial_map) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one metrics row per configuration, daily net returns matrix with one column per configuration)."""
    shared = GridShared(market=market, start_ms=start_ms, end_ms=end_ms, names=tuple(names))
    rows, columns = [], {}
    for row, returns in map_tasks(grid_task, configs, shared, label="carry grid"):
        rows.append(row)
        columns[row["config"]] = returns
        if progress is not None:
            progress(1)
    return pd.DataFrame(rows), pd.DataFrame(columns)

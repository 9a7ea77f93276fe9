"""Pure: the registry of candidate configurations the research protocol (scripts/research.py) evaluates.

One list per FAMILY (a strategy or sleeve); each entry is a settings override ``{"section.field": value}``
on the config's settings. ``candidates()`` turns them into (name, family, settings) Candidates — every
one of them is a trial the protocol counts — and ``evaluate_candidate()`` runs one through the existing
backtester (close of t -> open of t+1, fees, slippage, funding) into NET daily simple returns.

To add a family (e.g. a sleeve): write ``grid(base) -> list of overrides``, ``evaluate(candidate,
data, start_ms, end_ms) -> BacktestResult`` and ``first_ms(candidate, data, start_ms)`` and add a ``Family`` to
``FAMILIES``. List the simplest
settings first: the selection rule breaks exact ties by registry order after turnover.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.research.backtester import BacktestResult
from lib.research.carry.combined import CarrySplit, carry_split
from lib.research.carry.market import CarryMarket, slice_market
from lib.research.carry.sleeve import CarryParams
from lib.research.metrics import annualized_turnover, buy_and_hold_equity, returns_from_equity
from lib.research.sleeves.grid import COMBINED_GRID, TREND_CORE_GRID, XSECTION_MOMENTUM_GRID
from lib.research.sleeves.params import CARRY_SLEEVE
from lib.research.strategy_params import (
    COMBINED,
    PERP_STRATEGY,
    SPOT_STRATEGY,
    TREND_CORE,
    XSECTION_MOMENTUM,
    StrategyName,
)
from lib.research.study import funding_coverage, grids, history, sections, simulation
from lib.research.study.combined_carry import combined_carry_run, first_carry_day_ms
from lib.research.walkforward import expand_grid

type Frame = pd.DataFrame
Overrides = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One configuration tried: a stable ``name`` (family + settings), its ``family`` and the overrides."""

    name: str
    family: str
    settings: Overrides


@dataclass(frozen=True, slots=True, kw_only=True)
class ResearchData:
    """Everything a family may read, already cut at the research end (or the hold-out end) by the caller.

    ``spot_candles``: spot symbols -> daily candles; ``perp_candles``: perpetual symbols that have a
    funding history -> daily candles; ``funding_wide``: settlement x perpetual rates; ``first_funding_ms``:
    the first settlement at which every funded perpetual has one; ``base``: the config's settings;
    ``carry_market``: the funding-carry sleeve's hourly spot + perp candles and funding (only the ``trend_carry``
    family reads it; None when not loaded) and ``carry_leverage`` its ``carry.leverage``.
    """

    spot_candles: Mapping[str, Frame]
    perp_candles: Mapping[str, Frame]
    funding_wide: Frame | None
    first_funding_ms: int
    base: sections.StudySettings
    study_params: sections.StudyParams = dataclasses.field(default_factory=sections.StudyParams)
    carry_market: CarryMarket | None = None
    carry_leverage: float = 3.0
    cache: dict[Any, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)  # per data set


@dataclass(frozen=True, slots=True)
class CandidateRun:
    """``returns``: net daily simple returns on a UTC DatetimeIndex; ``turnover_annual``: traded notional
    / mean equity per year (the selection rule's tie-break)."""

    returns: pd.Series
    turnover_annual: float


Evaluate = Callable[[Candidate, ResearchData, int, int | None], BacktestResult | CandidateRun]
"""evaluate(candidate, data, start_ms, end_ms): a backtest (turned into daily returns by ``evaluate_candidate``), or
the daily run itself for a book that is not one backtest (``trend_carry``)."""
FirstDay = Callable[[Candidate, ResearchData, int], int]
"""first_ms(candidate, data, start_ms): the candidate's first tradeable bar >= start_ms (ms)."""


@dataclass(frozen=True, slots=True)
class Family:
    """``by_default``: run when no family is named (False: only on request, e.g. a book needing other data)."""

    grid: Callable[[ResearchData], list[dict[str, Any]]]
    evaluate: Evaluate
    first_ms: FirstDay
    by_default: bool = True


def _settings(data: ResearchData, strategy_name: StrategyName, overrides: Overrides) -> sections.StudySettings:
    base = dataclasses.replace(data.base, strategy=dataclasses.replace(data.base.strategy, name=strategy_name))
    return sections.with_overrides(base, overrides)


def _existing_grid(strategy_name: StrategyName) -> Callable[[ResearchData], list[dict[str, Any]]]:
    """The walk-forward grid backtest_study already defines (top_n / top_k x rebalance days)."""
    return lambda data: expand_grid(grids.default_grid(_settings(data, strategy_name, {}), data.study_params))


def _prepared(strategy_name: StrategyName, candidate: Candidate, data: ResearchData,
              start_ms: int) -> tuple[sections.StudySettings, simulation.SimulationInputs, int]:
    """(settings, the strategy composition (cached per distinct strategy-side setting in ``data.cache``), the
    first tradeable bar >= start_ms; perps: also >= the first funding settlement)."""
    settings = _settings(data, strategy_name, candidate.settings)
    return settings, *_inputs(settings, data, start_ms, candidate.name)


def _inputs(settings: sections.StudySettings, data: ResearchData, start_ms: int,
            label: str) -> tuple[simulation.SimulationInputs, int]:
    """The strategy composition of ``settings`` (cached in ``data.cache``) and its first tradeable bar >= start_ms."""
    strategy_name = settings.strategy.name
    is_perp = strategy_name == PERP_STRATEGY
    candles, funding = (data.perp_candles, data.funding_wide) if is_perp else (data.spot_candles, None)
    if not candles:
        raise DataError(f"{label}: no {'perpetual (with funding)' if is_perp else 'spot'} candles")
    key = (strategy_name, *simulation.strategy_key(settings))
    if key not in data.cache:
        data.cache[key] = simulation.build_simulation_inputs(candles, settings, funding_wide=funding)
    inputs = data.cache[key]
    floor = max(start_ms, data.first_funding_ms) if is_perp else start_ms
    return inputs, history.default_start_ms(inputs, not_before_ms=floor)


def _existing_family(strategy_name: StrategyName, grid: Callable[[ResearchData], list[dict[str, Any]]]) -> Family:
    """A family run through the backtester from its first tradeable bar >= start_ms to end_ms."""

    def evaluate(candidate: Candidate, data: ResearchData, start_ms: int, end_ms: int | None) -> BacktestResult:
        settings, inputs, start = _prepared(strategy_name, candidate, data, start_ms)
        return simulation.simulate(inputs, sections.to_backtest_params(settings), start_ms=start, end_ms=end_ms,
                                   live_risk=settings.live_risk)

    def first_ms(candidate: Candidate, data: ResearchData, start_ms: int) -> int:
        return _prepared(strategy_name, candidate, data, start_ms)[2]

    return Family(grid, evaluate, first_ms)


def _fixed_grid(grid: tuple[dict[str, Any], ...]) -> Callable[[ResearchData], list[dict[str, Any]]]:
    """A registered list of overrides (the sleeve books' grids live next to their code)."""
    return lambda data: [dict(overrides) for overrides in grid]


TREND_CARRY = "trend_carry"
CARRY_BUDGET = "carry_budget"
TREND_CARRY_GRID = ({CARRY_BUDGET: 0.0}, {CARRY_BUDGET: 0.25}, {CARRY_BUDGET: 0.5})
"""Protocol v3 (docs/research/v3_plan.md): the shipped trend_core (budget 0) and the combined book
``combiner.sleeves = ["trend_core", "funding_carry"]``, ``budgets = [1 - b, b]``, at the budgets b stated there."""


def _trend_carry_parts(candidate: Candidate, data: ResearchData) -> tuple[
        sections.StudySettings, CarrySplit | None, CarryMarket, CarryParams]:  # fmt: skip
    """(the directional part's settings, the carry split (None at budget 0), the carry market, the carry params):
    the config ``backtest --strategy combined`` runs for this budget, split as lib.research.carry.combined does."""
    if data.carry_market is None:
        raise DataError(f"{candidate.name}: no funding-carry market loaded (hourly spot + perp candles, funding)")
    budget = float(candidate.settings[CARRY_BUDGET])
    if not 0.0 <= budget < 1.0:
        raise ConfigError(f"{candidate.name}: {CARRY_BUDGET} must be in [0, 1)")
    base = data.base
    alone = dataclasses.replace(base.combiner, sleeves=(TREND_CORE,), budgets=(1.0,))  # = split.directional
    split = carry_split(COMBINED, dataclasses.replace(alone, sleeves=(TREND_CORE, CARRY_SLEEVE),
                                                      budgets=(1.0 - budget, budget))) if budget > 0 else None
    directional = dataclasses.replace(base, strategy=dataclasses.replace(base.strategy, name=TREND_CORE),
                                      combiner=alone)
    params = CarryParams(fee_rate=base.backtest.fee_bps / 10_000, slippage_rate=base.backtest.slippage_bps / 10_000,
                         leverage=data.carry_leverage)
    return directional, split, data.carry_market, params


def _trend_carry_first_ms(candidate: Candidate, data: ResearchData, start_ms: int) -> int:
    """Every budget (0 too) starts on the first day both parts can: the same span for all of them."""
    settings, _, market, _ = _trend_carry_parts(candidate, data)
    return _inputs(settings, data, max(start_ms, first_carry_day_ms(market)), candidate.name)[1]


def _trend_carry_run(candidate: Candidate, data: ResearchData, start_ms: int, end_ms: int | None) -> CandidateRun:
    """Budget 0: the trend_core backtest alone; otherwise that backtest (the directional part, on the whole capital)
    combined with the carry book re-split to the budgets (lib.research.study.combined_carry, as the backtest)."""
    settings, split, market, params = _trend_carry_parts(candidate, data)
    inputs, start = _inputs(settings, data, max(start_ms, first_carry_day_ms(market)), candidate.name)
    directional = simulation.simulate(inputs, sections.to_backtest_params(settings), start_ms=start, end_ms=end_ms,
                                      live_risk=settings.live_risk)
    timeframe = settings.strategy.timeframe
    if split is None:
        return _daily_run(candidate.name, directional.equity, float(directional.trades["notional_quote"].sum()),
                          timeframe=timeframe)
    if end_ms is not None:
        market = slice_market(market, end_ms=end_ms)
    run = combined_carry_run(directional, market, split, params, timeframe=timeframe,
                             capital_quote=settings.backtest.starting_capital_quote)
    return _daily_run(candidate.name, run.book.equity, run.traded_quote, timeframe=timeframe)


FAMILIES: dict[str, Family] = {
    SPOT_STRATEGY: _existing_family(SPOT_STRATEGY, _existing_grid(SPOT_STRATEGY)),
    PERP_STRATEGY: _existing_family(PERP_STRATEGY, _existing_grid(PERP_STRATEGY)),
    TREND_CORE: _existing_family(TREND_CORE, _fixed_grid(TREND_CORE_GRID)),
    XSECTION_MOMENTUM: _existing_family(XSECTION_MOMENTUM, _fixed_grid(XSECTION_MOMENTUM_GRID)),
    COMBINED: _existing_family(COMBINED, _fixed_grid(COMBINED_GRID)),
    TREND_CARRY: Family(_fixed_grid(TREND_CARRY_GRID), _trend_carry_run, _trend_carry_first_ms, by_default=False),
}
"""family name -> (grid, evaluate, first day). Sleeves add their entries here."""


def research_data(
    spot: Mapping[str, Frame], perp: Mapping[str, Frame], funding: Mapping[str, Frame | None], *, end_ms: int,
    base: sections.StudySettings, study_params: sections.StudyParams, carry_market: CarryMarket | None = None,
    carry_leverage: float = 3.0,
) -> ResearchData:  # fmt: skip
    """Loaded candles/funding -> ResearchData: every series cut at ``end_ms`` (inclusive; the carry market's bars
    and prints too), perpetuals without a funding history dropped (study.missing_funding = drop), and a refusal
    if any candle is still after end_ms."""
    spot_cut = history.cut_candles(spot, end_ms=end_ms)
    perp_cut = history.cut_candles(perp, end_ms=end_ms) if perp else {}
    rates = {symbol: None if (frame := funding.get(symbol)) is None else frame[frame["timestamp"] <= end_ms]
             for symbol in perp_cut}
    funding_wide, dropped = funding_coverage.build_funding_wide(rates, policy=study_params.missing_funding)
    kept = {symbol: frame for symbol, frame in perp_cut.items() if symbol not in dropped}
    data = ResearchData(spot_candles=spot_cut, perp_candles=kept, funding_wide=funding_wide,
                        first_funding_ms=funding_coverage.first_funding_ms({s: rates[s] for s in kept}), base=base,
                        study_params=study_params, carry_leverage=carry_leverage,
                        carry_market=None if carry_market is None else slice_market(carry_market, end_ms=end_ms))
    if last_candle_ms(data) > end_ms:  # cut_candles guarantees it: the hold-out must never leak into research
        raise DataError(f"a candle at {last_candle_ms(data)} is after the end {end_ms}")
    return data


def last_candle_ms(data: ResearchData) -> int:
    """Open time of the latest candle the research can see (the report records it)."""
    last = max(int(frame["timestamp"].max()) for frame in [*data.spot_candles.values(), *data.perp_candles.values()])
    return last if data.carry_market is None else max(last, int(data.carry_market.index[-1]))


def candidate_name(family: str, overrides: Overrides) -> str:
    return family + "[" + ",".join(f"{key}={value}" for key, value in overrides.items()) + "]"


def candidates(data: ResearchData, families: tuple[str, ...] | None = None) -> list[Candidate]:
    """Every configuration of ``families`` (default: every family registered ``by_default``), in registry order.

    Raises:
        ConfigError: an unknown family, or two candidates with the same name.
    """
    chosen = families or tuple(name for name, family in FAMILIES.items() if family.by_default)
    if unknown := [name for name in chosen if name not in FAMILIES]:
        raise ConfigError(f"unknown candidate families {unknown}; known: {sorted(FAMILIES)}")
    found = [Candidate(candidate_name(family, overrides), family, dict(overrides))
             for family in chosen for overrides in FAMILIES[family].grid(data)]
    if len({candidate.name for candidate in found}) != len(found):
        raise ConfigError("two candidates share a name; grids must not repeat a configuration")
    return found


def evaluate_candidate(candidate: Candidate, data: ResearchData, *, start_ms: int, end_ms: int | None) -> CandidateRun:
    """Net daily returns of ``candidate`` from its first tradeable day >= start_ms to end_ms (inclusive)."""
    result = FAMILIES[candidate.family].evaluate(candidate, data, start_ms, end_ms)
    if isinstance(result, CandidateRun):
        return result
    return _daily_run(candidate.name, result.equity, float(result.trades["notional_quote"].sum()),
                      timeframe=data.base.strategy.timeframe)


def _daily_run(name: str, equity: pd.Series, traded_quote: float, *, timeframe: str) -> CandidateRun:
    """Equity per bar (open ms) and the notional traded -> daily net returns and annual turnover."""
    return CandidateRun(returns=to_daily(returns_from_equity(equity)).rename(name),
                        turnover_annual=annualized_turnover(traded_quote, equity, timeframe=timeframe))


def benchmark_returns(data: ResearchData) -> pd.Series:
    """BTC (``strategy.benchmark_symbol``) buy-and-hold daily simple returns, no costs."""
    symbol = data.base.strategy.benchmark_symbol
    if symbol not in data.spot_candles:
        raise DataError(f"benchmark {symbol} has no spot candles in the data")
    frame = data.spot_candles[symbol]
    close = pd.Series(frame["close"].to_numpy(dtype=float), index=frame["timestamp"].to_numpy())
    return to_daily(returns_from_equity(buy_and_hold_equity(close))).rename("btc_buy_and_hold")


def returns_matrix(runs: Mapping[str, CandidateRun], benchmark: pd.Series) -> tuple[Frame, pd.Series]:
    """The protocol's inputs: every candidate's returns on the days they ALL (and BTC) have, from the
    latest first day; DataError if the common span has holes (one candidate's data missing mid-way)."""
    matrix = pd.concat({name: run.returns for name, run in runs.items()}, axis=1, join="inner")
    matrix = matrix.join(benchmark.rename("__benchmark__"), how="inner")
    if len(matrix) < 2:
        raise DataError("the candidates share fewer than 2 days; check --start and the data")
    return matrix.drop(columns="__benchmark__"), matrix["__benchmark__"].rename(benchmark.name)


def to_daily(returns: pd.Series) -> pd.Series:
    """int64-ms bar index -> UTC DatetimeIndex; refuses bars that are not at 00:00 UTC (daily only)."""
    index = pd.DatetimeIndex(pd.to_datetime(returns.index.to_numpy(dtype="int64"), unit="ms", utc=True))
    if (index != index.normalize()).any():
        raise ConfigError("the research protocol runs on daily bars (strategy.timeframe = 1d)")
    return pd.Series(returns.to_numpy(dtype=float), index=index, name=returns.name)

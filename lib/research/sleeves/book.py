"""Pure: the sleeve book: candles -> sleeves -> sizing -> combiner -> turnover control -> target weights.

``trend_core`` / ``xsection_momentum`` are the books of one sleeve alone (budget 1); ``combined`` is the
book of the sleeves named in ``combiner.sleeves`` with their budgets. The momentum sleeve
(``lib.research.xsection.momentum_weights``: 1/n on the top coins by past return) is scaled down, like
the trend core is scaled, to ``sizing.target_vol_annual_frac`` on the shrunk covariance, so that capital
budgets are risk budgets. ``lib.research.strategy.compute_strategy`` calls
``compute_book`` for both, so compute_signals and the backtest run this same code. Every row is causal:
sleeves, the risk model (window ending at t) and the turnover control (raw targets <= t) use bars <= t.
The risk model is re-estimated once per period of ``sizing.refresh_every_bars`` bars counted from the
epoch (open time // (k x bar length)), and whenever the eligible set changes, then reused. Anchoring on
the clock, not on row positions, makes the refresh days the same in a backtest from 2017 and in a live
run whose stored history starts later, and a missing bar cannot skip a refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError
from lib.core.timeframes import periods_per_year, timeframe_ms
from lib.research.panel_align import on_panel
from lib.research.sleeves.combiner import CombinedRow, CombinerParams, combine_row, normalized_budgets
from lib.research.sleeves.params import CARRY_SLEEVE
from lib.research.sleeves.risk import RowRisk, effective_bets, log_returns, row_risk
from lib.research.sleeves.sizing import SizedRow, SizingParams, size_row
from lib.research.sleeves.trend import TrendParams, compute_trend_sleeve
from lib.research.sleeves.turnover import REASONS, TurnoverParams, control_turnover
from lib.research.strategy_params import COMBINED, TREND_CORE, XSECTION_MOMENTUM
from lib.research.xsection import momentum_weights

COMPILED_MIN_ROWS = 8_000
"""From this many bars the compiled loops pay for loading numba and the cached kernels (measured ~0.7 s CPU,
~120 MB; they save ~0.13 ms a bar on 25 coins): hourly backtests (35k bars, book ~2.5x faster) compile;
daily histories (~2.3k bars) and compute_signals' trailing windows (lib.research.live_window) stay on numpy."""
ROW_STAT_COLUMNS = ("predicted_vol_annual_frac", "book_vol_scale", "effective_bets", "clusters", "trend_binding")


@dataclass(frozen=True, slots=True, kw_only=True)
class BookSettings:
    """Every parameter section of the sleeve book (TOML ``trend``, ``sizing``, ``combiner``, ``turnover``)."""

    trend: TrendParams = field(default_factory=TrendParams)
    sizing: SizingParams = field(default_factory=SizingParams)
    combiner: CombinerParams = field(default_factory=CombinerParams)
    turnover: TurnoverParams = field(default_factory=TurnoverParams)


@dataclass(frozen=True, slots=True, kw_only=True)
class BookOutput:
    """time x symbol frames on the panel. ``raw_weights``: the combined book before turnover control;
    ``target_weights``: after it; ``contributions``: sleeve -> its part of ``raw_weights``;
    ``sleeve_weights``: sleeve -> its own sized weights (before its budget); ``trend_conviction`` and
    ``trend_states`` (horizon -> 1/0); ``trend_budgets``: risk budgets of the trend sizing;
    ``clusters``: correlation cluster label (NaN outside the risk model); ``reasons``: turnover codes;
    ``row_stats``: one row per bar, ``ROW_STAT_COLUMNS``."""

    sleeves: dict[str, float]  # name -> normalized budget
    target_weights: pd.DataFrame
    raw_weights: pd.DataFrame
    contributions: dict[str, pd.DataFrame]
    sleeve_weights: dict[str, pd.DataFrame]
    trend_conviction: pd.DataFrame
    trend_states: dict[str, pd.DataFrame]
    trend_budgets: pd.DataFrame
    clusters: pd.DataFrame
    reasons: pd.DataFrame
    row_stats: pd.DataFrame


def book_sleeves(strategy_name: str, combiner: CombinerParams) -> dict[str, float]:
    """Normalized budgets of the sleeves a book strategy runs."""
    if strategy_name == COMBINED:
        if CARRY_SLEEVE in combiner.sleeves:  # a capital sleeve with two legs, not a spot sleeve of this book
            raise ConfigError("the funding_carry sleeve is combined by lib.research.carry.combined (compute_signals, "
                              "rebalance and backtest route it there), not by the spot sleeve book")
        return normalized_budgets(combiner.sleeves, combiner.budgets)
    return {strategy_name: 1.0}


def compute_book(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    close: pd.DataFrame,
    eligible: pd.DataFrame,
    *,
    strategy_name: str,
    settings: BookSettings,
    timeframe: str,
    ensemble_weights: pd.DataFrame | None = None,
    compiled: bool | None = None,
) -> BookOutput:
    """The book over the whole history. ``eligible``: the point-in-time universe (close's shape);
    ``ensemble_weights``: the spot ensemble's weights, needed when the ``ensemble`` sleeve runs.
    ``compiled``: the sequential inner loops run in lib.research.sleeves.book_kernel (numba; weights equal
    to 1e-12); False runs the numpy reference; None (default) compiles from ``COMPILED_MIN_ROWS`` rows on."""
    if compiled is None:
        compiled = len(close) >= COMPILED_MIN_ROWS
    budgets = book_sleeves(strategy_name, settings.combiner)
    shape = close.shape
    trend = compute_trend_sleeve(candles_by_symbol, close, settings.trend)
    eligible_arr = np.ascontiguousarray(on_panel(eligible, close, missing=False).to_numpy(dtype=bool))
    conviction = np.full(shape, np.nan)  # C-ordered, as the compiled walk reads it: no second copy
    np.copyto(conviction, on_panel(trend.conviction, close).to_numpy(dtype=float), where=eligible_arr)
    wants = np.zeros(shape[0], dtype=bool)
    if TREND_CORE in budgets:
        wants |= (np.nan_to_num(conviction) > 0).any(axis=1)
    momentum = np.zeros(shape)
    if XSECTION_MOMENTUM in budgets:
        momentum = momentum_weights(close.where(eligible)).to_numpy(dtype=float)
        wants |= (momentum > 0).any(axis=1)
    ensemble = np.zeros(shape)
    if "ensemble" in budgets:
        if ensemble_weights is None:
            raise ValueError("the ensemble sleeve needs ensemble_weights")
        ensemble = np.nan_to_num(ensemble_weights.reindex_like(close).to_numpy(dtype=float)) * eligible.to_numpy()
        wants |= (ensemble > 0).any(axis=1)
    returns = log_returns(close)
    periods = close.index.to_numpy(dtype="int64") // (settings.sizing.refresh_every_bars * timeframe_ms(timeframe))
    sleeve_arrays = {name: np.zeros(shape) for name in budgets}
    contribution_arrays = {name: np.zeros(shape) for name in budgets}
    raw, trend_budgets, clusters = np.zeros(shape), np.full(shape, np.nan), np.full(shape, np.nan)
    stats = np.full((shape[0], len(ROW_STAT_COLUMNS)), np.nan)
    stats_binding: list[str | None] = [None] * shape[0]
    sizing = settings.sizing
    risk: RowRisk | None = None
    sized: SizedRow | None = None
    risk_candidates: np.ndarray = np.empty(0, dtype=int)
    risk_period = -1
    sized_conviction: np.ndarray = np.empty(0)
    rows = np.flatnonzero(wants)
    if compiled and budgets.keys() == {TREND_CORE}:  # the trend-only walk below, in one compiled call
        from lib.research.sleeves.book_loop import fill_trend_rows  # numba loads on first use

        fill_trend_rows(returns, conviction, eligible_arr, periods, rows, sizing=sizing, combiner=settings.combiner,
                        periods_per_year=periods_per_year(timeframe), raw=raw, weights=sleeve_arrays[TREND_CORE],
                        contributions=contribution_arrays[TREND_CORE], trend_budgets=trend_budgets,
                        clusters=clusters, stats=stats, stats_binding=stats_binding)
        rows = rows[:0]  # nothing left for the loop
    # compiled: the eligible set equals the last refresh's iff it equals the previous processed row's
    same_eligible = np.zeros(rows.size, dtype=bool)
    same_eligible[1:] = (eligible_arr[rows[1:]] == eligible_arr[rows[:-1]]).all(axis=1) if compiled else False
    # compiled: a conviction row equal to the previous processed row's is the one the sizing was made from
    same_conviction = np.zeros(rows.size, dtype=bool)
    if compiled and rows.size > 1:
        now, before = conviction[rows[1:]], conviction[rows[:-1]]
        same_conviction[1:] = ((now == before) | (np.isnan(now) & np.isnan(before))).all(axis=1)
    cluster_count = float("nan")
    last: tuple[RowRisk, dict[str, np.ndarray], CombinedRow, float] | None = None
    for position, row in enumerate(rows.tolist()):
        candidates = np.flatnonzero(eligible_arr[row])
        changed = not same_eligible[position] if compiled else not np.array_equal(candidates, risk_candidates)
        if risk is None or periods[row] != risk_period or changed:
            risk_candidates, risk_period, sized = candidates, int(periods[row]), None
            risk = row_risk(returns, row, candidates, window_bars=sizing.window_bars,
                            cluster_correlation=sizing.cluster_correlation,
                            periods_per_year=periods_per_year(timeframe), compiled=compiled)
            cluster_count = float(np.unique(risk.clusters).size) if risk is not None else cluster_count
        if risk is None:
            continue
        members = risk.members
        clusters[row, members] = risk.clusters
        sleeve_row: dict[str, np.ndarray] = {}
        if TREND_CORE in budgets:
            row_conviction = conviction[row, members]
            if sized is None or not (same_conviction[position]
                                     or np.array_equal(row_conviction, sized_conviction, equal_nan=True)):
                sized, sized_conviction = size_row(row_conviction, risk, sizing, compiled=compiled), row_conviction
            sleeve_row[TREND_CORE] = sized.weights
            trend_budgets[row, members] = sized.budgets
            stats_binding[row] = sized.binding
        if XSECTION_MOMENTUM in budgets:
            sleeve_row[XSECTION_MOMENTUM] = _vol_capped(momentum[row, members], risk.covariance,
                                                        sizing.target_vol_annual_frac)
        if "ensemble" in budgets:
            sleeve_row["ensemble"] = ensemble[row, members]
        if compiled and last is not None and _same_inputs(last[0], last[1], risk, sleeve_row):
            combined, bets = last[2], last[3]  # the same risk model and sleeve weights: the same book
        else:
            combined, bets = _combine(sleeve_row, budgets, risk.covariance, settings.combiner, compiled=compiled)
            last = (risk, sleeve_row, combined, bets)
        raw[row, members] = combined.weights
        for name, weights in sleeve_row.items():
            sleeve_arrays[name][row, members] = weights
            contribution_arrays[name][row, members] = combined.contributions[name]
        stats[row, :4] = (combined.predicted_vol_annual_frac, combined.vol_scale,
                          bets, cluster_count)
    targets, reasons = control_turnover(raw, settings.turnover, compiled=compiled)

    def frame(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=close.index, columns=close.columns)

    row_stats = pd.DataFrame(stats, index=close.index, columns=list(ROW_STAT_COLUMNS)).astype(object)
    row_stats["trend_binding"] = stats_binding
    return BookOutput(
        sleeves=budgets, target_weights=frame(targets), raw_weights=frame(raw),
        contributions={name: frame(values) for name, values in contribution_arrays.items()},
        sleeve_weights={name: frame(values) for name, values in sleeve_arrays.items()},
        trend_conviction=trend.conviction, trend_states=trend.states, trend_budgets=frame(trend_budgets),
        clusters=frame(clusters), reasons=frame(reasons.astype(float)), row_stats=row_stats,
    )  # fmt: skip


def _same_inputs(risk: RowRisk, sleeve_row: dict[str, np.ndarray], next_risk: RowRisk,
                 next_row: dict[str, np.ndarray]) -> bool:
    """Whether the combiner's inputs of two bars are the same (same risk model object, equal sleeve weights)."""
    return risk is next_risk and sleeve_row.keys() == next_row.keys() and all(
        weights is sleeve_row[name] or np.array_equal(weights, sleeve_row[name], equal_nan=True)
        for name, weights in next_row.items())


def _combine(sleeve_row: dict[str, np.ndarray], budgets: dict[str, float], covariance: np.ndarray,
             params: CombinerParams, *, compiled: bool) -> tuple[CombinedRow, float]:
    """``combine_row`` and the effective bets of its weights; ``compiled``: both in one numba call."""
    if not compiled:
        combined = combine_row(sleeve_row, budgets, covariance, params)
        return combined, effective_bets(combined.weights, covariance)
    from lib.research.sleeves import book_kernel  # numba loads on first use

    names = list(sleeve_row)
    sleeves = np.array([sleeve_row[name] for name in names], dtype=float).reshape(len(names), covariance.shape[0])
    weights, contributions, vol_scale, final_vol, bets = book_kernel.combine_row(
        sleeves, np.array([budgets[name] for name in names], dtype=float), covariance,
        params.max_book_vol_annual_frac, params.max_asset_weight_frac)
    parts = {name: contributions[k] for k, name in enumerate(names)}
    return CombinedRow(weights, parts, vol_scale, final_vol), bets


def _vol_capped(weights: np.ndarray, covariance: np.ndarray, target_vol: float) -> np.ndarray:
    """``weights`` scaled down (never up) to a predicted volatility of ``target_vol``."""
    vol = float(np.sqrt(max(float(weights @ covariance @ weights), 0.0)))
    return weights * min(1.0, target_vol / vol) if vol > 0 else weights


def book_asset_breakdown(book: BookOutput, as_of_ms: int, symbol: str) -> dict[str, Any]:
    """Why ``symbol``'s weight is what it is at ``as_of_ms`` (JSON-safe; NaN -> None)."""

    def at(frame: pd.DataFrame) -> float | None:
        return _json_float(frame.at[as_of_ms, symbol])

    reason = at(book.reasons)
    return {
        "raw_weight": at(book.raw_weights),
        "turnover_reason": REASONS[int(reason)] if reason is not None else None,
        "sleeves": {name: at(frame) for name, frame in book.contributions.items()},
        "sleeve_weights": {name: at(frame) for name, frame in book.sleeve_weights.items()},
        "trend_conviction": at(book.trend_conviction),
        "trend_states": {name: at(frame) for name, frame in book.trend_states.items()},
        "trend_risk_budget": at(book.trend_budgets),
        "cluster": at(book.clusters),
    }


def book_summary(book: BookOutput, as_of_ms: int) -> dict[str, Any]:
    """Book-level facts at ``as_of_ms``: sleeve budgets, predicted volatility, effective bets, ..."""
    stats = book.row_stats.loc[as_of_ms]
    values = {name: _json_float(stats[name]) for name in ROW_STAT_COLUMNS if name != "trend_binding"}
    return {"sleeve_budgets": dict(book.sleeves), **values, "trend_binding": stats["trend_binding"]}


def _json_float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number + 0.0 if np.isfinite(number) else None

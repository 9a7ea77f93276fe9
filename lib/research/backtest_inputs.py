"""Pure: the backtester's input checks and per-bar arrays: the frames aligned once (``align_frames``), the
schedule and slippage of one parameter set on them (``schedule``), target validation, each asset's data end,
and funding settlements per bar (split from lib.research.backtester, which owns the walk)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.research.backtest_params import BacktestParams

WEIGHT_SUM_TOLERANCE = 1e-9  # spot targets may sum to 1 + this (float noise), not more
BPS_PER_UNIT = 10_000.0  # 1 = 10,000 basis points


@dataclass(frozen=True, slots=True)
class AlignedFrames:
    """The input frames as float arrays (time x symbol) on ``close_wide``'s bars, before any schedule/slippage
    choice: a sweep over fees, bands or schedules aligns once and schedules per parameter set."""

    mark: np.ndarray  # close, forward-filled, 0 before the first price
    reference: np.ndarray  # price of bar i's open, or the last mark where the open is missing
    tradeable: np.ndarray  # 1.0 where bar i has a usable open, else 0.0 (no trade)
    target: np.ndarray  # target decided at bar i (NaN -> 0), filled at bar i + 1's open
    is_decision_row: np.ndarray  # row i of the targets holds a finite weight (before the schedule)
    volatility: np.ndarray | None  # per-bar volatility fraction (NaN -> 0) at the decision bar, if given
    funding_per_unit: np.ndarray | None  # sum of funding rates settled in bar i x funding price
    wants_position: np.ndarray  # the target of bar i holds a non-zero weight
    last_close_bar: np.ndarray  # per asset: the last bar with a close (-1: none)
    marks_non_negative: bool  # no mark < 0: a long-only book with cash > 0 cannot reach equity <= 0


@dataclass(slots=True)
class SimInputs:
    """Input frames as aligned float arrays (time x symbol), precomputed per FILL bar, for one parameter set."""

    mark: np.ndarray  # close, forward-filled, 0 before the first price
    reference: np.ndarray  # price of bar i's open, or the last mark where the open is missing
    tradeable: np.ndarray  # 1.0 where bar i has a usable open, else 0.0 (no trade)
    target: np.ndarray  # target decided at bar i (NaN -> 0), filled at bar i + 1's open
    has_decision: np.ndarray  # bar i - 1 holds a decision on the schedule: bar i's open fills it
    slip_frac: np.ndarray  # slippage fraction for a fill at bar i's open (may be a broadcast view)
    funding_per_unit: np.ndarray | None  # sum of funding rates settled in bar i x funding price
    wants_position: np.ndarray  # the target of bar i holds a non-zero weight
    last_close_bar: np.ndarray  # per asset: the last bar with a close (-1: none)
    marks_non_negative: bool  # no mark < 0: a long-only book with cash > 0 cannot reach equity <= 0


def align_frames(
    open_wide: pd.DataFrame,
    close_wide: pd.DataFrame,
    target_weights: pd.DataFrame,
    params: BacktestParams,
    funding_wide: pd.DataFrame | None,
    volatility_wide: pd.DataFrame | None,
) -> AlignedFrames:
    """Validate and align the inputs to ``close_wide``'s bars and symbols (``params.market`` only is read)."""
    index, columns = close_wide.index, close_wide.columns
    if not (open_wide.index.equals(index) and open_wide.columns.equals(columns)):
        raise DataError("open_wide and close_wide must have the same index and columns")
    if not (index.is_monotonic_increasing and index.is_unique) or len(index) == 0:
        raise DataError("close_wide index must be non-empty, increasing and unique")
    unknown = target_weights.columns.difference(columns)
    if len(unknown):
        raise DataError(f"target_weights has symbols without prices: {list(unknown)}")
    if not target_weights.index.equals(index) and len(target_weights.index.difference(index)):
        raise DataError("target_weights has timestamps that are not bars of close_wide")
    aligned = target_weights.index.equals(index) and target_weights.columns.equals(columns)
    target_frame = target_weights if aligned else target_weights.reindex(index=index, columns=columns)
    target = np.array(target_frame.to_numpy(dtype=float), order="C")  # our own copy, C order: the walk reads rows
    check_targets(target, params, index)
    mark = np.array(close_wide.ffill().to_numpy(dtype=float), order="C")  # C order, as below
    _nan_to_zero(mark)
    reference = np.array(open_wide.to_numpy(dtype=float), order="C")  # a copy, in C order: the walk reads rows
    blocked = ~(np.isfinite(reference) & (reference > 0))
    np.copyto(reference[1:], mark[:-1], where=blocked[1:])  # value at the last mark
    np.copyto(reference[0], mark[0], where=blocked[0])
    volatility = None
    if volatility_wide is not None:
        volatility = np.nan_to_num(volatility_wide.reindex(index=index, columns=columns).to_numpy(dtype=float))
    funding = None
    if funding_wide is not None:
        if params.market != "perp":
            raise DataError("funding_wide is only meaningful for backtest.market = 'perp'")
        funding = funding_per_unit(funding_wide, index, columns, reference)
    is_decision_row = np.isfinite(target).any(axis=1)
    _nan_to_zero(target)
    return AlignedFrames(
        mark=mark, reference=reference, tradeable=(~blocked).astype(float), target=target,
        is_decision_row=is_decision_row, volatility=volatility, funding_per_unit=funding,
        wants_position=np.asarray(target.any(axis=1), dtype=bool),
        last_close_bar=last_close_bar(close_wide.to_numpy(dtype=float)), marks_non_negative=not (mark < 0).any(),
    )  # fmt: skip


def _nan_to_zero(values: np.ndarray) -> None:
    """``np.nan_to_num`` in place (NaN -> 0, +-inf -> the largest finite), with a cheap path when nothing is inf."""
    np.copyto(values, 0.0, where=np.isnan(values))
    if np.isinf(values).any():
        np.nan_to_num(values, copy=False)


def schedule(frames: AlignedFrames, params: BacktestParams) -> SimInputs:
    """The decision schedule (``rebalance_every_bars``) and slippage (fixed + volatility-scaled) of ``params``."""
    n_bars, n_assets = frames.mark.shape
    slip_frac = np.broadcast_to(np.full(n_assets, params.slippage_bps / BPS_PER_UNIT), (n_bars, n_assets))
    if frames.volatility is not None and params.slippage_vol_mult > 0:
        slip_frac = slip_frac.copy()
        slip_frac[1:] += params.slippage_vol_mult * frames.volatility[:-1]
    has_decision = np.zeros(n_bars, dtype=bool)
    on_schedule = np.arange(n_bars - 1) % params.rebalance_every_bars == 0
    has_decision[1:] = frames.is_decision_row[:-1] & on_schedule
    return SimInputs(
        mark=frames.mark, reference=frames.reference, tradeable=frames.tradeable, target=frames.target,
        has_decision=has_decision, slip_frac=slip_frac, funding_per_unit=frames.funding_per_unit,
        wants_position=frames.wants_position, last_close_bar=frames.last_close_bar,
        marks_non_negative=frames.marks_non_negative,
    )  # fmt: skip


def last_close_bar(close: np.ndarray) -> np.ndarray:
    """Per column: the position of the last finite close, -1 for a column without any."""
    has_close = np.isfinite(close)
    return np.where(has_close.any(axis=0), len(close) - 1 - np.argmax(has_close[::-1], axis=0), -1)


def check_targets(target: np.ndarray, params: BacktestParams, index: pd.Index) -> None:
    if np.isinf(target).any():
        raise DataError("target_weights contains inf")
    if params.market != "spot":
        return
    if (target < 0).any():
        row = int(np.flatnonzero((target < 0).any(axis=1))[0])
        raise DataError(f"spot target_weights must be >= 0; negative weight at {index[row]}")
    over = np.nansum(target, axis=1) > 1.0 + WEIGHT_SUM_TOLERANCE
    if over.any():
        row = index[int(np.argmax(over))]
        raise DataError(f"spot target_weights must sum to <= 1 (no leverage); row {row}")


def funding_per_unit(
    funding_wide: pd.DataFrame, index: pd.Index, columns: pd.Index, funding_price: np.ndarray
) -> np.ndarray:
    """Quote paid per unit held during each bar: sum of rates settled in the bar x the bar's open.

    Settlements outside [first open, last open + bar length) are ignored; the bar length is the
    smallest step of the index, so a run on truncated data charges the same settlements.
    """
    unknown = funding_wide.columns.difference(columns)
    if len(unknown):
        raise DataError(f"funding_wide has symbols without prices: {list(unknown)}")
    bar_opens = np.asarray(index)
    bar_length = np.diff(bar_opens).min() if len(bar_opens) > 1 else 1
    settled = np.asarray(funding_wide.index)
    bar = np.searchsorted(bar_opens, settled, side="right") - 1
    inside = (bar >= 0) & (settled < bar_opens[np.maximum(bar, 0)] + bar_length)
    rates = np.zeros(funding_price.shape)
    col_pos = columns.get_indexer(funding_wide.columns)
    values = np.nan_to_num(funding_wide.to_numpy(dtype=float))
    for source_col, target_col in enumerate(col_pos):
        np.add.at(rates[:, target_col], bar[inside], values[inside, source_col])
    return rates * funding_price

"""Pure: combine base signals into one score per asset and bar, keeping each signal's contribution.

Methods (``EnsembleParams.method``):

- ``equal_weight``: the mean of the normalized base signals;
- ``rank_average``: per bar, each signal is ranked across the assets that have it and scaled to
  [-1, 1] (lowest -1, highest +1), then the ranks are averaged;
- ``adaptive_ic``: signals weighted by their trailing information coefficient (IC). The IC known at the
  close of bar t pairs the signal at t-h with the return from the close of t-h to the close of t
  (both complete at t), so weights at t use nothing after t. Negative ICs are floored at ``ic_floor``
  and weights normalized to a sum of absolute values of 1.

An asset gets a score at bar t only when every used signal is defined for it there. Contributions
are weight x signal value (or rank), so they sum exactly to the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.research.ensemble_params import EnsembleParams


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsembleResult:
    """``scores`` (time x symbol) = sum over signals of ``contributions[signal]`` (time x symbol);
    ``signal_weights`` (time x signal) is the weight each signal got at each bar."""

    scores: pd.DataFrame
    contributions: dict[str, pd.DataFrame]
    signal_weights: pd.DataFrame


def compute_ensemble(
    signal_panel: dict[str, pd.DataFrame],
    close_wide: pd.DataFrame,
    params: EnsembleParams,
    *,
    eligible: pd.DataFrame | None = None,
) -> EnsembleResult:
    """Combine ``params.signals`` from ``signal_panel`` (signal -> time x symbol) into scores.

    ``close_wide`` (same index and symbols) gives the realized returns for ``adaptive_ic``.
    ``eligible`` (bool, same shape) restricts ranks, ICs and scores to the point-in-time universe;
    ineligible cells get NaN scores.

    Raises:
        DataError: a signal is missing from the panel, or the frames are not aligned.
    """
    values = _aligned_signals(signal_panel, close_wide, params.signals, eligible)
    index, columns = close_wide.index, list(values[params.signals[0]].columns)
    if params.method == "rank_average":
        values = {name: cross_sectional_rank(frame) for name, frame in values.items()}
    if params.method == "adaptive_ic":
        weights = _adaptive_weights(values, close_wide.loc[:, columns], params)
    else:
        weights = pd.DataFrame(1.0 / len(values), index=index, columns=list(values))
    contributions = {name: frame.mul(weights[name], axis=0) for name, frame in values.items()}
    del values
    # The sum over a stacked signal axis, without the stack (memory): numpy's sum starts from its
    # identity +0.0 (so an all -0.0 cell sums to +0.0) and adds the signals in order.
    total = np.zeros((len(index), len(columns)))
    for frame in contributions.values():
        np.add(total, frame.to_numpy(), out=total)
    scores = pd.DataFrame(total, index=index, columns=columns)
    return EnsembleResult(scores=scores, contributions=contributions, signal_weights=weights)


def _aligned_signals(
    signal_panel: dict[str, pd.DataFrame],
    close_wide: pd.DataFrame,
    names: tuple[str, ...],
    eligible: pd.DataFrame | None,
) -> dict[str, pd.DataFrame]:
    missing = [name for name in names if name not in signal_panel]
    if missing:
        raise DataError(
            f"signal panel lacks {missing} (has {sorted(signal_panel)}); compute it with lib.research.signals"
        )
    columns = list(signal_panel[names[0]].columns)
    frames = [signal_panel[name] for name in names] + [close_wide]
    if eligible is not None:
        frames.append(eligible)
    for frame in frames:
        if not frame.index.equals(close_wide.index) or set(frame.columns) != set(columns):
            raise DataError(
                "ensemble inputs must share one time index and symbol set "
                "(signal panel frames, close_wide, eligible)"
            )
    mask = None if eligible is None else eligible.loc[:, columns].astype(bool)
    aligned = {}
    for name in names:  # one signal at a time: fewer full-panel copies alive at once (memory)
        frame = signal_panel[name].loc[:, columns].astype("float64")
        aligned[name] = frame if mask is None else frame.where(mask)
    return aligned


def cross_sectional_rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row, rank the non-NaN values and scale to [-1, 1] (ties share their average rank).

    A row with one valid value scores 0 for it. Only that row's values matter: causal by construction.
    """
    ranks = frame.rank(axis=1, method="average")
    count = frame.notna().sum(axis=1)
    scaled = (ranks - 1.0).mul(2.0).div((count - 1).where(count > 1), axis=0) - 1.0
    single = frame.notna().to_numpy() & (count.to_numpy() == 1)[:, None]
    return scaled.mask(single, 0.0)


def _adaptive_weights(
    values: dict[str, pd.DataFrame], close_wide: pd.DataFrame, params: EnsembleParams
) -> pd.DataFrame:
    """Time x signal weights from the trailing IC, floored and normalized; fallback where none is usable."""
    horizon = params.ic_horizon_bars
    log_close = np.log(close_wide.where(close_wide > 0))
    realized_return = log_close - log_close.shift(horizon)  # complete at the close of t
    ic = pd.DataFrame(
        {name: trailing_ic(frame.shift(horizon), realized_return, params) for name, frame in values.items()},
        index=close_wide.index,
    )
    floored = ic.fillna(0.0).clip(lower=params.ic_floor)
    total = floored.abs().sum(axis=1)
    weights = floored.div(total.where(total > 0), axis=0)
    fallback = 1.0 / len(values) if params.ic_fallback == "equal_weight" else 0.0
    return weights.fillna(fallback)


def trailing_ic(
    past_signal: pd.DataFrame, realized_return: pd.DataFrame, params: EnsembleParams
) -> pd.Series:
    """IC series known at each bar: correlation of ``past_signal`` (signal at t-h, already shifted)
    with ``realized_return`` (t-h -> t), over the trailing ``ic_window_bars`` (vectorized)."""
    if params.ic_method == "pearson_time_series":
        per_asset = past_signal.rolling(params.ic_window_bars, min_periods=params.ic_min_bars).corr(
            realized_return
        )
        return per_asset.where(np.isfinite(per_asset)).mean(axis=1)
    joint = past_signal.notna() & realized_return.notna()
    per_bar = cross_sectional_correlation(
        past_signal.where(joint).rank(axis=1),
        realized_return.where(joint).rank(axis=1),
        min_assets=params.ic_min_assets,
    )
    return per_bar.rolling(params.ic_window_bars, min_periods=params.ic_min_bars).mean()


def cross_sectional_correlation(left: pd.DataFrame, right: pd.DataFrame, *, min_assets: int) -> pd.Series:
    """Per-row Pearson correlation over the assets valid in both frames (NaN if fewer than
    ``min_assets`` or a side is constant). Pass ``frame.rank(axis=1)`` for Spearman."""
    valid = (left.notna() & right.notna()).to_numpy()
    count = valid.sum(axis=1)
    x = np.where(valid, left.to_numpy(dtype="float64"), 0.0)
    y = np.where(valid, right.to_numpy(dtype="float64"), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(valid, x - x.sum(axis=1, keepdims=True) / count[:, None], 0.0)
        y = np.where(valid, y - y.sum(axis=1, keepdims=True) / count[:, None], 0.0)
        var_x, var_y = (x * x).sum(axis=1), (y * y).sum(axis=1)
        correlation = (x * y).sum(axis=1) / np.sqrt(var_x * var_y)
    usable = (count >= min_assets) & (var_x > 0) & (var_y > 0)
    return pd.Series(np.where(usable, correlation, np.nan), index=left.index)

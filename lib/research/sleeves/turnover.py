"""Pure: turnover control: the targets actually traded, given the raw targets and the previous targets.

Why: on daily bars a book that chases every small change of its raw weights trades ~60x a year and pays
more in fees and slippage than the re-weighting earns. Rules, per bar t (``previous`` = targets of t-1):
- exit: a raw weight below ``min_weight_frac`` is 0, and a held name whose raw weight is 0 is sold in full;
- entry: a name not held whose raw weight is >= ``min_weight_frac`` is bought at its raw weight;
- band: a held name is re-sized only when |raw - previous| >= ``band_abs_frac`` + ``band_rel_frac`` x
  previous (no-trade band with a relative part, so big positions need big moves), else it keeps its
  previous weight (hysteresis: the weight does not follow the raw weight's noise);
- material change: without entries or exits, nothing is traded unless the re-sizings add up to at least
  ``min_rebalance_frac`` of the book (sum |change|);
- no leverage: if kept weights plus new ones sum above 1, the book is scaled down to 1.
Path-dependent but causal: t depends on raw targets <= t only. The same code runs in the backtest and in
compute_signals (over the whole history), so the live targets are the backtested ones.
"""

from __future__ import annotations

import numpy as np

from lib.research.sleeves.params import TurnoverParams

UNCHANGED, ENTRY, EXIT, RESIZED, KEPT_BY_BAND = 0, 1, 2, 3, 4
REASONS = {UNCHANGED: "unchanged", ENTRY: "entry", EXIT: "exit", RESIZED: "resized", KEPT_BY_BAND: "kept_by_band"}


def control_row(raw: np.ndarray, previous: np.ndarray, params: TurnoverParams) -> tuple[np.ndarray, np.ndarray]:
    """(targets, reason codes) of one bar; ``raw`` and ``previous`` are finite, >= 0, same shape."""
    wanted = np.where(raw >= params.min_weight_frac, raw, 0.0)
    held = previous > 0
    exits = held & (wanted == 0)
    entries = ~held & (wanted > 0)
    change = np.abs(wanted - previous)
    moves = held & ~exits & (change >= params.band_abs_frac + params.band_rel_frac * previous)
    kept = held & ~exits & ~moves
    reasons = np.full(raw.shape, UNCHANGED, dtype=np.int8)
    reasons[entries], reasons[exits], reasons[moves], reasons[kept & (change > 0)] = ENTRY, EXIT, RESIZED, KEPT_BY_BAND
    if not (entries.any() or exits.any()) and float(change[moves].sum()) < params.min_rebalance_frac:
        reasons[moves] = KEPT_BY_BAND
        return previous.copy(), reasons
    targets = np.where(kept, previous, wanted)
    total = float(targets.sum())
    if total > 1.0:
        targets = targets / total
    return targets, reasons


def control_turnover(
    raw: np.ndarray, params: TurnoverParams, *, compiled: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and reason codes for every bar of ``raw`` (time x asset, NaN = 0), starting from cash.
    ``compiled``: the loop runs in lib.research.sleeves.book_kernel (the same operations in the same order)."""
    clean = np.nan_to_num(np.clip(raw, 0.0, None), copy=False)  # one time x asset copy, not two
    if compiled:
        from lib.research.sleeves import book_kernel  # numba loads on first use

        return book_kernel.control_turnover(np.ascontiguousarray(clean, dtype=float), params.min_weight_frac,
                                            params.band_abs_frac, params.band_rel_frac, params.min_rebalance_frac)
    targets = np.zeros_like(clean)
    reasons = np.zeros(clean.shape, dtype=np.int8)
    previous = np.zeros(clean.shape[1])
    for row in range(clean.shape[0]):
        if not (clean[row].any() or previous.any()):
            continue  # flat and wanting nothing: stays flat
        previous, reasons[row] = control_row(clean[row], previous, params)
        targets[row] = previous
    return targets, reasons

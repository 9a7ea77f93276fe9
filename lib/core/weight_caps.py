"""Pure: the per-asset weight cap as the live rebalance applies it: an over-cap target is clipped, never halts.

One rule for live (lib/execution/risk_targets.py) and the backtest (lib/research/live_risk.py): a finite
target whose |weight| exceeds the cap by more than WEIGHT_TOLERANCE becomes +-cap (clipping toward zero only
removes exposure); anything else, NaN included (left for the risk verdict to refuse), is kept as it is.
"""

from __future__ import annotations

import math

WEIGHT_TOLERANCE = 1e-9  # a target of exactly the cap passes (as lib.execution.risk.WEIGHT_TOLERANCE)


def is_over_cap(weight: float, cap: float) -> bool:
    """True when ``weight`` is a finite number whose size the cap clips."""
    return math.isfinite(weight) and abs(weight) > cap + WEIGHT_TOLERANCE


def clip_to_cap(weight: float, cap: float) -> float:
    """``weight`` with its size limited to ``cap`` (sign kept); NaN and within-cap weights unchanged."""
    return math.copysign(cap, weight) if is_over_cap(weight, cap) else weight

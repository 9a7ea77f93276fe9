"""Pure: target weights clipped per asset to ``risk.max_asset_weight_frac`` before the plan is made.

A target over the cap used to halt the whole run (every exit included). Clipping it toward zero only removes
exposure, so it is safe: that asset gets the cap, the rest of the book trades, and each clip is reported as a
``RiskRejection`` (check ``asset_weight_clipped``) to journal and alert. A NaN weight is left for the risk
verdict to refuse. The rule itself is lib.core.weight_caps (the backtest applies the same one).
"""

from __future__ import annotations

from collections.abc import Mapping

from lib.core.weight_caps import clip_to_cap, is_over_cap
from lib.execution.risk import RiskLimits, RiskRejection

CLIPPED = "asset_weight_clipped"


def clip_target_weights(weights: Mapping[str, float],
                        limits: RiskLimits) -> tuple[dict[str, float], list[RiskRejection]]:
    """(weights with every |weight| above the cap set to +-cap, one rejection per clipped asset)."""
    cap = limits.max_asset_weight_frac
    clipped: dict[str, float] = {}
    rejections = []
    for symbol, weight in sorted(weights.items()):
        if isinstance(weight, float | int) and is_over_cap(weight, cap):
            clipped[symbol] = clip_to_cap(weight, cap)
            rejections.append(RiskRejection(check=CLIPPED, symbol=symbol,
                                            detail=f"target |weight| {abs(weight):.4f} > risk.max_asset_weight_frac "
                                                   f"{cap}: clipped to {clipped[symbol]:+.4f}"))
        else:
            clipped[symbol] = weight
    return clipped, rejections

"""Pure: the liquidation guard of perp shorts: every short whose 24 h liquidation probability is above
``risk.max_liquidation_prob_24h`` is cut to the size that meets it, and its reduction goes out first.

Two books are assessed with lib.core.short_margin (cross margin, margin balance = the account's ``cash_quote``,
see lib.execution.orders.compute_equity_quote): the one held now (a short near liquidation is reduced before
anything else is sent) and the target (a plan may not grow a short past the limit). The collateral that would
keep a short whole instead (``ShortMargin.collateral_needed_quote``) is reported with it: this branch has no
wallet transfer, so reducing is the action; a transfer path can use that number instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal

from lib.core.short_margin import ShortMargin, assess_shorts
from lib.core.venue import Holdings, MarketRules
from lib.execution.orders import OrderPlan, round_down_to_step
from lib.execution.risk import RiskLimits, RiskRejection

LIQUIDATION_RISK = "liquidation_risk"
GUARD_OFF = 1.0
"""``risk.max_liquidation_prob_24h = 1`` turns the guard off (every probability is <= 1)."""


def describe(short: ShortMargin, limit: float) -> str:
    return (f"short {short.quantity:g} @ {short.price:g}: 24 h liquidation probability "
            f"{short.liquidation_prob_24h:.4%} > risk.max_liquidation_prob_24h {limit:.4%} (liquidation price "
            f"{short.liquidation_price:g}, margin ratio {short.margin_ratio:.4f}, daily volatility "
            f"{short.daily_volatility:.4f}); cut to {short.safe_quantity:g} (or add "
            f"{short.collateral_needed_quote:.2f} collateral)")


def safe_weight(short: ShortMargin, sizing_quote: float, markets: Mapping[str, MarketRules]) -> float:
    """The target weight of the short cut to its safe size, rounded DOWN to the market's amount step (a
    rounded-up remainder would stay above the limit), a millionth of a step inside it so that the plan's own
    rounding of the difference cannot drop the last step."""
    rules = markets.get(short.symbol)
    quantity = short.safe_quantity
    if rules is not None:
        step = rules.amount_step * rules.contract_size
        quantity = float(round_down_to_step(Decimal(repr(quantity)), step)) if quantity > 0 else 0.0
        quantity = max(0.0, quantity - float(step) * 1e-6)
    return -quantity * short.price / sizing_quote


def guard_shorts(target_weights: Mapping[str, float], *, holdings: Holdings, prices: Mapping[str, float],
                 sizing_quote: float, daily_volatility: Mapping[str, float], limits: RiskLimits,
                 markets: Mapping[str, MarketRules] | None = None,
                 ) -> tuple[dict[str, float], list[ShortMargin], list[RiskRejection]]:
    """(targets with every unsafe short cut to its safe size, the held shorts assessed, one rejection per cut).

    Raises DataError (lib.core.short_margin) when a short has no price or no volatility forecast.
    """
    weights = dict(target_weights)
    limit = limits.max_liquidation_prob_24h
    if limit >= GUARD_OFF:
        return weights, [], []
    terms = {"max_probability": limit, "fallback_rate": limits.fallback_maintenance_rate}
    held = assess_shorts(holdings.amounts_base, prices, holdings.cash_quote, daily_volatility, **terms)
    target_amounts = {s: w * sizing_quote / prices[s] for s, w in weights.items()
                      if ":" in s and w < 0 and prices.get(s, 0) > 0 and math.isfinite(w)}
    planned = assess_shorts(target_amounts, prices, holdings.cash_quote, daily_volatility, **terms)
    floors: dict[str, tuple[float, str]] = {}  # symbol -> (the highest floor, why): one rejection per short
    for short, when in [(s, "held") for s in held] + [(s, "target") for s in planned]:
        floor = safe_weight(short, sizing_quote, markets or {})
        if short.breaches and weights.get(short.symbol, 0.0) < floor:
            why = floors.get(short.symbol, (floor, f"{when} {describe(short, limit)}"))[1]
            floors[short.symbol] = (max(floor, floors.get(short.symbol, (floor, ""))[0]), why)
    rejections = []
    for symbol, (floor, why) in sorted(floors.items()):
        weights[symbol] = floor
        rejections.append(RiskRejection(check=LIQUIDATION_RISK, symbol=symbol, detail=why))
    return weights, held, rejections


def reductions_first(plan: OrderPlan, symbols: frozenset[str]) -> OrderPlan:
    """The plan with the reduce-only orders of ``symbols`` (the guarded shorts) moved to the front."""
    first = tuple(o for o in plan.orders if o.symbol in symbols and o.reduce_only)
    moved = {id(o) for o in first}
    return OrderPlan(orders=first + tuple(o for o in plan.orders if id(o) not in moved), skipped=plan.skipped)

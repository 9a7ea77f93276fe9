"""Pure: the combined book with funding-carry on the two accounts (lib.research.carry.combined): targets.json's
weights split back into carry pairs and the directional spot part, and what of a coin's spot holding is a hedge.

A coin's spot weight is directional + carry spot leg; its perpetual is minus the carry leg. So per coin:
carry C = -perp weight, directional D = spot weight - C. A coin with a carry target or a held short is a PAIR
(``spot_weight`` = C, ``directional_weight`` = D); any other coin is SPOT-ONLY (no perp leg at all).

The hedge of a short is the spot amount above the coin's directional target amount, never the directional part:
``hedge_spot = max(spot - directional, 0)``. A directional shortfall (a buy not done) is under-investment, not a
hedge gap, so the hedge is floored at 0; a directional sale never takes the spot below ``directional + hedge``
because the pair's one spot order goes to exactly that (lib.execution.carry_legs.plan_pair).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal

from lib.core.errors import StateError
from lib.core.symbols import is_perpetual, to_perpetual, to_spot
from lib.core.venue import MarketRules, Side
from lib.execution.carry_legs import CarrySection, PairTarget, leg_order
from lib.execution.orders import PlannedOrder, SkippedOrder, round_down_to_step, to_decimal
from lib.execution.risk import RiskLimits, RiskRejection
from lib.execution.risk_targets import clip_target_weights

WEIGHT_TOLERANCE = 1e-9


def split_targets(weights: Mapping[str, float], *, held: Iterable[str], hold: Mapping[str, str],
                  limits: RiskLimits) -> tuple[dict[str, PairTarget], dict[str, PairTarget], list[RiskRejection]]:
    """(carry pairs, spot-only coins, cap clips) by spot symbol. Coins in ``hold`` are left out (kept as they are);
    held coins without a target are closed (a held perp makes its coin a pair). Each coin's total spot weight is
    clipped to risk.max_asset_weight_frac on its directional part first (the carry leg is capped with its pair by
    the carry risk pass). Raises StateError on weights that are no combined carry book (fail closed)."""
    for symbol, weight in weights.items():
        if not math.isfinite(weight) or (weight < 0 and not is_perpetual(symbol)) or (weight > 0 and
                                                                                       is_perpetual(symbol)):
            raise StateError(f"targets.json: {symbol} weight {weight}: spot weights must be >= 0, perps <= 0")
    orphans = sorted(s for s, w in weights.items() if is_perpetual(s) and w and to_spot(s) not in weights)
    if orphans:
        raise StateError(f"targets.json: perp legs without a spot weight: {', '.join(orphans)}")
    carry = {to_spot(s): -w for s, w in weights.items() if is_perpetual(s) and w}
    directional = {}
    for symbol, weight in weights.items():
        if is_perpetual(symbol):
            continue
        part = weight - carry.get(symbol, 0.0)
        if part < -WEIGHT_TOLERANCE:
            raise StateError(f"targets.json: {symbol} spot weight {weight} is below its carry leg {carry[symbol]}: "
                             "the short would not be hedged")
        directional[symbol] = max(part, 0.0)
    totals, clips = clip_target_weights({s: directional.get(s, 0.0) + carry.get(s, 0.0)
                                         for s in set(directional) | set(carry)}, limits)
    directional = {s: max(totals[s] - carry.get(s, 0.0), 0.0) if s in totals else w for s, w in directional.items()}
    held_spot = {to_spot(s) for s in held}
    held_perp = {to_spot(s) for s in held if is_perpetual(s)}
    pairs, spot_only = {}, {}
    for spot in sorted(set(directional) | set(carry) | held_spot):
        if spot in hold or to_perpetual(spot) in hold:
            continue
        target = PairTarget(spot_symbol=spot, perp_symbol=to_perpetual(spot), spot_weight=carry.get(spot, 0.0),
                            directional_weight=directional.get(spot, 0.0))
        if target.spot_weight > 0 or spot in held_perp:
            pairs[spot] = target
        elif target.directional_weight > 0 or spot in held_spot:
            spot_only[spot] = target
    return pairs, spot_only, clips


def directional_amount(target: PairTarget, *, sizing_quote: float, spot_price: float, step: Decimal) -> Decimal:
    """The directional part's spot amount: directional weight x equity / price, floored to the spot lot step."""
    if target.directional_weight <= 0:
        return Decimal(0)
    return round_down_to_step(to_decimal(target.directional_weight * sizing_quote / spot_price), step)


def hedge_spot(spot_held: Decimal, directional: Decimal) -> Decimal:
    """The spot amount that hedges the coin's short: what is held above the directional target, at least 0."""
    return max(spot_held - directional, Decimal(0))


def naked_short_quote(spot_held: Decimal, perp_held: Decimal, price: float) -> Decimal:
    """The part of a short that no spot of the coin covers at all (before this run's directional target is known
    to be held, only this is surely unhedged)."""
    return max(-(spot_held + perp_held), Decimal(0)) * Decimal(repr(price))


def spot_only_orders(target: PairTarget, *, spot_held: Decimal, directional: Decimal, prices: Mapping[str, float],
                     rules: Mapping[str, MarketRules], params: CarrySection, rebalance_id: str, prefix: str,
                     current_weight: float = 0.0) -> tuple[list[PlannedOrder], list[SkippedOrder]]:
    """A coin of the directional part alone (no short to hedge): one spot order to its directional amount."""
    delta = directional - spot_held
    if delta == 0:
        return [], []
    side: Side = "buy" if delta > 0 else "sell"
    size = abs(delta) if side == "buy" else min(abs(delta), spot_held)
    order = leg_order(target.spot_symbol, side, size, reduce_only=False, prices=prices, rules=rules, params=params,
                      rebalance_id=rebalance_id, prefix=prefix, target_weight=target.directional_weight,
                      current_weight=current_weight)
    return ([], [order]) if isinstance(order, SkippedOrder) else ([order], [])


def only_reducing(pairs: Mapping[str, PairTarget], spot_only: Mapping[str, PairTarget], *,
                  held: Mapping[str, Decimal], prices: Mapping[str, float], equity: float
                  ) -> tuple[dict[str, PairTarget], dict[str, PairTarget]]:
    """A refused combined book: no leg grows, exits still go. Each pair is capped at the short it holds (both legs),
    each coin's directional weight at what it holds above that short now (floored to its lot, it never buys)."""
    def now_weight(spot: str, short: Decimal) -> float:
        above = max(held.get(spot, Decimal(0)) - short, Decimal(0))
        return float(above) * prices[spot] / equity if above else 0.0

    capped = {}
    for spot, pair in pairs.items():
        short = -min(held.get(pair.perp_symbol, Decimal(0)), Decimal(0))
        cap = short if pair.max_amount_base is None else min(short, pair.max_amount_base)
        capped[spot] = replace(pair, max_amount_base=cap,
                               directional_weight=min(pair.directional_weight, now_weight(spot, short)))
    alone = {s: replace(p, directional_weight=min(p.directional_weight, now_weight(s, Decimal(0))))
             for s, p in spot_only.items()}
    return capped, alone


def sales_first(spot_only: Mapping[str, PairTarget], *, held: Mapping[str, Decimal], prices: Mapping[str, float],
                equity: float) -> tuple[list[PairTarget], list[PairTarget]]:
    """The directional-only coins to sell (traded before the collateral and the pairs: they free spot cash) and
    the rest (traded last), each in symbol order."""
    sells = [p for s, p in sorted(spot_only.items())
             if float(held.get(s, Decimal(0))) * prices[s] > p.directional_weight * equity]
    return sells, [p for s, p in sorted(spot_only.items()) if p not in sells]

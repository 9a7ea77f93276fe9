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
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal

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


CASH_SHORT = "cash_short"
"""``risk_rejected`` reason: the spot wallet cannot pay every planned buy and the collateral; directional buys
scaled down."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CoinCash:
    """One coin's spot order in a combined run, in quote: ``sale`` (what a sale brings), ``carry_buy`` and
    ``directional_buy`` (what each part of a buy costs, at the reference price); ``haircut``: the taker fee plus
    the slippage allowance the spot book reserves on every fill (a fraction of the notional)."""

    symbol: str
    sale: Decimal = Decimal(0)
    carry_buy: Decimal = Decimal(0)
    directional_buy: Decimal = Decimal(0)
    haircut: Decimal = Decimal(0)


KEPT_CARRY, SCALED_DIRECTIONAL = "carry buys and collateral", "directional buys"  # the combined book's parts


@dataclass(frozen=True, slots=True, kw_only=True)
class CashFit:
    """The spot wallet over one run: ``available`` = free cash + sales after the haircut + collateral returned;
    ``committed`` = what is paid first and never scaled (combined book: the carry buys with the haircut + the
    collateral sent: the pairs keep priority); ``directional`` = what is scaled, each part multiplied by ``scale``
    (combined book: the directional buys with the haircut; standalone carry book: the pairs' growth, its spot buys
    with the haircut and its collateral). ``kept`` / ``scaled`` name the two parts in ``describe``."""

    available: Decimal
    committed: Decimal
    directional: Decimal
    scale: Decimal
    kept: str = KEPT_CARRY
    scaled: str = SCALED_DIRECTIONAL

    @property
    def shortfall(self) -> Decimal:
        """What the plan needs beyond the cash (0 when it fits)."""
        return max(self.committed + self.directional - self.available, Decimal(0))

    @property
    def uncovered(self) -> Decimal:
        """What even the part paid first needs beyond the cash (the scaled part cannot make up for it)."""
        return max(self.committed - self.available, Decimal(0))

    def describe(self) -> str:
        alone = "the carry part alone is" if self.kept == KEPT_CARRY else f"{self.kept} alone are"
        return (f"spot wallet short of {self.shortfall:.2f} quote: available {self.available:.2f} (free cash + sales "
                f"+ collateral returned, less fees and slippage allowance), {self.kept} "
                f"{self.committed:.2f} first, {self.scaled} {self.directional:.2f} scaled by {self.scale:.4f}"
                + (f"; {alone} {self.uncovered:.2f} short" if self.uncovered > 0 else ""))


def buy_parts(order_side: str, amount: Decimal, *, spot_held: Decimal, short_held: Decimal,
              directional: Decimal) -> tuple[Decimal, Decimal]:
    """(carry part, directional part) in base units of a coin's one spot order when it buys ``amount``: the
    directional part is what the directional target grows above the spot held beyond the short now (at most the
    buy), the carry part the rest. A sale has no buy part: (0, 0)."""
    if order_side != "buy" or amount <= 0:
        return Decimal(0), Decimal(0)
    directional_now = max(spot_held - short_held, Decimal(0))
    part = min(max(directional - directional_now, Decimal(0)), amount)
    return amount - part, part


def fit_cash(coins: Iterable[CoinCash], *, spot_cash: Decimal, to_futures: Decimal,
             scaled_collateral: Decimal = Decimal(0), kept: str = KEPT_CARRY,
             scaled: str = SCALED_DIRECTIONAL) -> CashFit:
    """The scale of the scaled part (each coin's ``directional_buy`` and ``scaled_collateral``) that makes the run's
    spot buys and its collateral transfer fit the spot wallet's free cash after the run's sales (``to_futures`` < 0:
    collateral comes back). Sales are never scaled; the carry buys and the rest of the collateral are paid first;
    ``scale`` = 1 when everything fits, 0 when nothing is left for the scaled part, else the cash left over its cost,
    floored at 1e-12 (a scaled buy then fits). ``scaled_collateral``: the part of ``to_futures`` that grows with the
    scaled buys (a standalone carry book's pairs: their growth's collateral; 0 for the combined book)."""
    coins = list(coins)
    for coin in coins:
        values = (coin.sale, coin.carry_buy, coin.directional_buy, coin.haircut)
        if any(not v.is_finite() or v < 0 for v in values) or coin.haircut >= 1:
            raise StateError(f"{coin.symbol}: cash of its order not finite or negative ({values})")
    if not (spot_cash.is_finite() and to_futures.is_finite() and scaled_collateral.is_finite()):
        raise StateError(f"spot cash {spot_cash} / collateral transfer {to_futures} not finite")
    if not Decimal(0) <= scaled_collateral <= max(to_futures, Decimal(0)):
        raise StateError(f"scaled collateral {scaled_collateral} outside the transfer {to_futures}")
    available = spot_cash + max(-to_futures, Decimal(0)) + sum(
        (c.sale * (1 - c.haircut) for c in coins), Decimal(0))
    committed = max(to_futures, Decimal(0)) - scaled_collateral + sum(
        (c.carry_buy * (1 + c.haircut) for c in coins), Decimal(0))
    directional = scaled_collateral + sum((c.directional_buy * (1 + c.haircut) for c in coins), Decimal(0))
    scale = Decimal(1)
    if committed + directional > available:
        left = available - committed
        scale = (left / directional).quantize(Decimal("1e-12"), rounding=ROUND_FLOOR) if left > 0 and directional \
            else Decimal(0)
    return CashFit(available=available, committed=committed, directional=directional, scale=min(scale, Decimal(1)),
                   kept=kept, scaled=scaled)


def scaled_directional(target: PairTarget, *, directional: Decimal, buy_part: Decimal, scale: Decimal,
                       price: float, equity: float) -> PairTarget:
    """The coin with its directional buy multiplied by ``scale``: its directional amount less (1 - scale) x the
    directional part of its buy, as a weight of ``equity`` (never below 0; a coin that buys nothing is unchanged)."""
    if buy_part <= 0 or scale >= 1:
        return target
    amount = max(directional - (1 - scale) * buy_part, Decimal(0))
    weight = float(amount) * price / equity
    if not (math.isfinite(weight) and weight >= 0):
        raise StateError(f"{target.spot_symbol}: scaled directional weight {weight}")
    return replace(target, directional_weight=min(weight, target.directional_weight))


def pair_growth(amount: Decimal, short_held: Decimal) -> Decimal:
    """A pair's new exposure this run, per leg: its planned amount above the short it holds (0 when it shrinks)."""
    return max(amount - short_held, Decimal(0))


def scaled_pair(target: PairTarget, *, amount: Decimal, short_held: Decimal, scale: Decimal, step: Decimal,
                price: float, equity: float) -> PairTarget:
    """A standalone carry pair with its growth multiplied by ``scale``: both legs to short held + scale x growth,
    floored to the pair's common lot ``step`` (so the legs stay equal) but never below the short held, as a weight
    of ``equity`` and a cap on each leg (``max_amount_base``). A pair that does not grow, or a scale of 1, is
    unchanged (the same object)."""
    growth = pair_growth(amount, short_held)
    if growth <= 0 or scale >= 1:
        return target
    scaled = max(round_down_to_step(short_held + max(scale, Decimal(0)) * growth, step), short_held)  # never shrinks
    weight = float(scaled) * price / equity
    if not (math.isfinite(weight) and weight >= 0):
        raise StateError(f"{target.spot_symbol}: scaled carry weight {weight}")
    cap = scaled if target.max_amount_base is None else min(scaled, target.max_amount_base)
    return replace(target, spot_weight=min(weight, target.spot_weight), max_amount_base=cap)

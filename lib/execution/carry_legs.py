"""Pure: the two legs of a funding-carry pair (spot long + USD-M short of the same base amount), the leg-mismatch
rule, and the collateral the short legs need; Decimal amounts on both markets' lot grids, deterministic ids.

Order of the legs: the perpetual leg is sent first, the spot leg second, one pair at a time (exits too). Why:
- the perp leg is the one the exchange is likelier to refuse (margin, leverage bracket, reduce-only); refused
  first, nothing has to be unwound;
- a perp leg alone is the cheaper one to unwind (USD-M taker 4-5 bps against spot 10 bps; no fee charged in
  the coin, no dust left);
- pair by pair, at most one pair is unhedged at any moment, and only for the time between two orders.
Mismatch rule (after a pair's legs): the net base amount (spot + signed perp) is what is unhedged. First retry
the missing leg for exactly that amount (hedge); if that cannot be done, unwind the filled leg's excess. Either
way the pair ends hedged or flat, and more than ``carry.max_unhedged_quote`` left over fails the run.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from lib.core.errors import ConfigError, DataError, StateError
from lib.core.perp_margin import check_leverage, tier_for
from lib.core.symbols import base_of, is_perpetual, to_perpetual
from lib.core.venue import MarketRules, Side
from lib.execution.exchange_section import ExchangeSection
from lib.execution.orders import PlannedOrder, SkippedOrder, client_order_id, round_down_to_step, to_decimal

WALLETS = ("spot", "futures")
CENT = Decimal("0.01")
SKIP_BELOW_MIN_LEG = "below carry leg minimum"


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrySection:
    """TOML section ``carry``: the funding-carry book traded on the spot and USD-M accounts (same API keys)."""

    futures_exchange_id: str = "binanceusdm"  # ccxt id of the USD-M client; exchange.id is the spot one
    leverage: int = 3  # short legs' initial margin = notional / leverage (within the Binance bracket)
    collateral_buffer_frac: float = 0.5  # futures wallet target = initial margin x (1 + this)
    max_unhedged_quote: Decimal = Decimal("25")  # never left unhedged above this after a run (else it fails)
    min_transfer_quote: Decimal = Decimal("5")  # smaller wallet top-ups/returns are not sent
    min_leg_quote: Decimal = Decimal("10")  # a leg smaller than this is not re-sized (no dust churn)
    max_funding_age_ms: int = 9 * 3_600_000  # compute_signals: the last funding print older than this = stale

    def __post_init__(self) -> None:
        if not self.futures_exchange_id or not self.futures_exchange_id.replace("_", "").isalnum():
            raise ConfigError(f"carry.futures_exchange_id must be a ccxt id, got {self.futures_exchange_id!r}")
        if not 1 <= self.leverage <= 20:
            raise ConfigError(f"carry.leverage must be in [1, 20], got {self.leverage}")
        if not 0 <= self.collateral_buffer_frac <= 5:
            raise ConfigError(f"carry.collateral_buffer_frac must be in [0, 5], got {self.collateral_buffer_frac}")
        for key in ("max_unhedged_quote", "min_transfer_quote", "min_leg_quote"):
            value = getattr(self, key)
            if not value.is_finite() or value < 0:
                raise ConfigError(f"carry.{key} must be >= 0, got {value}")
        if self.max_funding_age_ms < 3_600_000:
            raise ConfigError(f"carry.max_funding_age_ms must be >= 1 h, got {self.max_funding_age_ms}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PairTarget:
    """One coin of the carry book: its spot leg's weight (>= 0); the perp leg is the same amount short."""

    spot_symbol: str
    perp_symbol: str
    spot_weight: float
    max_amount_base: Decimal | None = None  # a risk refusal or cut: never more per leg than this (held / safe)
    directional_weight: float = 0.0  # combined book: the spot sleeves' part of the same coin (not a hedge)


def pair_targets(weights: Mapping[str, float]) -> list[PairTarget]:
    """targets.json weights -> pairs. Every spot weight needs its perp at exactly minus it (fail closed)."""
    pairs: list[PairTarget] = []
    for symbol in sorted(s for s in weights if not is_perpetual(s)):
        spot, perp = weights[symbol], weights.get(to_perpetual(symbol))
        if perp is None or not math.isfinite(spot) or spot < 0 or abs(spot + perp) > 1e-9:
            raise StateError(f"targets.json: carry pair {symbol} needs spot weight >= 0 and perp weight = -spot, "
                             f"got {spot} / {perp}")
        pairs.append(PairTarget(spot_symbol=symbol, perp_symbol=to_perpetual(symbol), spot_weight=spot))
    orphans = sorted(s for s in weights if is_perpetual(s) and s not in {p.perp_symbol for p in pairs})
    if orphans:
        raise StateError(f"targets.json: perp legs without a spot leg: {', '.join(orphans)}")
    return pairs


def common_step(first: Decimal, second: Decimal) -> Decimal:
    """The coarser of two lot steps when it is a multiple of the finer one: an amount on it fits both markets."""
    coarse, fine = max(first, second), min(first, second)
    if fine <= 0 or coarse % fine:
        raise DataError(f"lot steps {first} and {second} share no grid: the two legs cannot be equal")
    return coarse


def pair_amount(target: PairTarget, *, sizing_quote: float, spot_price: float, step: Decimal) -> Decimal:
    """Base amount each leg should hold: spot weight x sizing equity / spot price, floored to the common step."""
    if not (math.isfinite(sizing_quote) and sizing_quote > 0 and math.isfinite(spot_price) and spot_price > 0):
        raise DataError(f"{target.spot_symbol}: cannot size the pair (equity {sizing_quote}, price {spot_price})")
    if target.spot_weight == 0:
        return Decimal(0)
    amount = round_down_to_step(to_decimal(target.spot_weight * sizing_quote / spot_price), step)
    return amount if target.max_amount_base is None else min(amount, target.max_amount_base)


def plan_pair(target: PairTarget, *, amount: Decimal, spot_held: Decimal, perp_held: Decimal,
              prices: Mapping[str, float], rules: Mapping[str, MarketRules], params: CarrySection,
              rebalance_id: str, prefix: str, current_weight: float = 0.0, directional_amount: Decimal = Decimal(0)
              ) -> tuple[list[PlannedOrder], list[SkippedOrder]]:
    """The orders taking the pair to ``amount`` per leg, perp leg first; small legs skipped (with the reason).
    ``directional_amount``: the combined book's directional spot target of the same coin: the spot account is
    taken to ``amount + directional_amount`` in one order (the hedge is what lies above the directional part).

    Raises:
        DataError: a long perp or a negative spot holding (not a carry book: a person must look).
    """
    if perp_held > 0 or spot_held < 0:
        raise DataError(f"{target.spot_symbol}: carry holds spot {spot_held} / perp {perp_held}; a long perp or a "
                        "short spot is not a carry pair")
    orders: list[PlannedOrder] = []
    skipped: list[SkippedOrder] = []
    weight = target.spot_weight
    if directional_amount < 0:
        raise DataError(f"{target.spot_symbol}: negative directional amount {directional_amount}")
    for symbol, delta, held, leg_weight in (
            (target.perp_symbol, -amount - perp_held, perp_held, -weight),
            (target.spot_symbol, amount + directional_amount - spot_held, spot_held,
             weight + target.directional_weight)):
        if delta == 0:
            continue
        side: Side = "buy" if delta > 0 else "sell"
        reduces = (held < 0 and side == "buy") or (held > 0 and side == "sell")
        size = min(abs(delta), abs(held)) if reduces else abs(delta)
        order = leg_order(symbol, side, size, reduce_only=reduces and is_perpetual(symbol), prices=prices,
                          rules=rules, params=params, rebalance_id=rebalance_id, prefix=prefix,
                          target_weight=leg_weight, current_weight=current_weight if symbol == target.spot_symbol
                          else -current_weight)
        if isinstance(order, SkippedOrder):
            skipped.append(order)
        else:
            orders.append(order)
    return orders, skipped


def leg_order(symbol: str, side: Side, size: Decimal, *, reduce_only: bool, prices: Mapping[str, float],
              rules: Mapping[str, MarketRules], params: CarrySection, rebalance_id: str, prefix: str,
              target_weight: float = 0.0, current_weight: float = 0.0,
              min_quote: Decimal | None = None) -> PlannedOrder | SkippedOrder:
    """One leg on its market's grid with its deterministic client id, or why it is not sent."""
    rule, price = rules.get(symbol), prices.get(symbol)
    if rule is None or price is None or not math.isfinite(price) or price <= 0:
        raise DataError(f"{symbol}: no market rules or price to plan a carry leg")
    amount = round_down_to_step(size, rule.amount_step)
    notional = amount * Decimal(repr(price))
    floor = max(rule.min_notional_quote, params.min_leg_quote if min_quote is None else min_quote)
    if amount == 0 or amount < rule.min_amount_base or notional < floor:
        return SkippedOrder(symbol=symbol, side=side, reason=SKIP_BELOW_MIN_LEG, target_weight=target_weight,
                            current_weight=current_weight,
                            detail=f"{amount} ({notional:.2f} quote) < min amount {rule.min_amount_base} / {floor}")
    return PlannedOrder(symbol=symbol, side=side, amount_base=amount, reference_price=price, notional_quote=notional,
                        reduce_only=reduce_only, target_weight=target_weight, current_weight=current_weight,
                        client_order_id=client_order_id(rebalance_id, symbol, side, amount, prefix=prefix,
                                                        reduce_only=reduce_only))


def unhedged_quote(spot_held: Decimal, perp_held: Decimal, price: float) -> Decimal:
    """|spot + signed perp| x price: the notional exposed to the coin's price."""
    return abs(spot_held + perp_held) * Decimal(repr(price))


def mismatch_orders(target: PairTarget, *, spot_held: Decimal, perp_held: Decimal, prices: Mapping[str, float],
                    rules: Mapping[str, MarketRules], params: CarrySection, rebalance_id: str, prefix: str
                    ) -> list[PlannedOrder]:
    """The fixes for an unhedged pair, best first: retry the missing leg for the net amount, else unwind the
    filled leg's excess. Fixes the markets cannot take (below their minimums) are left out; any size counts,
    however small, since it is smaller than a skipped re-size only when the limit allows it."""
    net = spot_held + perp_held
    if net == 0:
        return []
    if net > 0:  # spot long beyond the short: short more perp, else sell the spot excess
        candidates = [(target.perp_symbol, "sell", False), (target.spot_symbol, "sell", False)]
    else:  # short beyond the spot: buy the missing spot, else buy back the perp excess (reduce-only)
        candidates = [(target.spot_symbol, "buy", False), (target.perp_symbol, "buy", True)]
    fixes: list[PlannedOrder] = []
    for symbol, side, reduce_only in candidates:
        order = leg_order(symbol, side, abs(net), reduce_only=reduce_only, prices=prices, rules=rules, params=params,  # type: ignore[arg-type]
                          rebalance_id=f"{rebalance_id}-fix", prefix=prefix, min_quote=Decimal(0))
        if isinstance(order, PlannedOrder):
            fixes.append(order)
    return fixes


def collateral_needed(perp_notionals: Mapping[str, float], params: CarrySection) -> Decimal:
    """Futures wallet the short legs need: sum of notional / leverage (checked against each coin's Binance
    bracket, lib.core.perp_margin) x (1 + buffer), rounded up to the cent."""
    total = Decimal(0)
    for symbol, notional in sorted(perp_notionals.items()):
        if notional <= 0:
            continue
        base = base_of(symbol)
        check_leverage(base, notional, params.leverage)
        tier_for(base, notional)
        total += to_decimal(notional) / params.leverage
    return (total * (1 + Decimal(repr(params.collateral_buffer_frac)))).quantize(CENT, rounding=ROUND_CEILING)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferPlan:
    amount_quote: Decimal
    from_wallet: str
    to_wallet: str
    transfer_id: str


def plan_transfer(*, futures_balance_quote: Decimal, needed_quote: Decimal, spot_free_quote: Decimal,
                  params: CarrySection, rebalance_id: str, release_quote: Decimal = Decimal(0)) -> TransferPlan | None:
    """Top the futures wallet up to ``needed`` from spot (limited to spot's free cash); return an excess to spot
    only beyond ``needed`` x (1 + buffer) (hysteresis: no back and forth), unless the spot wallet is short of
    ``release_quote`` for this run's buys: then at least that much of the excess above ``needed`` comes back (at
    least carry.min_transfer_quote when the excess allows), never below ``needed``. Cents; below the minimum:
    nothing."""
    gap = needed_quote - futures_balance_quote
    if gap > 0:
        amount = min(gap.quantize(CENT, rounding=ROUND_CEILING), spot_free_quote.quantize(CENT, rounding=ROUND_FLOOR))
        direction = ("spot", "futures")
    else:
        slack = needed_quote * Decimal(repr(params.collateral_buffer_frac))
        amount = (-gap - slack).quantize(CENT, rounding=ROUND_FLOOR) if -gap > slack else Decimal(0)
        if release_quote > 0:  # cash the spot legs need now: the excess above ``needed`` is not kept idle
            wanted = max(release_quote.quantize(CENT, rounding=ROUND_CEILING), params.min_transfer_quote)
            amount = max(amount, min(wanted, (-gap).quantize(CENT, rounding=ROUND_FLOOR)))
        direction = ("futures", "spot")
    if amount <= 0 or amount < params.min_transfer_quote:
        return None
    return TransferPlan(amount_quote=amount, from_wallet=direction[0], to_wallet=direction[1],
                        transfer_id=transfer_id(rebalance_id, *direction, amount))


def transfer_id(rebalance_id: str, from_wallet: str, to_wallet: str, amount_quote: Decimal) -> str:
    """``tr-<hex>``: the same rebalance moving the same amount the same way gets the same id (a re-run finds it)."""
    if from_wallet not in WALLETS or to_wallet not in WALLETS or from_wallet == to_wallet:
        raise DataError(f"transfer {from_wallet} -> {to_wallet}: wallets must be two of {WALLETS}")
    content = "\x1f".join((rebalance_id, from_wallet, to_wallet, format(amount_quote.normalize(), "f")))
    return "tr-" + hashlib.sha256(content.encode()).hexdigest()[:24]


def futures_section(exchange: ExchangeSection, carry: CarrySection) -> ExchangeSection:
    """The USD-M account's section: same mode, keys, URL and limits; the futures id (simulated stays simulated)."""
    futures_id = exchange.id if exchange.id == "simulated" else carry.futures_exchange_id
    return replace(exchange, id=futures_id, market_type="swap")

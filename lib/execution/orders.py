"""Pure: targets x holdings x prices x market rules -> an OrderPlan of Decimal market orders.

Sends nothing. Every planned amount is a finite ``Decimal`` > 0 and a multiple of the market's amount step; a
spot sell never exceeds what is free (held minus what others' open orders lock) and spot buys never cost more
than the cash can pay (fees and a slippage allowance included). Anything too small to trade is skipped with a
recorded reason; anything that cannot be planned safely (a held asset without a price, NaN, an unsupported
market) raises ``DataError``.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from lib.core.errors import ConfigError, DataError
from lib.core.venue import Holdings, MarketRules, Side

CLIENT_ORDER_ID_MAX_CHARS = 32
"""Binance allows 36 (``^[.A-Z:/a-z0-9_-]{1,36}$``); 32 of ``[A-Za-z0-9-]`` fits every exchange we target."""
FLOAT_SIGNIFICANT_DIGITS = 12
"""A float quantity is snapped to 12 significant digits before flooring, so 0.29999999999999993 -> 0.3."""

SKIP_BAND = "within no-trade band"
SKIP_ROUNDS_TO_ZERO = "rounds to zero"
SKIP_MIN_AMOUNT = "below min amount"
SKIP_MIN_NOTIONAL = "below min notional"
SKIP_NO_CASH = "insufficient cash"
SKIP_MAX_AMOUNT = "clipped to max amount"
SKIP_LOCKED = "locked by open orders"

BAND_TOLERANCE = 1e-9
"""A weight difference equal to the band (up to float noise) trades: 0.30 -> 0.28 (band 0.02)."""

_PREFIX = re.compile(r"^[A-Za-z0-9]{1,8}$")
_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderParams:
    """TOML section ``orders``."""

    no_trade_band_frac: float = 0.02  # |target - current| weight below this is not traded
    min_order_notional_quote: Decimal = Decimal("0")  # our floor on top of the exchange's min notional
    client_order_id_prefix: str = "cb"
    slippage_allowance_bps: float = 25.0  # spot cash budget: assume fills this much worse than the last price
    exits_ignore_band: bool = True  # a symbol targeted to 0 is closed even when its weight is inside the band

    def __post_init__(self) -> None:
        if not 0 <= self.no_trade_band_frac < 1:
            raise ConfigError(f"orders.no_trade_band_frac must be in [0, 1), got {self.no_trade_band_frac}")
        if not self.min_order_notional_quote.is_finite() or self.min_order_notional_quote < 0:
            raise ConfigError(
                f"orders.min_order_notional_quote must be >= 0, got {self.min_order_notional_quote}")
        if not _PREFIX.match(self.client_order_id_prefix):
            raise ConfigError("orders.client_order_id_prefix must be 1-8 characters of [A-Za-z0-9], "
                              f"got {self.client_order_id_prefix!r}")
        if not 0 <= self.slippage_allowance_bps <= 1_000:
            raise ConfigError(
                f"orders.slippage_allowance_bps must be in [0, 1000], got {self.slippage_allowance_bps}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedOrder:
    """One market order to send. Construction refuses a NaN, zero or negative amount (the last guard)."""

    symbol: str
    side: Side
    amount_base: Decimal
    reference_price: float
    notional_quote: Decimal
    reduce_only: bool
    client_order_id: str
    target_weight: float
    current_weight: float

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise DataError(f"refusing order {self.symbol}: side {self.side!r} is not buy/sell")
        for name, value in (("amount_base", self.amount_base), ("notional_quote", self.notional_quote)):
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise DataError(
                    f"refusing order {self.symbol} {self.side}: {name} {value!r} is not a finite Decimal > 0")
        if not math.isfinite(self.reference_price) or self.reference_price <= 0:
            raise DataError(
                f"refusing order {self.symbol}: reference price {self.reference_price!r} is not > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedOrder:
    """A trade the targets asked for but that was not planned; ``reason`` is one of the ``SKIP_*`` strings."""

    symbol: str
    side: Side
    reason: str
    detail: str
    target_weight: float
    current_weight: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPlan:
    """Orders in sending order (risk-reducing legs, then sells, then buys) plus what was skipped and why."""

    orders: tuple[PlannedOrder, ...]
    skipped: tuple[SkippedOrder, ...]


@dataclass(frozen=True, slots=True)
class _Leg:
    symbol: str
    side: Side
    amount_base: Decimal  # before rounding
    reduce_only: bool
    target_weight: float
    current_weight: float
    price: float
    rules: MarketRules


# --- conversions ---------------------------------------------------------------------------------------


def to_decimal(value: float, *, significant_digits: int = FLOAT_SIGNIFICANT_DIGITS) -> Decimal:
    """A float quantity as a Decimal, rounded to ``significant_digits`` to drop binary noise.

    >>> to_decimal(0.1 + 0.2), to_decimal(0.29999999999999993)
    (Decimal('0.300000000000'), Decimal('0.300000000000'))
    """
    if isinstance(value, bool) or not math.isfinite(value):
        raise DataError(f"not a finite number: {value!r}")
    exact = Decimal(repr(float(value)))
    if exact == 0:
        return Decimal(0)
    quantum = Decimal(1).scaleb(exact.adjusted() - significant_digits + 1)
    return exact.quantize(quantum, rounding=ROUND_HALF_EVEN)


def round_down_to_step(amount: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` that is <= ``amount`` (0 for amounts below one step); exact."""
    if not step.is_finite() or step <= 0:
        raise DataError(f"amount step must be a finite Decimal > 0, got {step!r}")
    if not amount.is_finite():
        raise DataError(f"amount must be finite, got {amount!r}")
    if amount <= 0:
        return Decimal(0)
    return (amount // step) * step


# --- client order ids ----------------------------------------------------------------------------------


def client_order_id(rebalance_id: str, symbol: str, side: Side, amount_base: Decimal, *,
                    prefix: str = "cb", reduce_only: bool = False) -> str:
    """Deterministic id ``<prefix>-<hex digest>`` (<= 32 chars of ``[A-Za-z0-9-]``) of the run and the order.

    A re-run after a crash plans the same order with the same id, so it can be found with
    ``fetch_order_by_client_id`` instead of being sent twice. ``0.10`` and ``0.1`` give the same id.
    """
    if not _PREFIX.match(prefix):
        raise ConfigError(f"client order id prefix must be 1-8 characters of [A-Za-z0-9], got {prefix!r}")
    if not rebalance_id:
        raise DataError("client_order_id needs a non-empty rebalance_id")
    if not amount_base.is_finite() or amount_base <= 0:
        raise DataError(f"client_order_id: amount {amount_base!r} is not > 0")
    amount_text = format(amount_base.normalize(), "f")
    content = "\x1f".join((rebalance_id, symbol, side, amount_text, str(reduce_only)))
    digest = hashlib.sha256(content.encode()).hexdigest()
    return f"{prefix}-{digest[: CLIENT_ORDER_ID_MAX_CHARS - len(prefix) - 1]}"


# --- planning ------------------------------------------------------------------------------------------


def compute_equity_quote(holdings: Holdings, prices: Mapping[str, float]) -> float:
    """Account value: cash + spot amounts at ``prices``.

    Perp amounts add nothing: for a perp account ``cash_quote`` already is the margin balance (wallet +
    unrealized PnL, ccxt's ``total`` on Binance USD-M; lib.execution.paper reports the same).
    """
    _require_finite(holdings.cash_quote, "holdings cash_quote")
    equity = holdings.cash_quote
    for symbol, amount in holdings.amounts_base.items():
        _require_finite(amount, f"holdings amount of {symbol}")
        if amount != 0 and ":" not in symbol:
            equity += amount * _price_of(symbol, prices)
    return equity


def plan_orders(*, target_weights: Mapping[str, float], holdings: Holdings, prices: Mapping[str, float],
                markets: Mapping[str, MarketRules], equity_quote: float, params: OrderParams,
                rebalance_id: str) -> OrderPlan:
    """Market orders that move ``holdings`` toward ``target_weights`` (signed fractions of ``equity_quote``).

    Held symbols missing from the targets are targeted to 0, so ``target_weights={}`` flattens the book (dust
    below the exchange minimums stays and is listed in ``skipped``).
    """
    _require_finite(equity_quote, "equity_quote")
    if equity_quote <= 0:
        raise DataError(f"equity_quote must be > 0 to plan orders, got {equity_quote}")
    if not rebalance_id:
        raise DataError("plan_orders needs a non-empty rebalance_id")
    held_symbols = {symbol for symbol, amount in holdings.amounts_base.items() if amount != 0}
    legs: list[_Leg] = []
    skipped: list[SkippedOrder] = []
    for symbol in sorted(set(target_weights) | held_symbols):
        weight = target_weights.get(symbol, 0.0)
        held = holdings.amounts_base.get(symbol, 0.0)
        _require_finite(weight, f"target weight of {symbol}")
        _require_finite(held, f"holdings amount of {symbol}")
        if weight == 0 and held == 0:
            continue
        rules = markets.get(symbol)
        if rules is None:
            raise DataError(f"no market rules for {symbol} (target {weight}, held {held}); refusing to plan")
        price = _price_of(symbol, prices)
        _plan_symbol(symbol, weight, held, price, rules, equity_quote, params, legs, skipped,
                     free=holdings.free_of(symbol))
    orders = _round_legs([leg for leg in legs if leg.side == "sell" or leg.rules.is_perpetual],
                                       params, skipped)
    spot_buys = [leg for leg in legs if leg.side == "buy" and not leg.rules.is_perpetual]
    orders += _fit_spot_buys(spot_buys, orders, holdings.cash_quote, params, skipped)
    return _with_client_ids(orders, rebalance_id, params, skipped)


def _plan_symbol(symbol: str, weight: float, held: float, price: float, rules: MarketRules,
                 equity_quote: float, params: OrderParams, legs: list[_Leg],
                 skipped: list[SkippedOrder], *, free: float) -> None:
    """Append one symbol's legs: a spot buy/sell, or perp reduce and/or open legs (a flip is two legs); a spot
    sell is capped at ``free``, floored to the step (the exchange refuses to sell locked coins: SKIP_LOCKED)."""
    if rules.contract_size != 1:
        raise DataError(f"{symbol}: contract size {rules.contract_size} != 1 is not supported by the planner")
    if not rules.is_perpetual and (weight < 0 or held < 0):
        raise DataError(f"{symbol}: spot cannot be short (target {weight}, held {held})")
    current_weight = held * price / equity_quote
    delta_weight = weight - current_weight
    side: Side = "buy" if delta_weight > 0 else "sell"
    is_exit = weight == 0
    inside_band = abs(delta_weight) + BAND_TOLERANCE < params.no_trade_band_frac
    if inside_band and not (is_exit and params.exits_ignore_band):
        skipped.append(SkippedOrder(symbol=symbol, side=side, reason=SKIP_BAND, target_weight=weight,
                                    current_weight=current_weight,
                                    detail=f"|{delta_weight:.6f}| < band {params.no_trade_band_frac}"))
        return
    held_base = Decimal(repr(held))
    target_base = Decimal(0) if is_exit else to_decimal(weight * equity_quote / price)
    delta_base = target_base - held_base
    if delta_base == 0:
        return
    side = "buy" if delta_base > 0 else "sell"

    def leg(amount: Decimal, *, reduce_only: bool) -> _Leg:
        return _Leg(symbol, side, amount, reduce_only, weight, current_weight, price, rules)

    if not rules.is_perpetual:
        amount = min(abs(delta_base), held_base) if side == "sell" else delta_base
        if side == "sell" and _leaves_unsellable_rest(held_base, amount, price, rules, params):
            amount = held_base  # what stays could never be sold on its own (below the minimums): sell it now
        if side == "sell" and amount > Decimal(repr(free)):
            amount = _capped_at_free(amount, Decimal(repr(free)), rules.amount_step,
                                     lambda detail: skipped.append(SkippedOrder(
                                         symbol=symbol, side=side, reason=SKIP_LOCKED, detail=detail,
                                         target_weight=weight, current_weight=current_weight)))
            if amount == 0:
                return
        legs.append(leg(amount, reduce_only=False))
    elif held_base != 0 and (delta_base > 0) != (held_base > 0):  # moves the position toward zero
        legs.append(leg(min(abs(delta_base), abs(held_base)), reduce_only=True))
        if abs(delta_base) > abs(held_base):  # flips through zero: open the other side separately
            legs.append(leg(abs(delta_base) - abs(held_base), reduce_only=False))
    else:
        legs.append(leg(abs(delta_base), reduce_only=False))


def _capped_at_free(amount: Decimal, free: Decimal, step: Decimal, skip: Callable[[str], None]) -> Decimal:
    """The free part of a spot sell, floored to ``step``; the locked rest is recorded through ``skip``."""
    capped = round_down_to_step(max(free, Decimal(0)), step)
    skip(f"sell {amount} > free {free} (the rest is locked by open orders the bot did not place): "
         f"{'selling ' + str(capped) if capped > 0 else 'nothing to sell'}, the rest when it is free")
    return capped


def locked_exits_alert(skipped: Sequence[SkippedOrder]) -> str | None:
    """One alert for the exits (target 0: signal exit, drawdown flatten) that locked coins hold back, else None."""
    blocked = sorted({s.symbol for s in skipped if s.reason == SKIP_LOCKED and s.target_weight == 0})
    if not blocked:
        return None
    return ("coinbot: cannot fully exit " + ", ".join(blocked) + ": part of the coins is locked by open orders "
            "the bot did not place (only the free part is sold); cancel those orders or sell them by hand")


def _leaves_unsellable_rest(held: Decimal, sold: Decimal, price: float, rules: MarketRules,
                            params: OrderParams) -> bool:
    """A spot sell that leaves at least one lot, but less than the exchange's (or our) minimum order."""
    rest = round_down_to_step(held - round_down_to_step(sold, rules.amount_step), rules.amount_step)
    min_notional = max(rules.min_notional_quote, params.min_order_notional_quote)
    return rest > 0 and (rest < rules.min_amount_base or rest * Decimal(repr(price)) < min_notional)


def _round_leg(leg: _Leg, params: OrderParams, skipped: list[SkippedOrder]) -> tuple[Decimal, Decimal] | None:
    """(amount, notional) after the step and the exchange limits, or None with the reason recorded."""
    rules = leg.rules

    def skip(reason: str, detail: str) -> None:
        skipped.append(SkippedOrder(symbol=leg.symbol, side=leg.side, reason=reason, detail=detail,
                                    target_weight=leg.target_weight, current_weight=leg.current_weight))

    amount = round_down_to_step(leg.amount_base, rules.amount_step)
    if amount == 0:
        skip(SKIP_ROUNDS_TO_ZERO, f"{leg.amount_base} < step {rules.amount_step}")
        return None
    if rules.max_amount_base is not None and amount > rules.max_amount_base:
        capped = round_down_to_step(rules.max_amount_base, rules.amount_step)
        skip(SKIP_MAX_AMOUNT, f"{amount} > max {rules.max_amount_base}: sending {capped}, rest next run")
        amount = capped
    if amount < rules.min_amount_base or amount == 0:
        skip(SKIP_MIN_AMOUNT, f"{amount} < min amount {rules.min_amount_base}")
        return None
    notional = amount * Decimal(repr(leg.price))
    min_notional = max(rules.min_notional_quote, params.min_order_notional_quote)
    if notional < min_notional:
        skip(SKIP_MIN_NOTIONAL, f"{notional} < min notional {min_notional}")
        return None
    return amount, notional


def _round_legs(legs: list[_Leg], params: OrderParams,
                              skipped: list[SkippedOrder]) -> list[tuple[_Leg, Decimal, Decimal]]:
    rounded = ((leg, _round_leg(leg, params, skipped)) for leg in legs)
    return [(leg, *result) for leg, result in rounded if result is not None]


def _fit_spot_buys(legs: list[_Leg], planned: list[tuple[_Leg, Decimal, Decimal]], cash_quote: float,
                   params: OrderParams, skipped: list[SkippedOrder]) -> list[tuple[_Leg, Decimal, Decimal]]:
    """Round spot buys; scale them all down when fees + slippage allowance would exceed the cash budget.

    Budget = cash + spot sell proceeds after fees and allowance (sells are sent first).
    """
    allowance = Decimal(repr(params.slippage_allowance_bps)) / _BPS

    def haircut(leg: _Leg) -> Decimal:  # fee + allowance, as a fraction of notional
        return Decimal(repr(leg.rules.taker_fee_frac)) + allowance

    budget = Decimal(repr(cash_quote)) + sum(
        (notional * (1 - haircut(leg)) for leg, _, notional in planned
         if leg.side == "sell" and not leg.rules.is_perpetual), Decimal(0))
    buys = _round_legs(legs, params, skipped)
    total_cost = sum((notional * (1 + haircut(leg)) for leg, _, notional in buys), Decimal(0))
    if total_cost <= budget:
        return buys
    scale = Decimal(0)
    if budget > 0:
        scale = (budget / total_cost).quantize(Decimal("1e-12"), rounding=ROUND_FLOOR)
    if scale <= 0:
        skipped.extend(
            SkippedOrder(symbol=leg.symbol, side="buy", reason=SKIP_NO_CASH, detail=f"cash budget {budget}",
                         target_weight=leg.target_weight, current_weight=leg.current_weight)
            for leg, _, _ in buys)
        return []
    # Scale the rounded amounts (not the wishes): flooring again can only lower the total below the budget.
    scaled = [replace(leg, amount_base=amount * scale) for leg, amount, _ in buys]
    buys = _round_legs(scaled, params, skipped)
    total_cost = sum((notional * (1 + haircut(leg)) for leg, _, notional in buys), Decimal(0))
    if total_cost > budget:  # cannot happen: every step only goes down
        raise DataError(f"spot buys cost {total_cost} > cash budget {budget} after scaling by {scale}")
    return buys


def _with_client_ids(orders: list[tuple[_Leg, Decimal, Decimal]], rebalance_id: str, params: OrderParams,
                     skipped: list[SkippedOrder]) -> OrderPlan:
    planned = [
        PlannedOrder(symbol=leg.symbol, side=leg.side, amount_base=amount, reference_price=leg.price,
                     notional_quote=notional, reduce_only=leg.reduce_only, target_weight=leg.target_weight,
                     current_weight=leg.current_weight,
                     client_order_id=client_order_id(rebalance_id, leg.symbol, leg.side, amount,
                                                     prefix=params.client_order_id_prefix,
                                                     reduce_only=leg.reduce_only))
        for leg, amount, notional in orders
    ]
    planned.sort(key=lambda order: (not order.reduce_only, order.side != "sell", order.symbol))
    if len({order.client_order_id for order in planned}) != len(planned):
        raise DataError(f"duplicate client order ids in rebalance {rebalance_id}")
    return OrderPlan(orders=tuple(planned), skipped=tuple(skipped))


def _price_of(symbol: str, prices: Mapping[str, float]) -> float:
    price = prices.get(symbol)
    if price is None or isinstance(price, bool) or not math.isfinite(price) or price <= 0:
        raise DataError(f"no valid price for {symbol} (got {price!r}); refusing to plan without it")
    return float(price)


def _require_finite(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise DataError(f"{what} is not a finite number: {value!r}")

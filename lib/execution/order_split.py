"""Pure: risk-reducing orders above the fat-finger cap split into child orders under it.

A sell that only moves a position toward zero (lib.execution.risk.check_reduces_risk) cannot be a sizing bug
that adds risk, and blocking it keeps the book exposed: a regime flip to cash or a flatten must be able to exit
a position larger than ``risk.max_order_notional_quote``. Each child gets its own deterministic client id (the
parent's rebalance id + ``-c<i>of<n>``), so a re-run on the same book plans the same children and finds the
ones that filled; after a partial run the smaller position is split afresh.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

from lib.core.venue import Holdings, MarketRules
from lib.execution.orders import (
    SKIP_MIN_AMOUNT,
    SKIP_MIN_NOTIONAL,
    OrderPlan,
    PlannedOrder,
    SkippedOrder,
    client_order_id,
    round_down_to_step,
)
from lib.execution.risk import reducing_orders


def split_reducing_orders(plan: OrderPlan, *, holdings: Holdings, markets: Mapping[str, MarketRules],
                          max_order_notional_quote: Decimal, rebalance_id: str, prefix: str,
                          min_order_notional_quote: Decimal = Decimal(0)) -> OrderPlan:
    """``plan`` with every risk-reducing order above ``max_order_notional_quote`` replaced by its children.

    Children are equal amounts rounded down to the market's step (the last takes the remainder) and each is at
    most the cap at the order's reference price, and at least the minimum order: max(the exchange's min notional,
    ``min_order_notional_quote`` = orders.min_order_notional_quote) and the min amount. When equal children
    would be smaller than that, the children are as large as the cap allows and a remainder below the minimum
    stays held (a recorded skip: adding it to a child would pass the cap). An order that cannot be
    split into any acceptable child (the cap below the minimum) is kept whole: the fat-finger check then rejects
    it (fail closed).
    """
    reducing = {id(order) for order in reducing_orders(plan.orders, holdings)}
    orders: list[PlannedOrder] = []
    skipped = list(plan.skipped)
    for order in plan.orders:
        rules = markets.get(order.symbol)
        if id(order) in reducing and rules is not None and order.notional_quote > max_order_notional_quote:
            minimum = max(rules.min_notional_quote, min_order_notional_quote, Decimal(0))
            children = _children(order, rules, max_order_notional_quote, minimum, rebalance_id, prefix, skipped)
            orders += children or [order]
        else:
            orders.append(order)
    return OrderPlan(orders=tuple(orders), skipped=tuple(skipped))


def _children(order: PlannedOrder, rules: MarketRules, cap: Decimal, minimum: Decimal, rebalance_id: str,
              prefix: str, skipped: list[SkippedOrder]) -> list[PlannedOrder]:
    price = Decimal(repr(order.reference_price))

    def acceptable(amount: Decimal) -> bool:
        return amount >= rules.min_amount_base and amount * price >= minimum

    amounts, rest = _equal_amounts(order, cap, price, rules.amount_step), Decimal(0)
    if amounts and not all(acceptable(a) for a in amounts):
        amounts, rest = _capped_amounts(order.amount_base, cap, price, rules.amount_step)
        if amounts and rest > 0 and acceptable(rest):  # (merging it into a child would pass the cap: each is
            amounts, rest = [*amounts, rest], Decimal(0)  # the largest multiple of the step under it)
    if not amounts or not all(acceptable(a) for a in amounts):
        return []
    if rest > 0:  # below the minimum order and no room under the cap: it stays held, told why
        reason = SKIP_MIN_AMOUNT if rest < rules.min_amount_base else SKIP_MIN_NOTIONAL
        skipped.append(SkippedOrder(symbol=order.symbol, side=order.side, reason=reason,
                                    target_weight=order.target_weight, current_weight=order.current_weight,
                                    detail=f"split remainder {rest} ({rest * price} quote) < min order {minimum} "
                                           f"and adding it to a child would pass the cap {cap}: kept"))
    count = len(amounts)
    return [replace(order, amount_base=amount, notional_quote=amount * price,
                    client_order_id=client_order_id(f"{rebalance_id}-c{index}of{count}", order.symbol, order.side,
                                                    amount, prefix=prefix, reduce_only=order.reduce_only))
            for index, amount in enumerate(amounts, start=1)]


def _equal_amounts(order: PlannedOrder, cap: Decimal, price: Decimal, step: Decimal) -> list[Decimal]:
    """Equal children (the last takes the rounding remainder), the fewest whose largest is under the cap."""
    count = max(2, math.ceil(order.notional_quote / cap))
    for _ in range(3):  # rounding can leave the last child a few steps over the cap: one more child fixes it
        amounts = _amounts(order.amount_base, count, step)
        if amounts and max(amounts) * price <= cap:
            return amounts
        count += 1
    return []


def _capped_amounts(total: Decimal, cap: Decimal, price: Decimal, step: Decimal) -> tuple[list[Decimal], Decimal]:
    """As many children of the largest amount under the cap as ``total`` holds, and what is left over."""
    each = round_down_to_step(cap / price, step)
    if each <= 0:
        return [], total
    count = int(total // each)
    return [each] * count, total - each * count


def _amounts(total: Decimal, count: int, step: Decimal) -> list[Decimal]:
    """``count`` amounts, multiples of ``step``, summing to ``total`` (the last one takes the remainder)."""
    each = round_down_to_step(total / count, step)
    if each <= 0:
        return []
    last = total - each * (count - 1)
    return [each] * (count - 1) + [last]

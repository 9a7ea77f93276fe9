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
from lib.execution.orders import OrderPlan, PlannedOrder, client_order_id, round_down_to_step
from lib.execution.risk import reducing_orders


def split_reducing_orders(plan: OrderPlan, *, holdings: Holdings, markets: Mapping[str, MarketRules],
                          max_order_notional_quote: Decimal, rebalance_id: str, prefix: str) -> OrderPlan:
    """``plan`` with every risk-reducing order above ``max_order_notional_quote`` replaced by its children.

    Children are equal amounts rounded down to the market's step (the last takes the remainder) and each is at
    most the cap at the order's reference price. An order that cannot be split into children the exchange
    accepts (min amount / min notional) is kept whole: the fat-finger check then rejects it (fail closed).
    """
    reducing = {id(order) for order in reducing_orders(plan.orders, holdings)}
    orders: list[PlannedOrder] = []
    for order in plan.orders:
        rules = markets.get(order.symbol)
        if id(order) in reducing and rules is not None and order.notional_quote > max_order_notional_quote:
            orders += _children(order, rules, max_order_notional_quote, rebalance_id, prefix) or [order]
        else:
            orders.append(order)
    return OrderPlan(orders=tuple(orders), skipped=plan.skipped)


def _children(order: PlannedOrder, rules: MarketRules, cap: Decimal, rebalance_id: str,
              prefix: str) -> list[PlannedOrder]:
    price = Decimal(repr(order.reference_price))
    count = max(2, math.ceil(order.notional_quote / cap))
    for _ in range(3):  # rounding can leave the last child a few steps over the cap: one more child fixes it
        amounts = _amounts(order.amount_base, count, rules.amount_step)
        if amounts and max(amounts) * price <= cap:
            break
        count += 1
    else:
        return []
    minimum = max(rules.min_notional_quote, Decimal(0))
    if not amounts or any(a < rules.min_amount_base or a * price < minimum for a in amounts):
        return []
    return [replace(order, amount_base=amount, notional_quote=amount * price,
                    client_order_id=client_order_id(f"{rebalance_id}-c{index}of{count}", order.symbol, order.side,
                                                    amount, prefix=prefix, reduce_only=order.reduce_only))
            for index, amount in enumerate(amounts, start=1)]


def _amounts(total: Decimal, count: int, step: Decimal) -> list[Decimal]:
    """``count`` amounts, multiples of ``step``, summing to ``total`` (the last one takes the remainder)."""
    each = round_down_to_step(total / count, step)
    if each <= 0:
        return []
    last = total - each * (count - 1)
    return [each] * (count - 1) + [last]

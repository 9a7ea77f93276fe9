"""Edge: what one coin of the carry book would send now: its legs and their orders (the real run and the dry run
plan with this same code, so the dry run shows what the real run then sends).

A combined book's coin (lib.execution.carry_combo) without a carry target or a held short has its spot symbol only;
every other coin is a pair: perp leg first, the spot account taken to the carry amount plus the directional target.
"""

from __future__ import annotations

from decimal import Decimal

from lib.execution import carry_combo
from lib.execution.carry_legs import PairTarget, common_step, pair_amount, plan_pair
from lib.execution.carry_state import RunState
from lib.execution.orders import PlannedOrder, SkippedOrder


def traded_legs(state: RunState, pair: PairTarget, held: dict[str, Decimal]) -> set[str]:
    """The pair's symbols; a combined book's coin without a carry target or short has its spot symbol only."""
    if state.settings.combined and pair.spot_weight == 0 and not held.get(pair.perp_symbol):
        return {pair.spot_symbol}
    return {pair.spot_symbol, pair.perp_symbol}


def plan_coin(state: RunState, pair: PairTarget, held: dict[str, Decimal], prices: dict[str, float], equity: float
              ) -> tuple[Decimal, Decimal, list[PlannedOrder], list[SkippedOrder]]:
    """(carry amount per leg, directional spot amount, the orders, the skipped): both legs, or the spot alone."""
    settings, markets = state.settings, state.session.markets
    spot_held, perp_held = held.get(pair.spot_symbol, Decimal(0)), held.get(pair.perp_symbol, Decimal(0))
    price = prices[pair.spot_symbol]
    directional = carry_combo.directional_amount(pair, sizing_quote=equity, spot_price=price,
                                                 step=markets[pair.spot_symbol].amount_step)
    rebalance_id, prefix = state.run.rebalance_id, settings.orders.client_order_id_prefix
    current = float(spot_held) * price / equity
    if traded_legs(state, pair, held) == {pair.spot_symbol}:
        return Decimal(0), directional, *carry_combo.spot_only_orders(
            pair, spot_held=spot_held, directional=directional, prices=prices, rules=markets, params=settings.carry,
            rebalance_id=rebalance_id, prefix=prefix, current_weight=current)
    step = common_step(markets[pair.spot_symbol].amount_step, markets[pair.perp_symbol].amount_step)
    amount = pair_amount(pair, sizing_quote=equity, spot_price=price, step=step)
    orders, skipped = plan_pair(pair, amount=amount, spot_held=spot_held, perp_held=perp_held, prices=prices,
                                rules=markets, params=settings.carry, rebalance_id=rebalance_id, prefix=prefix,
                                current_weight=current, directional_amount=directional)
    return amount, directional, orders, skipped

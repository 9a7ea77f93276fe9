"""Edge: the carry run's pre-trade pass: per-asset cap, exposure and the hedged book's VaR/CVaR on the targets
(lib.execution.carry_risk), then the liquidation guard of the short legs: collateral from the spot wallet first
(journaled, idempotent, in the run's one transfer), else the pair is cut, both legs, and traded before the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from loguru import logger

from lib.core import errors
from lib.core.symbols import is_perpetual
from lib.execution import carry_risk, risk
from lib.execution.carry_legs import (
    PairTarget,
    TransferPlan,
    collateral_needed,
    common_step,
    pair_amount,
    plan_pair,
    plan_transfer,
)
from lib.execution.carry_risk import CarryCandles, CarryRisk, leg_closes
from lib.execution.carry_state import RunState, book_equity, journal_risk, live_prices, wallet_facts
from lib.execution.margin_guard import describe
from lib.execution.orders import PlannedOrder
from lib.execution.risk import RiskLimits, RiskRejection
from lib.execution.wallet_transfer import transfer_collateral


def pre_trade(state: RunState, pairs: dict[str, PairTarget], candles: CarryCandles) -> CarryRisk:
    """Asset cap, exposure and the hedged book's VaR/CVaR (lib.execution.carry_risk); journaled, one alert."""
    held, spot_cash, futures_balance = wallet_facts(state)
    prices = live_prices(state, {s for p in pairs.values() for s in (p.spot_symbol, p.perp_symbol)} | set(held))
    equity = book_equity(held, spot_cash, futures_balance, prices)
    current = {s: float(held.get(s, Decimal(0))) * prices[s] / equity for s in pairs}
    closes = leg_closes(candles, carry_risk.leg_weights(pairs)) if state.settings.risk.tail_risk_action != "off" \
        else {}
    spot_held = {s: held.get(s, Decimal(0)) for s in pairs}
    checked = carry_risk.check_targets(pairs, closes, state.settings.risk, current, spot_held)
    too_many = check_order_count(state, checked.pairs, held=held, prices=prices, equity=equity)
    if too_many:  # as for the spot book: only the risk-reducing orders go, then the run fails
        checked = CarryRisk(pairs=carry_risk.reduce_only(checked.pairs, spot_held), changed=checked.changed,
                            refusals=checked.refusals + tuple(too_many))
    journal_risk(state, [*checked.changed, *checked.refusals])
    return checked


def reduces(order: PlannedOrder) -> bool:
    """A carry leg that only makes a position smaller: a reduce-only perp buy, or a spot sale (spot legs are long
    only). Such an order is never blocked by a count or size cap (a flatten or a cut must go)."""
    return order.reduce_only or (not is_perpetual(order.symbol) and order.side == "sell")


def check_order_count(state: RunState, pairs: dict[str, PairTarget], *, held: dict[str, Decimal],
                      prices: dict[str, float], equity: float) -> list[RiskRejection]:
    """risk.max_orders_per_run over the orders of every pair that add risk (lib.execution.risk)."""
    markets, orders = state.session.markets, []
    for pair in pairs.values():
        step = common_step(markets[pair.spot_symbol].amount_step, markets[pair.perp_symbol].amount_step)
        amount = pair_amount(pair, sizing_quote=equity, spot_price=prices[pair.spot_symbol], step=step)
        orders += plan_pair(pair, amount=amount, spot_held=held.get(pair.spot_symbol, Decimal(0)),
                            perp_held=held.get(pair.perp_symbol, Decimal(0)), prices=prices, rules=markets,
                            params=state.settings.carry, rebalance_id=state.run.rebalance_id,
                            prefix=state.settings.orders.client_order_id_prefix)[0]
    return risk.check_order_count([o for o in orders if not reduces(o)], state.settings.risk)


@dataclass(frozen=True, slots=True)
class GuardPlan:
    """What the liquidation guard would do before any leg, from what the exchange holds now (nothing sent): the one
    collateral transfer (top-up to the short legs' initial margin + buffer, plus any guard top-up), the shorts over
    the limit that get collateral (journaled), and what the cut pass needs once the transfer has landed.
    ``unknown``: the risk could not be assessed (no transfer, every pair capped at what it holds)."""

    pairs: dict[str, PairTarget]
    futures_balance: Decimal
    needed: Decimal
    top_up: Decimal
    transfer: TransferPlan | None
    collateral_added: tuple[RiskRejection, ...] = ()
    holding: dict[str, Decimal] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    volatility: dict[str, float] = field(default_factory=dict)
    steps: dict[str, Decimal] = field(default_factory=dict)
    equity: float = 0.0
    guarded: bool = False  # a held or target short was assessed: the cut pass runs after the transfer
    unknown: RiskRejection | None = None

    def balance_after_transfer(self) -> Decimal:
        """The futures wallet once the planned transfer has landed (what the dry run assesses the cuts on)."""
        if self.transfer is None:
            return self.futures_balance
        sign = 1 if self.transfer.to_wallet == "futures" else -1
        return self.futures_balance + sign * self.transfer.amount_quote


def plan_collateral(state: RunState, pairs: dict[str, PairTarget], candles: CarryCandles, *,
                    spot_free: Decimal | None = None, release: Decimal = Decimal(0)) -> GuardPlan:
    """The guard's decision, nothing sent or journaled: a held short above risk.max_liquidation_prob_24h gets
    collateral from the spot wallet's free cash (in the same one transfer that tops the futures wallet up to the
    initial margin of max(held, target) short legs + buffer). A return of excess collateral that would put a short
    over the limit is not planned. ``spot_free``: the spot cash the transfer may take (default: the free cash now;
    the cash fit asks what the pairs need, lib.execution.carry_combo_cash). ``release``: what the spot wallet is short
    of for this run's buys (the cash fit's shortfall): the futures wallet's excess above the need pays it
    (lib.execution.carry_legs.plan_transfer), unless that would put a short over the limit."""
    held, spot_cash, futures_balance = wallet_facts(state)
    symbols = {s for p in pairs.values() for s in (p.spot_symbol, p.perp_symbol)} | set(held)
    prices = live_prices(state, symbols)
    equity = book_equity(held, spot_cash, futures_balance, prices)
    limits, carry = state.settings.risk, state.settings.carry
    notionals = {}
    for pair in pairs.values():
        target = pair.spot_weight * equity
        current = float(abs(held.get(pair.perp_symbol, Decimal(0)))) * prices[pair.perp_symbol]
        notionals[pair.perp_symbol] = max(target, current)
    needed = collateral_needed(notionals, carry)
    markets = state.session.markets
    steps = {s: common_step(markets[s].amount_step, markets[p.perp_symbol].amount_step) for s, p in pairs.items()}
    volatility: dict[str, float] = {}
    holding: dict[str, Decimal] = {}
    shorts = []
    if carry_risk.guard_on(limits):
        try:
            volatility = carry_risk.perp_volatility(leg_closes(candles, [s for s in symbols if is_perpetual(s)]))
            holding = carry_risk.would_hold(pairs, held, sizing_quote=equity, prices=prices, steps=steps)
            shorts = carry_risk.held_shorts(holding, prices, futures_balance, volatility, limits)
        except errors.CoinbotError as error:  # unknown risk: no transfer, nothing grows, exits go, the run fails
            return GuardPlan(pairs=carry_risk.reduce_only(pairs, {s: held.get(s, Decimal(0)) for s in pairs}),
                             futures_balance=futures_balance, needed=needed, top_up=Decimal(0), transfer=None,
                             unknown=carry_risk.unknown_liquidation_risk(error))
    top_up = carry_risk.guard_top_up(shorts, buffer_frac=carry.collateral_buffer_frac,
                                     min_quote=carry.min_transfer_quote)
    floor = max(needed, futures_balance + top_up) if top_up > 0 else needed  # no top-up: the usual hysteresis
    for cash_short in ((release, Decimal(0)) if release > 0 else (Decimal(0),)):  # the cash's return, else today's
        plan = plan_transfer(futures_balance_quote=futures_balance, needed_quote=floor,
                             spot_free_quote=spot_cash if spot_free is None else spot_free, params=carry,
                             rebalance_id=state.run.rebalance_id, release_quote=cash_short)
        if plan is None or plan.from_wallet != "futures" or not shorts or not any(
                s.breaches for s in carry_risk.held_shorts(holding, prices, futures_balance - plan.amount_quote,
                                                           volatility, limits)):
            break
        plan = None  # returning the excess would put a short over the limit: it stays as margin
    added = tuple(RiskRejection(
        check=carry_risk.COLLATERAL_ADDED, symbol=s.symbol,
        detail=f"{describe(s, limits.max_liquidation_prob_24h)}; adding collateral from the spot wallet "
               f"({'none free' if plan is None else plan.amount_quote})") for s in shorts if s.breaches) \
        if top_up > 0 else ()
    return GuardPlan(pairs=dict(pairs), futures_balance=futures_balance, needed=needed, top_up=top_up, transfer=plan,
                     collateral_added=added, holding=holding, prices=prices, volatility=volatility, steps=steps,
                     equity=equity, guarded=bool(shorts))


def cuts_at(plan: GuardPlan, limits: RiskLimits, futures_balance: Decimal) -> tuple[dict[str, PairTarget],
                                                                                    list[RiskRejection]]:
    """The pairs whose short is still above the limit at ``futures_balance`` (after the transfer), cut both legs:
    (the changed pairs, one rejection per cut)."""
    if not plan.guarded:
        return {}, []
    after = carry_risk.held_shorts(plan.holding, plan.prices, futures_balance, plan.volatility, limits)
    cut, cuts = carry_risk.cut_unsafe(plan.pairs, after, prices=plan.prices, sizing_quote=plan.equity,
                                      steps=plan.steps, limit=limits.max_liquidation_prob_24h)
    return {s: p for s, p in cut.items() if p != plan.pairs[s]}, cuts


def move_collateral(state: RunState, pairs: dict[str, PairTarget], candles: CarryCandles, *,
                    release: Decimal = Decimal(0)) -> dict[str, PairTarget]:
    """The liquidation guard first (``plan_collateral``): the transfer sent (journaled, idempotent), then the pairs
    whose short is still above the limit on the futures wallet as it is now cut, both legs. Returns the cut pairs
    (traded first). A risk that cannot be assessed (no perp candles): no transfer, every pair capped at what it
    holds, the run fails after the exits (``state.refused``). ``release``: the cash fit's spot shortfall
    (``plan_collateral``)."""
    plan = plan_collateral(state, pairs, candles, release=release)
    if plan.unknown is not None:
        journal_risk(state, [plan.unknown])
        state.refused.append(f"{plan.unknown.check}: {plan.unknown.detail}")
        return plan.pairs
    transfer = plan.transfer
    logger.info("carry collateral: futures wallet {} needs {} (guard top-up {}): {}", plan.futures_balance,
                plan.needed, plan.top_up, "no transfer" if transfer is None
                else f"{transfer.amount_quote} {transfer.from_wallet}->{transfer.to_wallet}")
    journal_risk(state, list(plan.collateral_added))
    if transfer is not None:
        send_transfer(state, transfer.amount_quote, transfer.from_wallet, transfer.to_wallet, transfer.transfer_id)
    cut, cuts = cuts_at(plan, state.settings.risk, wallet_facts(state)[2])
    journal_risk(state, cuts)
    return cut


def send_transfer(state: RunState, amount: Decimal, from_wallet: str, to_wallet: str, transfer_id: str) -> None:
    before = len(state.journal.appended)
    try:
        transfer_collateral(state.session, amount, from_wallet, to_wallet, transfer_id, journal=state.journal,
                            run=state.run)
    except errors.OrderRejected as error:  # the legs still go: the exchange refuses a short it cannot margin
        state.incidents.append(f"collateral transfer {transfer_id} refused: {error}")
    recovered = [e for e in state.journal.appended[before:] if e.event == "transferred" and e.detail]
    state.incidents += [f"transfer {e.transfer_id} ({e.requested_notional_quote} {e.reason}): {e.detail}, "
                        "not sent again" for e in recovered]

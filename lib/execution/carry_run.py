"""Edge: one rebalance of the funding-carry book on the spot and USD-M accounts (rebalance with
``strategy.name = "funding_carry"``): reconcile, collateral, both legs pair by pair, the mismatch rule, one book.

Story: refuse what cannot be trusted (stale/foreign targets, unreadable state, kill switch, halt) -> connect both
accounts -> ask about every order journaled ``sent`` without an outcome (both accounts, by client id) -> value the
one book (spot wallet + spot legs + futures margin balance) -> move collateral so the futures wallet holds the
short legs' initial margin plus a buffer (lib.execution.wallet_transfer) -> per coin: perp leg, then spot leg
(lib.execution.carry_legs says why), through the existing order path -> the coin's holdings from the exchange:
unhedged -> retry the missing leg, else unwind the excess -> positions.json (both wallets, both legs) -> one alert
naming every incident; a run that could not end hedged (or whose orders' outcome is unknown) fails instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

from loguru import logger

from lib.core import errors, storage
from lib.core.secrets import Secrets
from lib.core.state import Positions
from lib.core.symbols import is_perpetual, to_perpetual, to_spot
from lib.core.timeframes import timeframe_ms
from lib.execution import journal as records
from lib.execution import rebalance_engine as engine
from lib.execution import state_files
from lib.execution.carry_legs import (
    CarrySection,
    PairTarget,
    collateral_needed,
    common_step,
    mismatch_orders,
    pair_amount,
    pair_targets,
    plan_pair,
    plan_transfer,
    unhedged_quote,
)
from lib.execution.exchange_section import ExchangeSection
from lib.execution.journal import RunInfo
from lib.execution.orders import OrderParams, PlannedOrder, to_decimal
from lib.execution.paper import PaperParams
from lib.execution.risk import RiskLimits, check_daily_loss, check_drawdown, check_price_sanity, check_staleness
from lib.execution.risk_baselines import roll_baselines
from lib.execution.simulated import SimulatedParams
from lib.execution.state_files import PAPER_ORDER_RETENTION_MS, Journal
from lib.execution.two_account_session import TwoAccountSession, connect_two
from lib.execution.venue_session import require_safe_key
from lib.execution.wallet_transfer import reconcile_open_transfers, transfer_collateral

CARRY_STRATEGY = "funding_carry"
MAX_TARGET_AGE_BARS = 2
"""targets.json older than this many bars after its signal candle closed is stale: nothing is traded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrySettings:
    """What a carry run reads from the config (lib.ops composes it; lib.execution never imports lib.ops)."""

    exchange: ExchangeSection
    carry: CarrySection
    orders: OrderParams
    risk: RiskLimits
    paper: PaperParams
    simulated: SimulatedParams
    quote: str


@dataclass
class CarryPaths:
    targets: Path
    positions: Path
    journal: Path
    halt: Path
    kill_switch: Path
    venue: str


@dataclass
class _Run:
    settings: CarrySettings
    session: TwoAccountSession
    journal: Journal
    run: RunInfo
    positions_path: Path
    previous: Positions | None
    incidents: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def rebalance_carry(settings: CarrySettings, paths: CarryPaths, secrets: Secrets, *, now_ms: int, run_id: str,
                    alert: Callable[[str], object], dry_run: bool = False) -> str:
    """One carry rebalance; returns what it did (``dry_run``: the plan, nothing sent or written). Alerts once when
    something went wrong and was put right; raises (the runner alerts once) when the book could not be left hedged
    or an outcome is unknown."""
    exchange, carry = settings.exchange, settings.carry
    journal = Journal(paths.journal, write=not dry_run)
    targets = state_files.read_targets(paths.targets, strategy=CARRY_STRATEGY, exchange=exchange)
    bar_ms = timeframe_ms(targets.timeframe)
    if now_ms > targets.as_of_ms + (1 + MAX_TARGET_AGE_BARS) * bar_ms:
        raise errors.StateError(f"{paths.targets} is stale (signal bar {targets.as_of_ms}, now {now_ms}): run "
                                "compute_signals; nothing traded")
    previous = state_files.read_positions(paths.positions, mode=exchange.mode, venue=paths.venue, journal=journal)
    run = RunInfo(time_ms=now_ms, run_id=run_id, rebalance_id=engine.rebalance_id_of(targets), mode=exchange.mode,
                  venue=paths.venue)
    if engine.check_gates(kill_switch_present=paths.kill_switch.exists(), halt=state_files.read_halt(paths.halt),
                          journal=journal, run=run):
        raise errors.TradingHalted("a drawdown halt is in force: the carry book is not traded; " + engine.HOW_TO_RESUME)
    pairs = {p.spot_symbol: p for p in pair_targets({s: w for s, w in targets.weights.items()
                                                     if to_spot(s) not in targets.hold})}
    held_before = set() if previous is None else {s for s, a in previous.amounts_base.items() if a}
    for symbol in sorted(held_before):  # held coins without a target are closed, unless held on purpose
        spot = to_spot(symbol)
        if spot not in pairs and spot not in targets.hold:
            pairs[spot] = PairTarget(spot_symbol=spot, perp_symbol=to_perpetual(spot), spot_weight=0.0)
    symbols = {s for p in pairs.values() for s in (p.spot_symbol, p.perp_symbol)}
    session = connect_two(exchange, carry, secrets, simulated=settings.simulated, paper=settings.paper,
                          quote=settings.quote, previous=previous, symbols=symbols, now_ms=now_ms)
    for client in session.clients:  # the same key on both accounts: may trade each, may never withdraw
        require_safe_key(client, mode=exchange.mode)
    engine.reconcile_open_orders(session.broker, journal, run)
    state = _Run(settings, session, journal, run, paths.positions, previous)
    state.incidents += [f"transfer {e.transfer_id} ({e.requested_notional_quote} {e.reason}), earlier run: {e.detail}"
                        for e in reconcile_open_transfers(session, journal=journal, run=run)]
    _risk_gate(state, symbols, targets_close_ms=targets.as_of_ms + bar_ms, reference_prices=targets.signal_closes())
    if dry_run:
        return _plan_text(state, pairs)
    filled = 0
    try:
        _move_collateral(state, pairs, targets_weights=targets.weights)
        for pair in sorted(pairs.values(), key=lambda p: p.spot_symbol):
            if pair.spot_symbol in targets.hold:
                logger.warning("{} kept as it is ({}): not traded this run", pair.spot_symbol,
                               targets.hold[pair.spot_symbol])
                continue
            filled += _trade_pair(state, pair)
            if state.failures:
                break
    finally:
        _write_positions(state, final=True)
    summary = "; ".join(state.failures + state.incidents)
    if state.failures:
        raise errors.RiskCheckFailed(f"carry book NOT hedged or outcome unknown: {summary}")
    if state.incidents:
        alert(f"coinbot: carry rebalance {run.rebalance_id}: {summary}")
    logger.info("carry rebalance {}: {} order(s) filled, {} pair(s)", run.rebalance_id, filled, len(pairs))
    return f"carry rebalance {run.rebalance_id}: {filled} order(s) filled, {len(pairs)} pair(s)"


def _plan_text(state: _Run, pairs: dict[str, PairTarget]) -> str:
    """The dry run's product: the collateral transfer and every pair's legs as the exchange holds it now."""
    held, spot_cash, futures_balance = _wallet_facts(state)
    prices = _prices(state, {s for p in pairs.values() for s in (p.spot_symbol, p.perp_symbol)} | set(held))
    equity = _equity(held, spot_cash, futures_balance, prices)
    notionals = {p.perp_symbol: max(p.spot_weight * equity, float(abs(held.get(p.perp_symbol, Decimal(0))))
                                    * prices[p.perp_symbol]) for p in pairs.values()}
    needed = collateral_needed(notionals, state.settings.carry)
    transfer = plan_transfer(futures_balance_quote=futures_balance, needed_quote=needed, spot_free_quote=spot_cash,
                             params=state.settings.carry, rebalance_id=state.run.rebalance_id)
    lines = [f"carry rebalance {state.run.rebalance_id} ({state.run.mode}): equity {equity:.2f}, spot cash "
             f"{spot_cash:.2f}, futures wallet {futures_balance:.2f} (needs {needed})",
             "transfer: none" if transfer is None else f"transfer: {transfer.amount_quote} {transfer.from_wallet} -> "
             f"{transfer.to_wallet} ({transfer.transfer_id})"]
    markets = state.session.markets
    for pair in sorted(pairs.values(), key=lambda p: p.spot_symbol):
        step = common_step(markets[pair.spot_symbol].amount_step, markets[pair.perp_symbol].amount_step)
        amount = pair_amount(pair, sizing_quote=equity, spot_price=prices[pair.spot_symbol], step=step)
        orders, skipped = plan_pair(pair, amount=amount, spot_held=held.get(pair.spot_symbol, Decimal(0)),
                                    perp_held=held.get(pair.perp_symbol, Decimal(0)), prices=prices, rules=markets,
                                    params=state.settings.carry, rebalance_id=state.run.rebalance_id,
                                    prefix=state.settings.orders.client_order_id_prefix)
        lines.append(f"{pair.spot_symbol}: weight {pair.spot_weight:.4f}, {amount} per leg")
        lines += [f"  {o.symbol:<16}{o.side:<5}{o.amount_base:>14} {float(o.notional_quote):>10.2f}"
                  f"{'  reduce-only' if o.reduce_only else ''}  {o.client_order_id}" for o in orders]
        lines += [f"  skipped {s.symbol} {s.side}: {s.reason} ({s.detail})" for s in skipped]
    return "\n".join([*lines, "dry run: nothing sent, nothing written"])


def _wallet_facts(state: _Run) -> tuple[dict[str, Decimal], Decimal, Decimal]:
    """What the exchange holds now: (legs by symbol, spot free quote, futures margin balance)."""
    wallets = state.session.wallets()
    held = {s: to_decimal(a) for w in wallets.values() for s, a in w.amounts_base.items() if a}
    return held, to_decimal(wallets["spot"].cash_quote), to_decimal(wallets["futures"].cash_quote)


def _prices(state: _Run, symbols: set[str]) -> dict[str, float]:
    prices = state.session.fetch_prices(symbols)
    missing = sorted(symbols - set(prices))
    if missing:
        raise errors.DataError(f"no live price for {', '.join(missing)}: the carry book is not traded")
    return prices


def _equity(held: dict[str, Decimal], spot_cash: Decimal, futures_balance: Decimal, prices: dict[str, float]) -> float:
    """Spot cash + spot legs at last prices + futures margin balance (perp legs' PnL is inside it)."""
    spot_value = sum((a * Decimal(repr(prices[s])) for s, a in held.items() if not is_perpetual(s)), Decimal(0))
    return float(spot_cash + spot_value + futures_balance)


def _risk_gate(state: _Run, symbols: set[str], *, targets_close_ms: int, reference_prices: dict[str, float]) -> None:
    """Before any transfer or order: live prices fresh and sane, no drawdown or daily-loss breach (lib.execution.risk);
    a breach is journaled and nothing is traded (the carry path has no flatten of its own yet)."""
    held, spot_cash, futures_balance = _wallet_facts(state)
    prices = _prices(state, symbols | set(held))
    limits, run = state.settings.risk, state.run
    equity = _equity(held, spot_cash, futures_balance, prices)
    baselines = roll_baselines(state.previous, equity_quote=equity, now_ms=run.time_ms)
    times = state.session.price_times_ms()
    rejections = [
        *check_staleness(targets_as_of_ms=targets_close_ms, price_times_ms={s: times.get(s) for s in prices},
                         required_symbols=symbols, now_ms=run.time_ms, limits=limits),
        *check_price_sanity(prices, reference_prices, limits),
        *check_drawdown(equity_quote=equity, high_water_mark_quote=baselines.high_water_mark_quote, limits=limits),
        *check_daily_loss(equity_quote=equity, start_of_day_equity_quote=baselines.day_start_equity_quote,
                          limits=limits)]
    for rejection in rejections:
        state.journal.append(records.to_risk_rejected_event(rejection, run))
    if rejections:
        raise errors.RiskCheckFailed(f"carry book not traded: {records.describe_rejections(rejections)}")


def _move_collateral(state: _Run, pairs: dict[str, PairTarget], *, targets_weights: dict[str, float]) -> None:
    """Top up (or return) the futures wallet to the initial margin of max(held, target) short legs + buffer."""
    held, spot_cash, futures_balance = _wallet_facts(state)
    symbols = {s for p in pairs.values() for s in (p.spot_symbol, p.perp_symbol)} | set(held)
    prices = _prices(state, symbols)
    equity = _equity(held, spot_cash, futures_balance, prices)
    notionals = {}
    for pair in pairs.values():
        target = pair.spot_weight * equity
        current = float(abs(held.get(pair.perp_symbol, Decimal(0)))) * prices[pair.perp_symbol]
        notionals[pair.perp_symbol] = max(target, current)
    needed = collateral_needed(notionals, state.settings.carry)
    plan = plan_transfer(futures_balance_quote=futures_balance, needed_quote=needed, spot_free_quote=spot_cash,
                         params=state.settings.carry, rebalance_id=state.run.rebalance_id)
    logger.info("carry collateral: futures wallet {} needs {} ({})", futures_balance, needed,
                "no transfer" if plan is None else f"{plan.amount_quote} {plan.from_wallet}->{plan.to_wallet}")
    if plan is None:
        return
    before = len(state.journal.appended)
    try:
        transfer_collateral(state.session, plan.amount_quote, plan.from_wallet, plan.to_wallet, plan.transfer_id,
                            journal=state.journal, run=state.run)
    except errors.OrderRejected as error:  # the legs still go: the exchange refuses a short it cannot margin
        state.incidents.append(f"collateral transfer {plan.transfer_id} refused: {error}")
    recovered = [e for e in state.journal.appended[before:] if e.event == "transferred" and e.detail]
    state.incidents += [f"transfer {e.transfer_id} ({e.requested_notional_quote} {e.reason}): {e.detail}, "
                        "not sent again" for e in recovered]


def _trade_pair(state: _Run, pair: PairTarget) -> int:
    """Both legs (perp first), then the mismatch rule on what the exchange holds. Returns orders filled."""
    settings, session = state.settings, state.session
    held, spot_cash, futures_balance = _wallet_facts(state)
    legs = {pair.spot_symbol, pair.perp_symbol}
    prices = _prices(state, legs | {s for s in held if not is_perpetual(s)})
    spot_held, perp_held = held.get(pair.spot_symbol, Decimal(0)), held.get(pair.perp_symbol, Decimal(0))
    equity = _equity(held, spot_cash, futures_balance, prices)
    start_gap = unhedged_quote(spot_held, perp_held, prices[pair.spot_symbol])
    if start_gap > settings.carry.max_unhedged_quote:
        state.incidents.append(f"{pair.spot_symbol}: found unhedged at the start ({spot_held} spot / {perp_held} "
                               f"perp, {start_gap:.2f} quote; an interrupted run?)")
    markets = session.markets
    step = common_step(markets[pair.spot_symbol].amount_step, markets[pair.perp_symbol].amount_step)
    amount = pair_amount(pair, sizing_quote=equity, spot_price=prices[pair.spot_symbol], step=step)
    orders, skipped = plan_pair(pair, amount=amount, spot_held=spot_held, perp_held=perp_held, prices=prices,
                                rules=markets, params=settings.carry, rebalance_id=state.run.rebalance_id,
                                prefix=settings.orders.client_order_id_prefix,
                                current_weight=float(spot_held) * prices[pair.spot_symbol] / equity)
    for skip in skipped:
        state.journal.append(records.to_skipped_event(skip, state.run))
    before = (len(state.incidents), len(state.failures))
    filled = _send(state, orders)
    if not orders and start_gap <= settings.carry.max_unhedged_quote:
        return filled
    trouble = (len(state.incidents), len(state.failures)) != before or start_gap > settings.carry.max_unhedged_quote
    return filled + _enforce_hedge(state, pair, prices, had_trouble=trouble)


def _send(state: _Run, orders: list[PlannedOrder]) -> int:
    """The existing order path: fat-finger cap, ``planned`` + ``sent`` before each call, lookup after failures."""
    cap = state.settings.risk.max_order_notional_quote
    too_big = [o for o in orders if o.notional_quote > cap]
    if too_big:
        raise errors.RiskCheckFailed(f"carry leg {too_big[0].symbol} {too_big[0].notional_quote:.2f} > "
                                     f"risk.max_order_notional_quote {cap}: nothing of this pair sent")
    for order in orders:
        state.journal.append(records.to_planned_event(order, state.run))
    paper_saves = None if state.session.paper is None else (lambda: _write_positions(state, final=False))
    outcome = engine.send_orders(orders, state.session.broker, state.journal, state.run,
                                 on_fill=paper_saves)  # paper: the account is saved before each fill's line
    if outcome.unresolved:
        state.failures.append(outcome.unresolved)
    for event in outcome.filled:  # a partial fill leaves the pair uneven: the mismatch rule evens it out
        wanted, got = event.requested_amount_base, event.filled_amount_base
        if wanted is not None and got is not None and got < wanted:
            state.incidents.append(f"{event.symbol} {event.requested_side} partially filled: {got} of {wanted}")
    for event in outcome.rejected:
        state.incidents.append(f"{event.symbol} {event.requested_side} {event.requested_amount_base} "
                               f"{event.event}: {event.detail[:160]}")
    return len(outcome.filled)


def _enforce_hedge(state: _Run, pair: PairTarget, prices: dict[str, float], *, had_trouble: bool) -> int:
    """After the legs: what the exchange holds; unhedged -> the missing leg for the net, else unwind the excess."""
    limit = state.settings.carry.max_unhedged_quote
    filled, mismatched = 0, False
    for attempt in range(3):
        held = _wallet_facts(state)[0]
        spot_held, perp_held = held.get(pair.spot_symbol, Decimal(0)), held.get(pair.perp_symbol, Decimal(0))
        gap = unhedged_quote(spot_held, perp_held, prices[pair.spot_symbol])
        if spot_held + perp_held == 0 or (gap <= limit and not had_trouble):
            break
        fixes = mismatch_orders(pair, spot_held=spot_held, perp_held=perp_held, prices=prices,
                                rules=state.session.markets, params=state.settings.carry,
                                rebalance_id=f"{state.run.rebalance_id}-{attempt}",
                                prefix=state.settings.orders.client_order_id_prefix)
        if not mismatched:
            _journal_mismatch(state, pair, spot_held, perp_held, gap, fixes)
            mismatched = True
        if not fixes:
            break
        before, failures = len(state.incidents), len(state.failures)
        filled += _send(state, fixes[:1] if attempt == 0 else fixes[-1:])  # hedge first; then unwind
        if len(state.failures) > failures:  # a fix of unknown outcome: the next run looks it up first
            break
        had_trouble = had_trouble or len(state.incidents) > before
    if not mismatched:
        return filled
    held = _wallet_facts(state)[0]
    spot_held, perp_held = held.get(pair.spot_symbol, Decimal(0)), held.get(pair.perp_symbol, Decimal(0))
    gap = unhedged_quote(spot_held, perp_held, prices[pair.spot_symbol])
    if gap > limit:
        state.failures.append(f"{pair.spot_symbol} left unhedged: spot {spot_held} / perp {perp_held} "
                              f"({gap:.2f} quote > carry.max_unhedged_quote {limit})")
    else:
        state.incidents.append(f"{pair.spot_symbol} leg mismatch handled: now spot {spot_held} / perp {perp_held} "
                               f"(unhedged {gap:.2f} quote <= {limit})")
    return filled


def _journal_mismatch(state: _Run, pair: PairTarget, spot_held: Decimal, perp_held: Decimal, gap: Decimal,
                      fixes: list[PlannedOrder]) -> None:
    plan = ", then ".join(f"{o.side} {o.amount_base} {o.symbol}" for o in fixes) or "none possible"
    state.journal.append(records.to_leg_mismatch_event(state.run, symbol=pair.spot_symbol, unhedged_quote=gap,
                                                       detail=f"spot {spot_held} / perp {perp_held}; fixes: {plan}"))
    logger.warning("{}: legs mismatched (spot {} / perp {}, {:.2f} quote unhedged); fixes: {}", pair.spot_symbol,
                   spot_held, perp_held, gap, plan)


def _write_positions(state: _Run, *, final: bool) -> None:
    """positions.json: one book over both wallets (``wallets``), both legs; the two paper wallets in ``paper``."""
    session, run = state.session, state.run
    wallets = session.wallets()
    held = {s: a for w in wallets.values() for s, a in w.amounts_base.items() if a}
    try:
        prices = session.fetch_prices(set(held))
    except errors.CoinbotError as error:  # keep the last good file rather than write a book without prices
        logger.error("positions.json not updated: {}", error)
        return
    equity = _equity({s: to_decimal(a) for s, a in held.items()}, to_decimal(wallets["spot"].cash_quote),
                     to_decimal(wallets["futures"].cash_quote), prices)
    baselines = roll_baselines(state.previous, equity_quote=equity, now_ms=run.time_ms)
    fees = records.compute_fees_quote(e for e in state.journal.history if (e.mode, e.venue) == (run.mode, run.venue))
    baselines = baselines.__class__(**{**asdict(baselines), "fees_paid_quote": fees,
                                       "high_water_mark_quote": max(baselines.high_water_mark_quote, equity)})
    positions = Positions(
        mode=run.mode, venue=run.venue, updated_ms=run.time_ms,
        cash_quote=wallets["spot"].cash_quote + wallets["futures"].cash_quote, amounts_base=held,
        marks=prices, equity_quote=equity, last_rebalance_id=run.rebalance_id,
        paper=session.paper_document(keep_orders_since_ms=run.time_ms - PAPER_ORDER_RETENTION_MS if final else None),
        wallets={name: w.cash_quote for name, w in wallets.items()}, **asdict(baselines))
    storage.write_json_atomic(state.positions_path, positions.to_dict())


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
from dataclasses import asdict, replace
from decimal import Decimal

from loguru import logger

from lib.core import errors, storage
from lib.core.secrets import Secrets
from lib.core.state import Positions
from lib.core.symbols import is_perpetual, to_perpetual, to_spot
from lib.core.timeframes import timeframe_ms
from lib.execution import (
    carry_combo,
    carry_combo_cash,
    carry_combo_risk,
    carry_dry_run,
    carry_guard,
    carry_halt,
    carry_state,
    state_files,
)
from lib.execution import journal as records
from lib.execution import rebalance_engine as engine
from lib.execution.carry_combo import CashFit
from lib.execution.carry_legs import (
    PairTarget,
    mismatch_orders,
    pair_targets,
    unhedged_quote,
)
from lib.execution.carry_plan import plan_coin, traded_legs
from lib.execution.carry_state import (
    CarryPaths,
    CarrySettings,
    RunState,
    book_equity,
    live_prices,
    wallet_facts,
)
from lib.execution.funding_ledger import book_run_funding
from lib.execution.journal import RunInfo
from lib.execution.orders import PlannedOrder, to_decimal
from lib.execution.risk import (
    RiskRejection,
    check_daily_loss,
    check_drawdown,
    check_order_count,
    check_price_sanity,
    check_staleness,
)
from lib.execution.risk_baselines import roll_baselines
from lib.execution.state_files import PAPER_ORDER_RETENTION_MS, Journal
from lib.execution.two_account_session import connect_two
from lib.execution.venue_session import require_safe_key
from lib.execution.wallet_transfer import reconcile_open_transfers

CARRY_STRATEGY = "funding_carry"
MAX_TARGET_AGE_BARS = 2
"""targets.json older than this many bars after its signal candle closed is stale: nothing is traded."""


def rebalance_carry(settings: CarrySettings, paths: CarryPaths, secrets: Secrets, *, now_ms: int, run_id: str,
                    alert: Callable[[str], object], dry_run: bool = False, reset_high_water_mark: bool = False,
                    interrupted: str = "", show: Callable[[str], object] = logger.info) -> str:
    """One carry rebalance; returns what it did. ``dry_run``: the plan goes to ``show``, nothing is sent or written,
    and the dry run fails where the real run would (a drawdown flatten, a refusal), so a check before going live
    sees it. Alerts once when something went wrong and was put right; raises (the runner alerts once) when the book
    could not be left hedged or an outcome is unknown."""
    exchange, carry = settings.exchange, settings.carry
    journal = Journal(paths.journal, write=not dry_run)
    targets = state_files.read_targets(paths.targets, strategy=settings.strategy, exchange=exchange,
                                       quote=settings.quote)  # a weight in another quote: refused
    bar_ms = timeframe_ms(targets.timeframe)
    if now_ms > targets.as_of_ms + (1 + MAX_TARGET_AGE_BARS) * bar_ms:
        raise errors.StateError(f"{paths.targets} is stale (signal bar {targets.as_of_ms}, now {now_ms}): run "
                                "compute_signals; nothing traded")
    previous = state_files.read_positions(paths.positions, mode=exchange.mode, venue=paths.venue, journal=journal,
                                          reset_baselines=reset_high_water_mark)
    run = RunInfo(time_ms=now_ms, run_id=run_id, rebalance_id=engine.rebalance_id_of(targets), mode=exchange.mode,
                  venue=paths.venue)
    halt = state_files.read_halt(paths.halt)
    finishing_flatten = engine.check_gates(kill_switch_present=paths.kill_switch.exists(), halt=halt, journal=journal,
                                           run=run)  # a halt whose flatten is unfinished: finish it, nothing else
    held_before = set() if previous is None else {s for s, a in previous.amounts_base.items() if a}
    spot_only: dict[str, PairTarget] = {}  # combined book: coins of the directional part alone (no perp leg)
    cash: CashFit | None = None  # the cash fit, when it scaled the directional buys (or a carry book's pairs)
    clips: list[RiskRejection] = []
    if settings.combined:
        pairs, spot_only, clips = carry_combo.split_targets(targets.weights, held=held_before, hold=targets.hold,
                                                            limits=settings.risk)
    else:
        pairs = {p.spot_symbol: p for p in pair_targets({s: w for s, w in targets.weights.items()
                                                         if to_spot(s) not in targets.hold})}
    for symbol in sorted(held_before):  # held coins without a target are closed, unless held on purpose
        spot = to_spot(symbol)
        if spot not in pairs and spot not in spot_only and spot not in targets.hold:
            pairs[spot] = PairTarget(spot_symbol=spot, perp_symbol=to_perpetual(spot), spot_weight=0.0)
    symbols = {s for p in pairs.values() for s in (p.spot_symbol, p.perp_symbol)} | set(spot_only)
    closing = {s: replace(p, spot_weight=0.0, directional_weight=0.0) for s, p in {**spot_only, **pairs}.items()}
    session = connect_two(exchange, carry, secrets, simulated=settings.simulated, paper=settings.paper,
                          quote=settings.quote, previous=previous, symbols=symbols, now_ms=now_ms)
    for client in session.clients:  # the same key on both accounts: may trade each, may never withdraw
        require_safe_key(client, mode=exchange.mode)
    engine.reconcile_open_orders(session.broker, journal, run)
    state = RunState(settings, session, journal, run, paths.positions, previous, reset=reset_high_water_mark)
    state.incidents += [interrupted] if interrupted else []  # killed mid-run: said once, with what this run found
    carry_state.journal_risk(state, clips)  # a coin over risk.max_asset_weight_frac: its directional part clipped
    state.incidents += [f"transfer {e.transfer_id} ({e.requested_notional_quote} {e.reason}), earlier run: {e.detail}"
                        for e in reconcile_open_transfers(session, journal=journal, run=run)]
    if not dry_run:  # funding earned, from the exchange's own records (lib.execution.funding_ledger)
        book_run_funding(state)
    if finishing_flatten and halt is not None:
        logger.warning("a drawdown halt's flatten is unfinished: this run finishes it and does nothing else")
        if dry_run:
            show(_plan_text(state, closing))
            raise errors.TradingHalted(f"dry run: the drawdown halt's unfinished flatten would go on: {halt.detail}")
        carry_halt.flatten(state, closing, halt, paths.halt, _trade_pair, _write_positions)
    breach = _risk_gate(state, symbols, targets_close_ms=targets.as_of_ms + bar_ms,
                        reference_prices=targets.signal_closes())
    if breach is not None:  # a drawdown: both legs of every pair closed, hedged, then halted
        if dry_run:
            show(_plan_text(state, closing))
            raise errors.TradingHalted(f"dry run: a drawdown would flatten both legs and halt: {breach.detail}")
        carry_halt.flatten(state, closing, carry_halt.write_new_halt(state, breach, paths.halt), paths.halt,
                           _trade_pair, _write_positions)
    checked = carry_guard.pre_trade(state, pairs, paths.candles)
    pairs = checked.pairs
    if settings.combined:  # both parts' tail risk, then the order count; a refusal: nothing grows, the run fails
        pairs, spot_only, tail_refused = carry_combo_risk.fit_combined(state, pairs, spot_only, paths.candles)
        pairs, spot_only = _combined_count(state, pairs, spot_only, refused=bool(checked.refusals) or tail_refused)
        pairs, spot_only, cash, release = carry_combo_cash.fit_combined_cash(  # the spot cash: directional buys
            state, pairs, spot_only, paths.candles)  # scaled after the futures wallet's excess (``release``)
    else:  # within the spot cash (with the futures wallet's excess): every pair's growth scaled, both legs alike
        pairs, cash, release = carry_combo_cash.fit_pair_cash(state, pairs, paths.candles)
    if dry_run:  # the verdict, the guard's transfer and cuts, the legs: nothing sent, nothing written
        show(carry_dry_run.plan_text(state, pairs, checked=checked, candles=paths.candles, spot_only=spot_only,
                                     cash=cash, release=release))
        if checked.refusals or state.refused:
            found = [records.describe_rejections(list(checked.refusals))] if checked.refusals else []
            raise errors.RiskCheckFailed("dry run: the carry book would be refused, only risk-reducing orders sent: "
                                         + "; ".join([*found, *state.refused]))
        return f"carry rebalance {run.rebalance_id}: dry run"
    filled = 0
    try:
        sells, buys = _spot_only_sides(state, spot_only) if spot_only else ([], [])  # sales first: they free cash
        for pair in sells:
            filled += _trade_pair(state, pair)
        first = carry_guard.move_collateral(state, pairs, paths.candles, release=release)  # else cut pairs
        pairs = {**pairs, **first}
        ordered = sorted(pairs.values(), key=lambda p: (p.spot_symbol not in first, p.spot_symbol))
        filled += _trade_in_turn(state, ordered, targets.hold)
        if buys and not state.failures:  # the directional buys, last: fitted again to the spot cash there is now
            buys = [*carry_combo_cash.fit_spot_cash(state, {}, {p.spot_symbol: p for p in buys},
                                                    to_futures=Decimal(0))[1].values()]
            filled += _trade_in_turn(state, buys, targets.hold)
    finally:
        _write_positions(state, final=True)
    summary = "; ".join(state.failures + state.incidents)
    if state.failures:
        raise errors.RiskCheckFailed(f"carry book NOT hedged or outcome unknown: {summary}")
    if checked.refusals or state.refused:  # only risk-reducing orders went; the run fails (the runner alerts once)
        found = [records.describe_rejections(list(checked.refusals))] if checked.refusals else []
        raise errors.RiskCheckFailed("carry book refused, only risk-reducing orders sent: "
                                     + "; ".join([*found, *state.refused, *state.incidents]))
    if state.incidents:
        alert(f"coinbot: carry rebalance {run.rebalance_id}: {summary}")
    logger.info("carry rebalance {}: {} order(s) filled, {} pair(s)", run.rebalance_id, filled, len(pairs))
    return f"carry rebalance {run.rebalance_id}: {filled} order(s) filled, {len(pairs)} pair(s)"


def _plan_text(state: RunState, pairs: dict[str, PairTarget]) -> str:
    """The dry run's product (lib.execution.carry_dry_run): the collateral transfer and every pair's legs."""
    return carry_dry_run.plan_text(state, pairs)


def _risk_gate(state: RunState, symbols: set[str], *, targets_close_ms: int,
               reference_prices: dict[str, float]) -> RiskRejection | None:
    """Before any transfer or order: live prices fresh and sane, no daily-loss breach (lib.execution.risk): a breach
    is journaled and nothing is traded. A drawdown breach is returned (journaled): the caller flattens and halts."""
    held, spot_cash, futures_balance = wallet_facts(state)
    prices = live_prices(state, symbols | set(held))
    limits, run = state.settings.risk, state.run
    equity = book_equity(held, spot_cash, futures_balance, prices)
    baselines = roll_baselines(state.previous, equity_quote=equity, now_ms=run.time_ms, reset=state.reset)
    times = state.session.price_times_ms()
    drawdown = check_drawdown(equity_quote=equity, high_water_mark_quote=baselines.high_water_mark_quote,
                              limits=limits)
    rejections = [
        *check_staleness(targets_as_of_ms=targets_close_ms, price_times_ms={s: times.get(s) for s in prices},
                         required_symbols=symbols, now_ms=run.time_ms, limits=limits),
        *check_price_sanity(prices, reference_prices, limits), *drawdown]
    if not drawdown:  # a drawdown flattens whatever today's loss (the flatten reduces risk only)
        rejections += check_daily_loss(equity_quote=equity, start_of_day_equity_quote=baselines.day_start_equity_quote,
                                       limits=limits)
    for rejection in rejections:
        state.journal.append(records.to_risk_rejected_event(rejection, run))
    if len(rejections) > len(drawdown):
        raise errors.RiskCheckFailed(f"carry book not traded: {records.describe_rejections(rejections)}")
    return drawdown[0] if drawdown else None

def _combined_count(state: RunState, pairs: dict[str, PairTarget], spot_only: dict[str, PairTarget], *,
                    refused: bool) -> tuple[dict[str, PairTarget], dict[str, PairTarget]]:
    """risk.max_orders_per_run over the risk-adding orders of both parts (directional ones included); over it, or
    already refused by the carry pass: only what reduces risk (lib.execution.carry_combo.only_reducing)."""
    held, spot_cash, futures_balance = wallet_facts(state)
    every = {**spot_only, **pairs}
    prices = live_prices(state, {s for p in every.values() for s in traded_legs(state, p, held)} | set(held))
    equity = book_equity(held, spot_cash, futures_balance, prices)
    orders = [o for p in every.values() for o in plan_coin(state, p, held, prices, equity)[2]
              if not carry_guard.reduces(o)]
    too_many = check_order_count(orders, state.settings.risk)
    carry_state.journal_risk(state, too_many)
    state.refused += [f"{r.check}: {r.detail}" for r in too_many]
    if not (refused or too_many):
        return pairs, spot_only
    return carry_combo.only_reducing(pairs, spot_only, held=held, prices=prices, equity=equity)


def _spot_only_sides(state: RunState, spot_only: dict[str, PairTarget]) -> tuple[list[PairTarget], list[PairTarget]]:
    held, spot_cash, futures_balance = wallet_facts(state)
    prices = live_prices(state, set(spot_only) | {s for s in held if not is_perpetual(s)})
    return carry_combo.sales_first(spot_only, held=held, prices=prices,
                                   equity=book_equity(held, spot_cash, futures_balance, prices))


def _trade_in_turn(state: RunState, pairs: list[PairTarget], hold: dict[str, str]) -> int:
    """Each coin in turn (coins held on purpose left as they are); stops at the first failure. Orders filled."""
    filled = 0
    for pair in pairs:
        if pair.spot_symbol in hold:
            logger.warning("{} kept as it is ({}): not traded this run", pair.spot_symbol, hold[pair.spot_symbol])
            continue
        filled += _trade_pair(state, pair)
        if state.failures:
            break
    return filled


def _trade_pair(state: RunState, pair: PairTarget) -> int:
    """Both legs (perp first), then the mismatch rule on what the exchange holds. Returns orders filled.
    A combined book's coin without a short: its spot order alone (nothing to hedge)."""
    settings = state.settings
    held, spot_cash, futures_balance = wallet_facts(state)
    legs = traded_legs(state, pair, held)
    prices = live_prices(state, legs | {s for s in held if not is_perpetual(s)})
    spot_held, perp_held = held.get(pair.spot_symbol, Decimal(0)), held.get(pair.perp_symbol, Decimal(0))
    equity = book_equity(held, spot_cash, futures_balance, prices)
    amount, directional, orders, skipped = plan_coin(state, pair, held, prices, equity)
    for skip in skipped:
        state.journal.append(records.to_skipped_event(skip, state.run))
    if pair.perp_symbol not in legs:
        return _send(state, orders)
    # the directional target is not yet held at the start: only a short no spot covers is surely unhedged there
    start_gap = (carry_combo.naked_short_quote(spot_held, perp_held, prices[pair.spot_symbol]) if settings.combined
                 else unhedged_quote(spot_held, perp_held, prices[pair.spot_symbol]))
    if start_gap > settings.carry.max_unhedged_quote:
        state.incidents.append(f"{pair.spot_symbol}: found unhedged at the start ({spot_held} spot / {perp_held} "
                               f"perp, {start_gap:.2f} quote; an interrupted run?)")
    before = (len(state.incidents), len(state.failures))
    filled = _send(state, orders)
    if not orders and start_gap <= settings.carry.max_unhedged_quote:
        return filled
    trouble = (len(state.incidents), len(state.failures)) != before or start_gap > settings.carry.max_unhedged_quote
    return filled + _enforce_hedge(state, pair, prices, had_trouble=trouble, directional=directional)


def _send(state: RunState, orders: list[PlannedOrder]) -> int:
    """The existing order path: fat-finger cap, ``planned`` + ``sent`` before each call, lookup after failures."""
    cap = state.settings.risk.max_order_notional_quote
    too_big = [o for o in orders if o.notional_quote > cap and not carry_guard.reduces(o)]  # exits always go
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


def _enforce_hedge(state: RunState, pair: PairTarget, prices: dict[str, float], *, had_trouble: bool,
                   directional: Decimal = Decimal(0)) -> int:
    """After the legs: what the exchange holds; unhedged -> the missing leg for the net, else unwind the excess.
    The hedge is the spot above the coin's ``directional`` amount (lib.execution.carry_combo.hedge_spot)."""
    limit = state.settings.carry.max_unhedged_quote
    filled, mismatched = 0, False
    for attempt in range(3):
        held = wallet_facts(state)[0]
        spot_held, perp_held = _hedge_legs(held, pair, directional)
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
    spot_held, perp_held = _hedge_legs(wallet_facts(state)[0], pair, directional)
    gap = unhedged_quote(spot_held, perp_held, prices[pair.spot_symbol])
    if gap > limit:
        state.failures.append(f"{pair.spot_symbol} left unhedged: spot {spot_held} / perp {perp_held} "
                              f"({gap:.2f} quote > carry.max_unhedged_quote {limit})")
    else:
        state.incidents.append(f"{pair.spot_symbol} leg mismatch handled: now spot {spot_held} / perp {perp_held} "
                               f"(unhedged {gap:.2f} quote <= {limit})")
    return filled


def _hedge_legs(held: dict[str, Decimal], pair: PairTarget, directional: Decimal) -> tuple[Decimal, Decimal]:
    """(the spot that hedges, the perp) of a pair: spot above the directional amount, never below 0."""
    spot = carry_combo.hedge_spot(held.get(pair.spot_symbol, Decimal(0)), directional)
    return spot, held.get(pair.perp_symbol, Decimal(0))


def _journal_mismatch(state: RunState, pair: PairTarget, spot_held: Decimal, perp_held: Decimal, gap: Decimal,
                      fixes: list[PlannedOrder]) -> None:
    plan = ", then ".join(f"{o.side} {o.amount_base} {o.symbol}" for o in fixes) or "none possible"
    state.journal.append(records.to_leg_mismatch_event(state.run, symbol=pair.spot_symbol, unhedged_quote=gap,
                                                       detail=f"spot {spot_held} / perp {perp_held}; fixes: {plan}"))
    logger.warning("{}: legs mismatched (spot {} / perp {}, {:.2f} quote unhedged); fixes: {}", pair.spot_symbol,
                   spot_held, perp_held, gap, plan)


def _write_positions(state: RunState, *, final: bool) -> None:
    """positions.json: one book over both wallets (``wallets``), both legs; the two paper wallets in ``paper``."""
    session, run = state.session, state.run
    wallets = session.wallets()
    held = {s: a for w in wallets.values() for s, a in w.amounts_base.items() if a}
    try:
        prices = session.fetch_prices(set(held))
    except errors.CoinbotError as error:  # keep the last good file rather than write a book without prices
        logger.error("positions.json not updated: {}", error)
        return
    equity = book_equity({s: to_decimal(a) for s, a in held.items()}, to_decimal(wallets["spot"].cash_quote),
                     to_decimal(wallets["futures"].cash_quote), prices)
    baselines = roll_baselines(state.previous, equity_quote=equity, now_ms=run.time_ms, reset=state.reset)
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


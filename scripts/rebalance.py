"""Rebalance the account toward state/targets.json: reconcile, plan, risk-check, send, record (fails closed).

Story: refuse what cannot be trusted (no keys/opt-in, bad or foreign targets, invalid positions.json, kill switch,
drawdown halt) -> connect (paper account in positions.json, or ccxt) -> ask the venue about every order journaled
`sent` without an outcome -> value the book (equity, start of day, peak) -> plan toward the targets -> risk verdict
-> send what it allows, each journaled `sent` before the call -> state/positions.json, atomically. A re-run after a
crash is safe. ``funding_carry`` trades two accounts as one book (lib.execution.carry_run).
"""

from __future__ import annotations

import sys

from loguru import logger

from lib.core.symbols import quote_of
from lib.core.timeframes import timeframe_ms
from lib.execution import journal as records
from lib.execution import rebalance_engine as engine
from lib.execution import state_files, tail_risk_checks, venue_session
from lib.execution.book import Book, value_book
from lib.execution.ccxt_cashflows import record_exchange_cashflows
from lib.execution.managed_book import managed_symbols
from lib.execution.orders import OrderPlan, locked_exits_alert
from lib.execution.risk import RiskVerdict, check_all
from lib.execution.risk_live_key import check_mode_allowed
from lib.execution.risk_targets import clip_target_weights
from lib.ops.carry_rebalance import carry_or
from lib.ops.runner import RunContext, base_parser, run_script


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="print the order plan and the risk verdict; send and write nothing (no run record)")
    parser.add_argument("--live", action="store_true", help="confirm that exchange.mode = live may trade real money")
    parser.add_argument("--reset-high-water-mark", action="store_true",
                        help="after a person deleted state/halt.json: take the equity now as the new peak and "
                             "start of day (otherwise the same drawdown halts again)")
    args = parser.parse_args(argv)
    return run_script("rebalance", args, carry_or(_run), writes_state=not args.dry_run)


def _run(ctx: RunContext) -> None:
    config, paths, dry_run, quote = ctx.config, ctx.paths, ctx.args.dry_run, quote_of(ctx.config.data.symbols[0])
    # 1. inputs: refuse anything that cannot be trusted, before any venue is touched
    check_mode_allowed(config.exchange, ctx.secrets, live_flag=ctx.args.live or dry_run)
    journal = state_files.Journal(paths.journal, write=not dry_run)
    targets = state_files.read_targets(paths.targets, strategy=config.strategy.name, exchange=config.exchange,
                                       timeframe=config.strategy.timeframe, quote=quote)  # another config's: refused
    previous = state_files.read_positions(paths.positions, mode=config.exchange.mode, venue=paths.venue,
                                          journal=journal, reset_baselines=ctx.args.reset_high_water_mark)
    run = records.RunInfo(time_ms=ctx.now_ms, run_id=ctx.run_id, rebalance_id=engine.rebalance_id_of(targets),
                          mode=config.exchange.mode, venue=paths.venue)
    halt = state_files.read_halt(paths.halt)
    finishing_flatten = engine.check_gates(kill_switch_present=paths.kill_switch.exists(), halt=halt,
                                                journal=journal, run=run)
    target_weights, clipped = clip_target_weights({s: w for s, w in targets.weights.items() if w != 0}, config.risk)
    for clip in clipped:  # over risk.max_asset_weight_frac: that asset gets the cap, the rest trades
        logger.warning("{}: {}", clip.symbol, clip.detail)
        journal.append(records.to_risk_rejected_event(clip, run))
    signal_inputs = set(targets.signal_closes())  # every symbol whose candle moved the weights: sanity-checked

    # 2. the venue, and what it says about orders an earlier run left without an outcome
    stored_close = venue_session.stored_close_reader(paths, targets.timeframe)  # a delisted coin's value
    session = venue_session.connect(config.exchange, ctx.secrets, simulated=config.simulated, paper=config.paper,
                                    quote=quote, previous=previous, target_symbols=set(target_weights) | signal_inputs,
                                    now_ms=ctx.now_ms, stored_close=stored_close)
    if session.client is not None:  # testnet and live: a key that can withdraw never trades
        venue_session.require_safe_key(session.client, mode=config.exchange.mode)
    engine.reconcile_open_orders(session.broker, journal, run)

    # 3. the book at this run's prices, its baselines shifted by deposits/withdrawals since the last run
    cashflows = state_files.read_cashflows(paths.cashflows)
    if config.book.exchange_cashflows and session.client is not None and previous is not None:  # each once, by id
        bot_ledger = config.book.has_capital and config.exchange.market_type == "spot"  # account flows: not its capital
        cashflows += record_exchange_cashflows(session.client, paths.cashflows, cashflows, quote=session.quote,
                                               since_ms=previous.updated_ms, until_ms=ctx.now_ms,
                                               write=not (dry_run or bot_ledger))
    book = value_book(session, previous=previous, target_symbols=target_weights, now_ms=ctx.now_ms,
                      reset_baseline=ctx.args.reset_high_water_mark, cashflows=cashflows, book_params=config.book,
                      ledger_fills=journal.history if config.exchange.market_type == "spot" else None,  # bot's cash
                      managed=managed_symbols((*config.data.symbols, *target_weights),  # + what the bot traded
                                              [e.symbol for e in journal.history if e.event == "filled" and e.symbol],
                                              config.book))
    for message in book.alerts():  # a held coin without a live price; the bot's cash missing from the account
        ctx.alert(message)
    target_weights = engine.keep_held(target_weights, {**targets.hold, **dict.fromkeys(book.unpriced, "no live price")},
                                      book)  # late/stale/quarantined data or no live price: not traded
    writer = state_files.PositionsWriter(paths.positions, session, book, journal, run, enabled=not dry_run)
    logger.info("book: equity {:.2f} {} (cash {:.2f}, {} position(s)), sized on {:.2f}, peak {:.2f}, start of day "
                "{:.2f}", book.equity_quote, session.quote, book.holdings.cash_quote, len(book.holdings.amounts_base),
                book.sizing_quote, book.baselines.high_water_mark_quote, book.baselines.day_start_equity_quote)
    if finishing_flatten and halt is not None:
        logger.warning("a drawdown halt's flatten is unfinished: this run finishes it and does nothing else")
        if not dry_run:  # raises TradingHalted
            engine.flatten(session, book, journal=journal, run=run, writer=writer, halt_path=paths.halt,
                                halt=halt, params=config.orders, limits=config.risk)
        target_weights = {}  # the dry run shows the flatten plan

    # 4. shorts near liquidation cut first, tail risk fitted; plan; then the risk verdict decides what may be sent
    tail = tail_risk_checks.pre_trade(target_weights, book, targets, paths, config.risk, journal, run, alert=ctx.alert,
                                      markets=session.markets)  # amount steps: a cut short rounds to a safe size
    plan = tail.first(engine.plan_rebalance(session, book, target_weights=tail.target_weights, limits=config.risk,
                                            params=tail.order_params(config.orders), journal=journal, run=run))
    verdict = tail.refuse(check_all(
        plan=plan, target_weights=tail.target_weights, holdings=book.holdings, prices=book.prices,
        equity_quote=book.equity_quote, start_of_day_equity_quote=book.baselines.day_start_equity_quote,
        high_water_mark_quote=book.baselines.high_water_mark_quote, held=targets.hold,  # kept as they are
        targets_as_of_ms=targets.as_of_ms + timeframe_ms(targets.timeframe),  # the close of the signal candle
        price_times_ms=book.price_times_ms, now_ms=ctx.now_ms, limits=config.risk,
        kill_switch_present=paths.kill_switch.exists(), halt_active=paths.halt.exists(),  # created meanwhile?
        reference_prices=targets.signal_closes(), unpriced=book.unpriced,  # a stored close is no live input price:
        input_prices={s: p for s, p in session.fetch_prices(signal_inputs).items() if s not in session.unpriced},
    ))  # a tail-risk refusal keeps only the risk-reducing orders
    logger.info("plan {}: {} order(s), {} skipped; risk verdict {} ({} rejection(s))", run.rebalance_id,
                len(plan.orders), len(plan.skipped), verdict.decision, len(verdict.rejections))
    if dry_run:
        print(_plan_table(plan, verdict, book, run))
        if (failure := engine.dry_run_failure(verdict)) is not None:  # exit as the real run would (a check sees it)
            raise failure
        return

    if (locked := locked_exits_alert(plan.skipped)) is not None:  # 5. an exit a person's orders lock: alerted
        ctx.alert(locked)  # then send what the verdict allows; positions.json is written after the orders
    outcome = engine.carry_out(verdict, session=session, book=book, journal=journal, run=run, writer=writer,
                                    halt_path=paths.halt, limits=config.risk, params=config.orders)
    logger.info("rebalance {}: {} orders filled, {} skipped", run.rebalance_id, len(outcome.filled), len(plan.skipped))


def _plan_table(plan: OrderPlan, verdict: RiskVerdict, book: Book, run: records.RunInfo) -> str:
    """The product output of --dry-run: the orders, what was skipped and why, and the risk verdict."""
    lines = [f"rebalance {run.rebalance_id} ({run.mode}, {run.venue}): equity {book.equity_quote:.2f}, cash "
             f"{book.holdings.cash_quote:.2f}, peak {book.baselines.high_water_mark_quote:.2f}, "
             f"start of day {book.baselines.day_start_equity_quote:.2f}",
             f"{'symbol':<16}{'side':<6}{'amount':>16}{'price':>14}{'notional':>12}{'target':>9}{'now':>9}"
             f"  {'reduce':<7}client id"]
    lines += [f"{o.symbol:<16}{o.side:<6}{format(o.amount_base, 'f'):>16}{o.reference_price:>14.6g}"
              f"{float(o.notional_quote):>12.2f}{o.target_weight:>9.4f}{o.current_weight:>9.4f}"
              f"  {'yes' if o.reduce_only else 'no':<7}{o.client_order_id}" for o in plan.orders]
    lines += ["(no orders)"] if not plan.orders else []
    lines += [f"skipped {s.symbol} {s.side}: {s.reason} ({s.detail})" for s in plan.skipped]
    lines.append(f"risk verdict: {verdict.decision}, {len(verdict.allowed_orders)} of {len(plan.orders)} "
                 "order(s) allowed")
    lines += [f"  rejected by {r.check}{' ' + r.symbol if r.symbol else ''}: {r.detail}" for r in verdict.rejections]
    return "\n".join([*lines, "dry run: nothing sent, nothing written"])


if __name__ == "__main__":
    sys.exit(main())

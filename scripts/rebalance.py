"""Rebalance the account toward state/targets.json: reconcile, plan, risk-check, send, record (fails closed).

Story: refuse what cannot be trusted (mode without keys or opt-in, missing/malformed/foreign targets, an
invalid positions.json, the kill switch, a drawdown halt) -> connect (the paper account in positions.json, or
the exchange through ccxt) -> ask the venue about every order journaled `sent` without an outcome -> value
the book (equity, start of day, high-water mark) -> plan orders toward the targets -> risk verdict -> send
what the verdict allows, each journaled `sent` before the call -> state/positions.json, atomically.
Every step is journaled in state/orders.jsonl; a re-run after a crash at any point is safe.
"""

from __future__ import annotations

import sys

from loguru import logger

from lib import rebalancing
from lib.config import check_mode_allowed
from lib.journal import RunInfo
from lib.risk import check_all
from lib.runner import RunContext, base_parser, run_script


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="print the order plan and the risk verdict; send nothing, write nothing")
    parser.add_argument("--live", action="store_true",
                        help="confirm that exchange.mode = live may trade real money")
    parser.add_argument("--reset-high-water-mark", action="store_true",
                        help="after a person deleted state/halt.json: take the equity now as the new peak and "
                             "start of day (otherwise the same drawdown halts again)")
    return run_script("rebalance", parser.parse_args(argv), _run)


def _run(ctx: RunContext) -> None:
    config, paths, dry_run = ctx.config, ctx.paths, ctx.args.dry_run
    # 1. inputs: refuse anything that cannot be trusted, before any venue is touched
    check_mode_allowed(config.exchange, ctx.secrets, live_flag=ctx.args.live or dry_run)
    journal = rebalancing.Journal(paths.journal, write=not dry_run)
    targets = rebalancing.read_targets(paths.targets, config)
    previous = rebalancing.read_positions(paths.positions, config=config, venue=paths.venue, journal=journal)
    run = RunInfo(time_ms=ctx.now_ms, run_id=ctx.run_id, rebalance_id=rebalancing.rebalance_id_of(targets),
                  mode=config.exchange.mode, venue=paths.venue)
    halt = rebalancing.read_halt(paths.halt)
    finishing_flatten = rebalancing.check_gates(kill_switch_present=paths.kill_switch.exists(), halt=halt,
                                                journal=journal, run=run)
    target_weights = {symbol: weight for symbol, weight in targets.weights.items() if weight != 0}

    # 2. the venue, and what it says about orders an earlier run left without an outcome
    session = rebalancing.connect(config, ctx.secrets, previous=previous, target_symbols=target_weights,
                                  now_ms=ctx.now_ms)
    rebalancing.reconcile_open_orders(session.broker, journal, run)

    # 3. the book at this run's prices
    book = rebalancing.value_book(session, previous=previous, target_symbols=target_weights, now_ms=ctx.now_ms,
                                  reset_baseline=ctx.args.reset_high_water_mark)
    writer = rebalancing.PositionsWriter(paths.positions, session, book, journal, run, enabled=not dry_run)
    logger.info("book: equity {:.2f} {} (cash {:.2f}, {} position(s)), peak {:.2f}, start of day {:.2f}",
                book.equity_quote, session.quote, book.holdings.cash_quote, len(book.holdings.amounts_base),
                book.high_water_mark_quote, book.day_start_equity_quote)
    if finishing_flatten and halt is not None:
        logger.warning("a drawdown halt's flatten is unfinished: finishing it, nothing else")
        rebalancing.flatten(session, book, journal=journal, run=run, writer=writer, halt_path=paths.halt,
                            halt=halt, params=config.orders)

    # 4. plan, then the risk verdict decides what may be sent
    plan = rebalancing.plan_rebalance(session, book, target_weights=target_weights, params=config.orders,
                                      rebalance_id=run.rebalance_id, journal=journal, run=run)
    verdict = check_all(
        plan=plan, target_weights=target_weights, holdings=book.holdings, prices=book.prices,
        equity_quote=book.equity_quote, start_of_day_equity_quote=book.day_start_equity_quote,
        high_water_mark_quote=book.high_water_mark_quote, targets_as_of_ms=targets.as_of_ms,
        price_times_ms=book.price_times_ms, now_ms=ctx.now_ms, kill_switch_present=False, halt_active=False,
        limits=config.risk,
    )
    logger.info("plan {}: {} order(s), {} skipped; risk verdict {} ({} rejection(s))", run.rebalance_id,
                len(plan.orders), len(plan.skipped), verdict.decision, len(verdict.rejections))
    if dry_run:
        print(rebalancing.format_plan(plan, verdict, book, run))
        return

    # 5. send what the verdict allows; positions.json is written after the orders
    outcome = rebalancing.carry_out(verdict, session=session, book=book, journal=journal, run=run, writer=writer,
                                    halt_path=paths.halt, leverage=rebalancing.perp_leverage(config.risk),
                                    params=config.orders)
    logger.info("rebalance {}: {} order(s) filled, {} skipped", run.rebalance_id, len(outcome.filled),
                len(plan.skipped))


if __name__ == "__main__":
    sys.exit(main())

"""Record a deposit or withdrawal by hand, so the risk baselines do not read it as profit or loss.

Story: parse the signed amount (+ deposit, - withdrawal, in the quote currency) and when it moved (default: now)
-> refuse a time the last rebalance already valued (it saw the money move; see the README), and in a shared
account a withdrawal above the bot's own cash -> append one line to state/cashflows.jsonl (append-only,
fsync'ed) -> the next rebalance shifts the high-water mark, the start-of-day equity and the inception equity by
it. Record it after the money moved and before the next rebalance. With book.exchange_cashflows rebalance records
the exchange's history itself: only a flow outside it, with --not-in-exchange-history. With book.capital_quote/
capital_frac (spot) the flow is the bot's capital: + gives the bot more of the account's cash, - takes some back
(lib.execution.bot_ledger).
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation

from loguru import logger

from lib.core import errors, storage
from lib.core.state import Positions
from lib.core.timeframes import parse_time_ms
from lib.execution.cashflows import CashFlow
from lib.ops.runner import RunContext, base_parser, run_script


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("amount", help="quote currency amount: positive = deposit, negative = withdrawal "
                                       "(e.g. -300); use --amount=-300 or -- -300 for a negative number")
    parser.add_argument("--time", default=None, help="when the money moved (ISO UTC or epoch ms; default: now)")
    parser.add_argument("--note", default="", help="free text kept with the record")
    parser.add_argument("--not-in-exchange-history", action="store_true",
                        help="with book.exchange_cashflows: this flow is not in the exchange's deposit/withdrawal "
                             "history (e.g. an internal transfer), so rebalance does not record it itself")
    return run_script("cashflow", parser.parse_args(argv), _run)


def _run(ctx: RunContext) -> None:
    if ctx.config.exchange.mode == "paper":  # no money moves in paper: a record would only hide a real loss
        raise errors.ConfigError("cashflow records money moved in or out of a testnet/live account, not paper")
    try:
        amount = Decimal(ctx.args.amount)
    except InvalidOperation:
        raise errors.ConfigError(f"amount must be a number, got {ctx.args.amount!r}") from None
    time_ms = ctx.now_ms if ctx.args.time is None else parse_time_ms(ctx.args.time, what="--time")
    if time_ms > ctx.now_ms:
        raise errors.ConfigError(f"--time {ctx.args.time} is in the future: record a flow once the money moved")
    book = ctx.config.book
    from_exchange = book.exchange_cashflows and not (book.has_capital and ctx.config.exchange.market_type == "spot")
    if from_exchange and not ctx.args.not_in_exchange_history:  # no way to tell a record from its exchange twin
        raise errors.ConfigError("book.exchange_cashflows = true: rebalance records the exchange's deposits and "
                                 "withdrawals itself, a record by hand as well would count twice. Only a flow the "
                                 "exchange's history does not hold (e.g. an internal transfer) is recorded here, "
                                 "with --not-in-exchange-history")
    flow = CashFlow(time_ms=time_ms, amount_quote=amount, source="manual", note=ctx.args.note)
    positions, last = ctx.paths.positions, None
    if positions.exists():
        last = Positions.from_dict(storage.read_json(positions))
        last_run_ms = last.updated_ms
        if time_ms <= last_run_ms:
            raise errors.StateError(
                f"the last rebalance (positions.json, {last_run_ms} ms) already valued the account after this "
                f"flow ({time_ms} ms), so it cannot be taken out of its baselines any more. If it tripped a halt: "
                "check the book, delete state/halt.json and run rebalance --reset-high-water-mark once")
    ledger = None if last is None else last.ledger  # a shared account: the flow is the bot's own capital
    if ledger is not None and -amount > ledger.cash_quote:
        raise errors.StateError(f"the bot holds {ledger.cash_quote:.2f} of its own cash (positions.json): take at "
                                "most that back; for more, lower its targets first so that it sells")
    storage.append_jsonl(ctx.paths.cashflows, flow.to_dict())
    kinds = ("deposit", "withdrawal") if ledger is None else ("capital given to the bot", "capital taken from the bot")
    kind = kinds[0] if amount > 0 else kinds[1]
    logger.info("recorded {} of {} at {} in {}: the next rebalance shifts its baselines by it", kind,
                format(abs(amount), "f"), time_ms, ctx.paths.cashflows)


if __name__ == "__main__":
    sys.exit(main())

"""Edge: deposits and withdrawals of the book's quote currency from the exchange's own history (ccxt
``fetch_deposits`` / ``fetch_withdrawals``), as lib.execution.cashflows records, for exchanges that have them.

Only the quote currency counts (other coins are outside the book or valued by the book itself). A deposit
counts once credited (``ok``); a withdrawal as soon as it left the balance (``pending`` or ``ok``), with its
fee when the fee is charged in the quote. Switched on by ``book.exchange_cashflows``; each flow a run learns of
is appended to state/cashflows.jsonl once (keyed by the exchange's id), so the report leaves it out of the P&L.
A flow recorded by hand as well would count twice: scripts/cashflow.py refuses one there unless told that the
exchange's history does not hold it (e.g. an internal transfer).
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

from loguru import logger

from lib.core import storage
from lib.core.errors import DataError
from lib.execution.cashflows import CashFlow, unrecorded_flows
from lib.execution.ccxt_client import call

_COUNTED = {"fetchDeposits": (1, {"ok"}), "fetchWithdrawals": (-1, {"ok", "pending"})}


def fetch_exchange_cashflows(client: Any, *, quote: str, since_ms: int, until_ms: int) -> list[CashFlow]:
    """Quote-currency flows with ``since_ms < time <= until_ms``; [] where the exchange reports none.

    Raises:
        DataError: an entry without a finite amount or a time; ExchangeUnavailable / ExchangeError from ``call``.
    """
    flows = []
    for method, (sign, statuses) in _COUNTED.items():
        if not client.has.get(method):
            continue
        name = "fetch_deposits" if method == "fetchDeposits" else "fetch_withdrawals"
        entries = call(client, name, lambda n=name: getattr(client, n)(None, since_ms + 1))
        for entry in entries:
            if entry.get("currency") != quote or entry.get("status") not in statuses:
                continue
            time_ms, amount = entry.get("timestamp"), entry.get("amount")
            if not isinstance(time_ms, int) or not isinstance(amount, int | float) or not math.isfinite(amount):
                raise DataError(f"{name}: entry {entry.get('id')!r} has no valid time/amount ({time_ms!r}, {amount!r})")
            if entry.get("id") in (None, ""):  # the id keys the record: without it a re-run would append it again
                raise DataError(f"{name}: an entry of {amount!r} {quote} at {time_ms} has no id")
            fee = entry.get("fee") or {}
            cost = fee.get("cost") if fee.get("currency") == quote and sign < 0 else 0
            moved = Decimal(repr(float(amount))) + Decimal(repr(float(cost or 0)))
            if since_ms < time_ms <= until_ms and moved > 0:
                flows.append(CashFlow(time_ms=time_ms, amount_quote=sign * moved,
                                      source=f"exchange:{method}:{entry.get('id')}"))
    return flows


def record_exchange_cashflows(client: Any, path: Path, recorded: list[CashFlow], *, quote: str, since_ms: int,
                              until_ms: int, write: bool) -> list[CashFlow]:
    """The exchange's flows in (``since_ms``, ``until_ms``] that ``recorded`` (state/cashflows.jsonl at ``path``)
    does not hold yet; appended to it one line each when ``write`` (not in a dry run, nor for a shared account's
    bot, whose capital the account's flows do not move). A crash after an append is safe: the re-run finds the
    line by its id and appends nothing.
    """
    new = unrecorded_flows(fetch_exchange_cashflows(client, quote=quote, since_ms=since_ms, until_ms=until_ms),
                           recorded)
    for flow in new if write else ():
        storage.append_jsonl(path, flow.to_dict())
        logger.info("recorded the exchange's {} of {} {} at {} in {}", "deposit" if flow.amount_quote > 0 else
                    "withdrawal", format(abs(flow.amount_quote), "f"), quote, flow.time_ms, path)
    return new

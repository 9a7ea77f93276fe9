"""Pure: the bot's own cash in a shared account, so its equity, drawdown and P&L are the bot's alone.

With ``book.capital_quote`` or ``book.capital_frac`` set (lib.execution.managed_book) the account's quote cash is
not all the bot's: the owner's cash would dilute the drawdown halt (a 30 % loss of a 1,000 book in a 5,000
account moves the account 6 %) and the owner moving his own cash would move the bot's "equity". So the bot
keeps a ledger (positions.json ``ledger``):

- start (first run with a capital setting): the capital is ``capital_frac`` of the managed book (all quote
  cash + managed coins), at most ``capital_quote``; the managed coins are the bot's, its cash is the rest of the
  capital, never more than the quote cash the account holds;
- every fill in the journal moves it once: a sell adds its notional, a buy takes its notional, and the fee is
  taken only where it was paid in the quote (the journal's ``fees_paid``, as the exchange charged it). A
  commission in the coin bought or sold is already in the coin balance the bot's equity counts; one in a third
  asset (BNB) left the account's BNB, which is not the bot's (the bot does not manage BNB: the owner keeps it
  topped up; its quote value still counts in fees_paid_quote). A journal line written before ``fees_paid``
  existed is read as the old code read it: its whole ``fee_quote`` paid in the quote;
- a cash flow recorded with ``scripts/cashflow.py`` moves it (and the baselines): the owner gives the bot more
  capital or takes some back. Deposits and withdrawals the exchange reports are the account's, not the bot's;
- it is reconciled every run with the account: the account's quote cash (free + locked) below the ledger means
  the bot's cash is not all there any more (the owner took it without recording it): the ledger drops to what
  is there, a loss of the bot that the drawdown and daily-loss limits see (fail toward less risk; exits are
  never blocked), alerted when more than dust.

The bot's equity is the ledger's cash plus its managed coins at this run's prices; the targets are sized on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from lib.core.state import CashLedger
from lib.core.symbols import quote_of
from lib.core.timeframes import MS_PER_DAY
from lib.execution.journal import JournalEvent
from lib.execution.managed_book import BookParams

BOOKED_WINDOW_MS = 30 * MS_PER_DAY
"""Booked fill ids are kept this long; older fills count as booked (runs a month apart in a journal's order)."""
DUST_QUOTE = Decimal("0.01")
"""A shortfall up to this (rounding between the journal's average price and the exchange's cash) is not alerted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciled:
    """The ledger after a reconciliation with the account, and what was missing from the account's cash."""

    ledger: CashLedger
    shortfall_quote: Decimal  # > 0: the ledger was above the account's quote cash and dropped to it


def start_capital(*, account_cash: Decimal, coins_value: Decimal, params: BookParams) -> Decimal:
    """The bot's capital on its first run: ``capital_frac`` of cash + managed coins, at most ``capital_quote``."""
    share = (account_cash + coins_value) * Decimal(repr(params.capital_frac))
    return min(share, params.capital_quote) if params.capital_quote > 0 else share


def start_ledger(*, account_cash: Decimal, coins_value: Decimal, params: BookParams, now_ms: int,
                 fills: Iterable[JournalEvent]) -> CashLedger:
    """A new ledger at ``now_ms``: the managed coins are the bot's, its cash is the rest of its capital (within
    [0, account cash]). Fills journaled at ``now_ms`` already (found by this run's reconciliation) are in the
    balances it starts from, so they count as booked."""
    capital = start_capital(account_cash=account_cash, coins_value=coins_value, params=params)
    cash = min(max(capital - coins_value, Decimal(0)), max(account_cash, Decimal(0)))
    booked = {e.client_order_id: e.time_ms for e in fills
              if e.event == "filled" and e.client_order_id and e.time_ms >= now_ms}
    return CashLedger(cash_quote=cash, started_ms=now_ms, start_quote=cash + coins_value, flows_quote=Decimal(0),
                      booked_since_ms=now_ms, booked=booked)


def fill_cash_quote(event: JournalEvent) -> Decimal:
    """What one fill did to the bot's cash: + a sell's notional, - a buy's, - the fee it paid in the quote."""
    assert event.filled_amount_base is not None and event.symbol is not None
    price = event.average_price if event.average_price else event.reference_price
    notional = event.filled_amount_base * Decimal(repr(float(price or 0.0)))
    return (notional if event.requested_side == "sell" else -notional) - fee_paid_in_quote(event)


def fee_paid_in_quote(event: JournalEvent) -> Decimal:
    """The part of a fill's fee that left the quote cash: its ``fees_paid`` in the symbol's quote currency; for a
    line without ``fees_paid`` (written before it existed) the whole ``fee_quote``, as then."""
    if event.fees_paid is None:
        return Decimal(repr(event.fee_quote or 0.0))
    quote = quote_of(event.symbol or "")
    return sum((amount for currency, amount in event.fees_paid if currency == quote), Decimal(0))


def book_fills(ledger: CashLedger, events: Iterable[JournalEvent], *, mode: str, venue: str,
               now_ms: int) -> CashLedger:
    """The ledger with every fill of ``mode``/``venue`` not booked yet added once (idempotent: run it again on the
    same journal and nothing changes), its booked ids kept for BOOKED_WINDOW_MS."""
    cash, booked = ledger.cash_quote, dict(ledger.booked)
    for event in events:
        if (event.event != "filled" or (event.mode, event.venue) != (mode, venue) or not event.client_order_id
                or event.time_ms < ledger.booked_since_ms or event.client_order_id in booked):
            continue
        cash += fill_cash_quote(event)
        booked[event.client_order_id] = event.time_ms
    since = max(ledger.booked_since_ms, now_ms - BOOKED_WINDOW_MS)
    return replace(ledger, cash_quote=cash, booked_since_ms=since,
                   booked={cid: t for cid, t in booked.items() if t >= since})


def add_flows(ledger: CashLedger, flows_quote: Decimal) -> CashLedger:
    """Capital the owner gave the bot (> 0) or took back (< 0): recorded with scripts/cashflow.py."""
    return replace(ledger, cash_quote=ledger.cash_quote + flows_quote, flows_quote=ledger.flows_quote + flows_quote)


def reconcile(ledger: CashLedger, *, account_cash: Decimal) -> Reconciled:
    """The ledger can never hold more than the account's quote cash: above it, it drops to it (a loss)."""
    shortfall = ledger.cash_quote - max(account_cash, Decimal(0))
    if shortfall <= 0:
        return Reconciled(ledger=ledger, shortfall_quote=Decimal(0))
    return Reconciled(ledger=replace(ledger, cash_quote=ledger.cash_quote - shortfall), shortfall_quote=shortfall)

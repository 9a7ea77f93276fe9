"""Edge: the account valued at this run's prices (asked of the venue session), with its risk baselines."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from loguru import logger

from lib.core.errors import DataError, StateError
from lib.core.state import CashLedger, Positions, RiskBaselines
from lib.core.symbols import base_of, quote_of
from lib.core.venue import Holdings
from lib.execution import bot_ledger
from lib.execution.cashflows import CashFlow, sum_flows_quote
from lib.execution.ccxt_client import call
from lib.execution.journal import JournalEvent, compute_fill_positions
from lib.execution.managed_book import BookParams, sizing_equity, split_holdings
from lib.execution.orders import compute_equity_quote
from lib.execution.risk_baselines import roll_baselines
from lib.execution.venue_session import Session


@dataclass(frozen=True, slots=True, kw_only=True)
class Book:
    """The bot's book (lib.execution.managed_book) valued at this run's prices (each stamped with the venue's
    time of it), with the risk baselines. ``sizing_equity_quote`` is what the targets' weights are fractions of.
    With a ``ledger`` (lib.execution.bot_ledger) ``holdings.cash_quote`` is the bot's own cash, not the account's."""

    holdings: Holdings
    prices: dict[str, float]
    price_times_ms: dict[str, int | None]  # None: the venue gave no time (the staleness check fails closed)
    equity_quote: float
    baselines: RiskBaselines
    sizing_equity_quote: float | None = None  # None: the whole equity_quote
    managed: frozenset[str] | None = None  # spot symbols of the bot's book; None: every holding
    ignored: dict[str, float] = field(default_factory=dict)  # holdings outside it: never valued or traded
    unpriced: dict[str, float] = field(default_factory=dict)  # no live price: at the last stored close, never traded
    unpriced_since_ms: dict[str, int] = field(default_factory=dict)  # first run each was found without a price
    ledger: CashLedger | None = None  # the bot's cash in a shared account (after this run's reconciliation)
    account_cash_quote: float | None = None  # the account's real quote cash when there is a ledger
    shortfall_quote: float = 0.0  # the ledger was above the account's quote cash by this much: a loss of the bot
    moved_outside: dict[str, tuple[float, float]] = field(default_factory=dict)  # symbol: (expected, found)

    @property
    def sizing_quote(self) -> float:
        return self.equity_quote if self.sizing_equity_quote is None else self.sizing_equity_quote

    def managed_holdings(self, holdings: Holdings) -> Holdings:
        return holdings if self.managed is None else split_holdings(holdings, self.managed)[0]

    def alerts(self) -> list[str]:
        """What a person must hear about this book (sent through the alert path by rebalance)."""
        messages = []
        if self.unpriced:  # delisted / no ticker: valued at the last stored close, kept, never ordered
            messages.append("coinbot: no live price for held " + ", ".join(
                f"{s} (valued at its last stored close {p:g})" for s, p in sorted(self.unpriced.items()))
                + ": never traded by the bot; sell or write it off")
        if self.shortfall_quote > float(bot_ledger.DUST_QUOTE):
            messages.append(f"coinbot: the account holds {self.shortfall_quote:.2f} less quote cash than the bot's own "
                            "cash ledger (not recorded with scripts/cashflow.py?): booked as a loss of the bot")
        if self.moved_outside:  # the exchange is the truth; a person must know it moved, or it reads as P&L
            messages.append("coinbot: the account's coins changed outside the bot since its last run: " + "; ".join(
                f"{s} {was:g} -> {now:g} ({(now - was) * self.prices.get(s, 0.0):+.2f} {quote_of(s)})"
                for s, (was, now) in sorted(self.moved_outside.items())) + ". A manual trade or a transfer? Record "
                "a withdrawal/deposit's value with scripts/cashflow.py, or it counts as the bot's profit or loss")
        return messages


def moved_outside(previous: Positions | None, holdings: Holdings, prices: dict[str, float],
                  fills: Sequence[JournalEvent], *, managed: frozenset[str] | None) -> dict[str, tuple[float, float]]:
    """Managed coins whose amount on the venue differs from the last positions.json plus the bot's fills since
    (net of commissions in the coin) by more than dust: {symbol: (expected, found)}."""
    if previous is None:
        return {}
    since = [e for e in fills if e.event == "filled" and e.symbol and e.time_ms > previous.updated_ms
             and (e.mode, e.venue) == (previous.mode, previous.venue)]
    moved = dict(compute_fill_positions(since))
    for fill in since:  # a commission paid in a third coin the bot manages (BNB) is less of that coin
        assert fill.symbol is not None
        for currency, amount in fill.fees_paid or ():
            if currency not in (base_of(fill.symbol), quote_of(fill.symbol)):
                third = f"{currency}/{quote_of(fill.symbol)}"
                moved[third] = moved.get(third, Decimal(0)) - amount
    was = {**previous.ignored_base, **previous.amounts_base}
    changed = {}
    for symbol in sorted(set(holdings.amounts_base) | {s for s in was if managed is None or s in managed}):
        expected = Decimal(repr(was.get(symbol, 0.0))) + moved.get(symbol, Decimal(0))
        found = Decimal(repr(holdings.amounts_base.get(symbol, 0.0)))
        if ":" not in symbol and abs(found - expected) * Decimal(repr(prices.get(symbol, 0.0))) > bot_ledger.DUST_QUOTE:
            changed[symbol] = (float(expected), float(found))
    return changed


def value_book(session: Session, *, previous: Positions | None, target_symbols: Iterable[str], now_ms: int,
               reset_baseline: bool, cashflows: Iterable[CashFlow] = (), managed: frozenset[str] | None = None,
               book_params: BookParams | None = None, ledger_fills: Sequence[JournalEvent] | None = None) -> Book:
    """Holdings, prices of the targets and holdings, equity, and the baselines (lib.execution.risk_baselines),
    shifted by the external cash flows since the previous run (lib.execution.cashflows).

    ``ledger_fills`` (the journal; spot books) with a capital setting in ``book_params``: the bot's equity is its
    own cash ledger + its managed coins (lib.execution.bot_ledger), and only flows recorded by hand are the bot's.
    """
    holdings, ignored = session.fetch_holdings(), dict[str, float]()
    if managed is not None:
        holdings, ignored = split_holdings(holdings, managed)
        if ignored:
            logger.info("not the bot's (ignored, never traded): {}", ", ".join(f"{s} {a:g}" for s, a in
                                                                               sorted(ignored.items())))
    prices = session.fetch_prices(set(target_symbols) | set(holdings.amounts_base))
    cashflows = list(cashflows)
    use_ledger = book_params is not None and book_params.has_capital and ledger_fills is not None
    if previous is not None and previous.ledger is not None and not use_ledger and not reset_baseline:
        raise StateError("positions.json measures the bot's own capital (a cash ledger) but [book] sets no "
                         "capital_quote/capital_frac any more: restore them, or run rebalance --reset-high-water-mark "
                         "once to measure the whole account from now")
    if use_ledger:  # the exchange's deposit/withdrawal history is the account's, not the bot's capital
        if any(f.source != "manual" for f in cashflows):
            logger.info("the exchange's deposits/withdrawals move the account, not the bot's own capital: ignored")
        cashflows = [f for f in cashflows if f.source == "manual"]
    flows = 0.0 if previous is None else sum_flows_quote(cashflows, after_ms=previous.updated_ms, until_ms=now_ms)
    ledger, shortfall, account_cash = None, Decimal(0), None
    fresh = previous is None or (previous.ledger is not None and not use_ledger)  # ends: measure the account anew
    if use_ledger:
        assert book_params is not None and ledger_fills is not None
        account_cash = holdings.cash_quote
        ledger, shortfall, flows, started = _bot_cash(session, holdings, prices, previous, ledger_fills, book_params,
                                                      now_ms=now_ms, flows=flows)
        fresh = fresh or started
        holdings = replace(holdings, cash_quote=float(ledger.cash_quote))
    equity = compute_equity_quote(holdings, prices)
    if flows:
        logger.info("external cash flows since the last run: {:+.2f} (peak, start of day and inception shifted)",
                    flows)
    if reset_baseline and previous is not None:
        logger.warning("high-water mark reset from {:.2f} to {:.2f} and the day restarted (by request)",
                       previous.high_water_mark_quote, equity)
    times = {symbol: session.price_times_ms.get(symbol) for symbol in prices if symbol not in session.unpriced}
    baselines = roll_baselines(None if fresh else previous, equity_quote=equity, now_ms=now_ms, reset=reset_baseline,
                               flows_quote=flows)
    if fresh and previous is not None:  # the ledger starts (or ends) now: fees so far stay
        baselines = replace(baselines, fees_paid_quote=previous.fees_paid_quote)
    unpriced = {s: p for s, p in session.unpriced.items() if s in prices}
    since = {s: previous.unpriced[s].since_ms if previous is not None and s in previous.unpriced else now_ms
             for s in unpriced}
    outside = {} if ledger_fills is None else moved_outside(previous, holdings, prices, ledger_fills, managed=managed)
    return Book(holdings=holdings, prices=prices, price_times_ms=times, moved_outside=outside,
                equity_quote=equity, managed=managed, ignored=ignored, unpriced=unpriced, unpriced_since_ms=since,
                sizing_equity_quote=None if book_params is None or ledger else sizing_equity(equity, book_params),
                baselines=baselines, ledger=ledger, account_cash_quote=account_cash, shortfall_quote=float(shortfall))


def quote_cash_held(session: Session, free: Decimal, needed: Decimal) -> Decimal:
    """The account's quote cash the bot's ledger is reconciled with: the free cash, or where that is below
    ``needed``, free + locked (a person's open order locking cash is no loss of the bot's)."""
    if free >= needed or session.client is None:  # paper: every coin is free
        return free
    client = session.client
    balance = call(client, "fetch_balance", lambda: client.fetch_balance()).get(session.quote) or {}
    total = balance.get("total")
    if not isinstance(total, int | float) or not math.isfinite(total):
        raise DataError(f"fetch_balance: no total {session.quote} balance ({total!r}): cannot check the bot's cash")
    return max(free, Decimal(repr(float(total))))


def _bot_cash(session: Session, account: Holdings, prices: dict[str, float], previous: Positions | None,
              fills: Sequence[JournalEvent], params: BookParams, *, now_ms: int,
              flows: float) -> tuple[CashLedger, Decimal, float, bool]:
    """(the bot's ledger reconciled with the account, the shortfall, the bot's flows, whether it started now)."""
    cash = Decimal(repr(account.cash_quote))
    coins = Decimal(repr(compute_equity_quote(Holdings(cash_quote=0.0, amounts_base=account.amounts_base), prices)))
    if previous is None or previous.ledger is None:
        ledger = bot_ledger.start_ledger(account_cash=cash, coins_value=coins, params=params, now_ms=now_ms,
                                         fills=fills)
        logger.warning("the bot's capital starts now: {:.2f} (cash {:.2f} of the account's {:.2f} + managed coins "
                       "{:.2f}); drawdown, daily loss and P&L are measured on it from here", ledger.start_quote,
                       ledger.cash_quote, cash, coins)
        flows, started = 0.0, True  # flows before the start are in the balances it starts from
    else:
        ledger = bot_ledger.book_fills(previous.ledger, fills, mode=previous.mode, venue=previous.venue, now_ms=now_ms)
        ledger, started = bot_ledger.add_flows(ledger, Decimal(repr(flows))), False
    reconciled = bot_ledger.reconcile(ledger, account_cash=quote_cash_held(session, cash, ledger.cash_quote))
    if reconciled.ledger.cash_quote > cash:  # there, but not free
        logger.warning("{:.2f} of the bot's cash is locked by open orders it did not place: its buys may be "
                       "rejected until they are gone", reconciled.ledger.cash_quote - cash)
    if reconciled.shortfall_quote > 0:
        logger.log("WARNING" if reconciled.shortfall_quote > bot_ledger.DUST_QUOTE else "DEBUG",
                   "the bot's cash ledger {:.8f} is above the account's quote cash {:.8f}: it drops to it (a loss "
                   "of {:.8f} for the bot)", ledger.cash_quote, cash, reconciled.shortfall_quote)
    return reconciled.ledger, reconciled.shortfall_quote, flows, started


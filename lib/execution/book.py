"""Edge: the account valued at this run's prices (asked of the venue session), with its risk baselines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from loguru import logger

from lib.core.state import Positions, RiskBaselines
from lib.core.venue import Holdings
from lib.execution.cashflows import CashFlow, sum_flows_quote
from lib.execution.managed_book import BookParams, sizing_equity, split_holdings
from lib.execution.orders import compute_equity_quote
from lib.execution.risk_baselines import roll_baselines
from lib.execution.venue_session import Session


@dataclass(frozen=True, slots=True, kw_only=True)
class Book:
    """The bot's book (lib.execution.managed_book) valued at this run's prices (each stamped with the venue's
    time of it), with the risk baselines. ``sizing_equity_quote`` is what the targets' weights are fractions of."""

    holdings: Holdings
    prices: dict[str, float]
    price_times_ms: dict[str, int | None]  # None: the venue gave no time (the staleness check fails closed)
    equity_quote: float
    baselines: RiskBaselines
    sizing_equity_quote: float | None = None  # None: the whole equity_quote
    managed: frozenset[str] | None = None  # spot symbols of the bot's book; None: every holding
    ignored: dict[str, float] = field(default_factory=dict)  # holdings outside it: never valued or traded
    unpriced: dict[str, float] = field(default_factory=dict)  # no live price: at the last stored close, never traded

    @property
    def sizing_quote(self) -> float:
        return self.equity_quote if self.sizing_equity_quote is None else self.sizing_equity_quote

    def managed_holdings(self, holdings: Holdings) -> Holdings:
        return holdings if self.managed is None else split_holdings(holdings, self.managed)[0]


def value_book(session: Session, *, previous: Positions | None, target_symbols: Iterable[str], now_ms: int,
               reset_baseline: bool, cashflows: Iterable[CashFlow] = (), managed: frozenset[str] | None = None,
               book_params: BookParams | None = None) -> Book:
    """Holdings, prices of the targets and holdings, equity, and the baselines (lib.execution.risk_baselines),
    shifted by the external cash flows since the previous run (lib.execution.cashflows)."""
    holdings, ignored = session.fetch_holdings(), dict[str, float]()
    if managed is not None:
        holdings, ignored = split_holdings(holdings, managed)
        if ignored:
            logger.info("not the bot's (ignored, never traded): {}", ", ".join(f"{s} {a:g}" for s, a in
                                                                               sorted(ignored.items())))
    prices = session.fetch_prices(set(target_symbols) | set(holdings.amounts_base))
    equity = compute_equity_quote(holdings, prices)
    flows = 0.0 if previous is None else sum_flows_quote(cashflows, after_ms=previous.updated_ms, until_ms=now_ms)
    if flows:
        logger.info("external cash flows since the last run: {:+.2f} (peak, start of day and inception shifted)",
                    flows)
    if reset_baseline and previous is not None:
        logger.warning("high-water mark reset from {:.2f} to {:.2f} and the day restarted (by request)",
                       previous.high_water_mark_quote, equity)
    times = {symbol: session.price_times_ms.get(symbol) for symbol in prices if symbol not in session.unpriced}
    return Book(holdings=holdings, prices=prices, price_times_ms=times,
                equity_quote=equity, managed=managed, ignored=ignored,
                unpriced={s: p for s, p in session.unpriced.items() if s in prices},
                sizing_equity_quote=None if book_params is None else sizing_equity(equity, book_params),
                baselines=roll_baselines(previous, equity_quote=equity, now_ms=now_ms, reset=reset_baseline,
                                         flows_quote=flows))

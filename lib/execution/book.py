"""Edge: the account valued at this run's prices (asked of the venue session), with its risk baselines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from loguru import logger

from lib.core.state import Positions, RiskBaselines
from lib.core.venue import Holdings
from lib.execution.orders import compute_equity_quote
from lib.execution.risk_baselines import roll_baselines
from lib.execution.venue_session import Session


@dataclass(frozen=True, slots=True, kw_only=True)
class Book:
    """The account valued at this run's prices (each stamped with the venue's time of it), with the baselines."""

    holdings: Holdings
    prices: dict[str, float]
    price_times_ms: dict[str, int | None]  # None: the venue gave no time (the staleness check fails closed)
    equity_quote: float
    baselines: RiskBaselines


def value_book(session: Session, *, previous: Positions | None, target_symbols: Iterable[str], now_ms: int,
               reset_baseline: bool) -> Book:
    """Holdings, prices of the targets and holdings, equity, and the baselines (lib.execution.risk_baselines)."""
    holdings = session.fetch_holdings()
    prices = session.fetch_prices(set(target_symbols) | set(holdings.amounts_base))
    equity = compute_equity_quote(holdings, prices)
    if reset_baseline and previous is not None:
        logger.warning("high-water mark reset from {:.2f} to {:.2f} and the day restarted (by request)",
                       previous.high_water_mark_quote, equity)
    times = {symbol: session.price_times_ms.get(symbol) for symbol in prices}
    return Book(holdings=holdings, prices=prices, price_times_ms=times, equity_quote=equity,
                baselines=roll_baselines(previous, equity_quote=equity, now_ms=now_ms, reset=reset_baseline))

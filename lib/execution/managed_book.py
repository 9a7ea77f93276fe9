"""Pure: the part of the account that is the bot's book: its capital and its managed set of coins.

A spot account usually holds more than the bot's book (BNB kept for fees, USDC, a long-term bag). Only the
managed set is valued, traded or closed: the configured universe plus every symbol the journal shows the bot
traded, minus ``book.ignored_assets``. Everything else is ignored (never sold, not in equity) and listed by
``doctor``. With ``book.capital_quote`` or ``book.capital_frac`` set in a spot account, the bot's capital is its
own cash ledger (lib.execution.bot_ledger; started from ``capital_frac`` of the managed book, at most
``capital_quote``) plus its managed coins: targets, drawdown, daily loss and P&L are measured on it, never on the
owner's cash. Without them (and for perps) the whole managed book (quote cash + managed coins) is the bot's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from lib.core.errors import ConfigError
from lib.core.symbols import base_of, to_spot
from lib.core.venue import Holdings


@dataclass(frozen=True, slots=True, kw_only=True)
class BookParams:
    """TOML section ``book``."""

    capital_quote: Decimal = Decimal(0)  # the bot's starting capital (at most this much quote); 0 = no cap
    capital_frac: float = 1.0  # share of the managed book (quote cash + managed coins) that is the bot's capital
    ignored_assets: tuple[str, ...] = ()  # base assets never traded, even in the universe (e.g. "BNB" for fees)
    exchange_cashflows: bool = False  # also read deposits/withdrawals from the exchange (lib.execution.ccxt_cashflows)

    @property
    def has_capital(self) -> bool:
        """A capital cap or share is set: the bot keeps its own cash ledger (spot)."""
        return self.capital_quote > 0 or self.capital_frac < 1

    def __post_init__(self) -> None:
        if not self.capital_quote.is_finite() or self.capital_quote < 0:
            raise ConfigError(f"book.capital_quote must be >= 0 (0 = no cap), got {self.capital_quote}")
        if not 0 < self.capital_frac <= 1:
            raise ConfigError(f"book.capital_frac must be in (0, 1], got {self.capital_frac}")
        for asset in self.ignored_assets:
            if not asset.isalnum() or asset != asset.upper():
                raise ConfigError(f"book.ignored_assets: {asset!r} is not an upper-case asset code like BNB")


def managed_symbols(universe: Iterable[str], traded: Iterable[str], params: BookParams) -> frozenset[str]:
    """Spot symbols (``BASE/QUOTE``) of the bot's book: the universe and what it traded, minus ignored assets."""
    symbols = {to_spot(symbol) for symbol in (*universe, *traded)}
    return frozenset(s for s in symbols if base_of(s) not in params.ignored_assets)


def split_holdings(holdings: Holdings, managed: frozenset[str]) -> tuple[Holdings, dict[str, float]]:
    """(the managed holdings with all quote cash, the ignored ones): a perp counts by its spot symbol."""
    kept = {s: a for s, a in holdings.amounts_base.items() if to_spot(s) in managed}
    ignored = {s: a for s, a in holdings.amounts_base.items() if to_spot(s) not in managed}
    return replace(holdings, amounts_base=kept), ignored


def sizing_equity(equity_quote: float, params: BookParams) -> float:
    """The equity the targets' weights are fractions of: the bot's capital."""
    share = equity_quote * params.capital_frac
    return min(share, float(params.capital_quote)) if params.capital_quote > 0 else share

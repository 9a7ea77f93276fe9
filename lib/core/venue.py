"""Pure: the interfaces every venue implements, and the records that cross them.

A *venue* is where market data comes from (`MarketData`) and where orders go (`Broker`):
- `lib.execution.ccxt_venue.CcxtVenue` implements both over any ccxt exchange (testnet/live, or a fake server);
- `lib.execution.simulated.SimulatedMarket` implements `MarketData` with deterministic synthetic markets;
- `lib.execution.paper.PaperBroker` implements `Broker` as an in-memory account (paper mode).

Amounts that reach a broker are `Decimal`, already rounded to the market's rules by lib/execution/orders.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

Side = Literal["buy", "sell"]
OrderStatus = Literal["open", "closed", "canceled", "rejected", "expired"]

OHLCV_ROW_LENGTH = 6
"""A raw candle row is ``[open_time_ms, open, high, low, close, volume]`` (ccxt's layout)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketRules:
    """What an exchange allows for one market, from ccxt's market structure.

    ``amount_step`` is the lot size in base units (or contracts for perps); ``contract_size`` is
    the base amount per contract (1 for spot and Binance linear perps).
    """

    symbol: str
    base: str
    quote: str
    is_perpetual: bool
    amount_step: Decimal
    price_step: Decimal
    min_amount_base: Decimal
    max_amount_base: Decimal | None
    min_notional_quote: Decimal
    contract_size: Decimal = Decimal(1)
    taker_fee_frac: float = 0.001


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderResult:
    """What the venue says about one order (facts, not intent)."""

    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: Side
    status: OrderStatus
    requested_amount_base: Decimal
    filled_amount_base: Decimal
    average_price: float | None
    fee_quote: float
    timestamp_ms: int
    fees_paid: tuple[tuple[str, Decimal], ...] = ()
    """The commission as the exchange charged it: ``(currency, amount)`` per currency, sorted by currency (a spot
    buy's may be in the coin bought, or in BNB). Empty: the venue did not say (``fee_quote`` only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceQuote:
    """A last price and the venue's own time of it (the ticker's timestamp, never the run's clock), so a
    price the exchange stopped updating is seen as stale. ``time_ms`` None: the venue did not say (stale)."""

    price: float
    time_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Holdings:
    """Account snapshot: free quote cash and signed base amounts per symbol (negative = short).

    ``amounts_base`` is what is owned (valued in equity); ``free_base`` what of it can be sold now: coins locked
    by open orders the bot did not place (a person trading the same account) are owned but not sellable. A
    symbol missing from ``free_base`` (or None: paper, simulated, perps) is all free.
    """

    cash_quote: float
    amounts_base: dict[str, float]
    free_base: dict[str, float] | None = None

    def free_of(self, symbol: str) -> float:
        """What of ``symbol`` can be sold now (the whole amount unless the venue said less is free)."""
        held = self.amounts_base.get(symbol, 0.0)
        if self.free_base is None or symbol not in self.free_base:
            return held
        return min(held, self.free_base[symbol])


class MarketData(Protocol):
    def load_markets(self) -> dict[str, MarketRules]: ...

    def fetch_ohlcv(self, symbol: str, timeframe: str, *, since_ms: int, limit: int) -> list[list[float]]:
        """Candles with open time >= since_ms, oldest first, at most ``limit``; may include the forming one."""
        ...

    def fetch_funding_history(self, symbol: str, *, since_ms: int, limit: int) -> list[tuple[int, float]]:
        """``(settlement_time_ms, rate)`` pairs with time >= since_ms, oldest first."""
        ...

    def fetch_last_prices(self, symbols: list[str]) -> dict[str, float]: ...

    def fetch_price_quotes(self, symbols: list[str]) -> dict[str, PriceQuote]:
        """Last prices with the venue's time of each (risk.max_price_age_ms is measured from it)."""
        ...

    def fetch_server_time_ms(self) -> int | None:
        """The venue's own clock (None: it cannot say), to catch a local clock that runs ahead."""
        ...


class Broker(Protocol):
    def fetch_holdings(self) -> Holdings: ...

    def create_market_order(
        self, symbol: str, side: Side, amount_base: Decimal, *, client_order_id: str, reduce_only: bool = False
    ) -> OrderResult: ...

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> OrderResult | None:
        """The order placed with this client id, or None if the venue never received it."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPermissions:
    """What the exchange says the configured API key may do (facts read from the exchange, never assumed).

    A key that can withdraw turns a leaked .env into lost funds, so live trading refuses one
    (lib.execution.risk_live_key.check_key_permissions). ``ip_restricted`` is None when the exchange does not say;
    ``raw_source`` names where the facts came from, e.g. "binance GET /sapi/v1/account/apiRestrictions".
    """

    can_trade: bool
    can_withdraw: bool
    ip_restricted: bool | None
    raw_source: str

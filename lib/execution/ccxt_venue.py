"""Edge: ``CcxtVenue``, the MarketData and Broker of any ccxt exchange (testnet/live, or a fake server),
over one client from ``lib.execution.ccxt_client`` and the market parsing of ``lib.execution.ccxt_markets``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any

import ccxt
from loguru import logger

from lib.core.errors import ConfigError, DataError, ExchangeError, ExchangeUnavailable, OrderRejected
from lib.core.symbols import is_perpetual
from lib.core.venue import Holdings, MarketRules, OrderResult, OrderStatus, PriceQuote, Side
from lib.execution.ccxt_client import call, isolated_decimal_context
from lib.execution.ccxt_markets import to_market_rules

_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")
"""An asset code a unified symbol can carry (lib.core.symbols); any other balance cannot be the bot's."""


class CcxtVenue:
    """MarketData and Broker over one ccxt client."""

    def __init__(self, client: Any, *, quote: str = "USDT") -> None:
        self.client = client
        self.quote = quote  # the book's cash currency
        self.market_type = "swap" if client.options.get("defaultType") in ("swap", "future") else "spot"
        self._markets: dict[str, MarketRules] | None = None

    def load_markets(self) -> dict[str, MarketRules]:
        if self._markets is None:
            raw_markets = call(self.client, "load_markets", lambda: _non_empty(self.client.load_markets()))
            rules: dict[str, MarketRules] = {}
            for symbol, market in raw_markets.items():
                if not market.get("active", True) or market.get("type") not in ("spot", "swap"):
                    continue
                try:  # the exchange's own precision mode: TICK_SIZE (Binance) or DECIMAL_PLACES
                    rules[symbol] = to_market_rules(market, precision_mode=int(self.client.precisionMode))
                except DataError as error:
                    logger.debug("skipping market {}: {}", symbol, error)
            if not rules:
                raise DataError("load_markets: the exchange listed no usable spot/swap markets")
            self._markets = rules
        return self._markets

    def fetch_ohlcv(self, symbol: str, timeframe: str, *, since_ms: int, limit: int) -> list[list[float]]:
        self.load_markets()  # through the retry policy: ccxt would cache one garbled exchangeInfo as "no markets"
        rows = call(self.client, f"fetch_ohlcv {symbol} {timeframe}",
                    lambda: self.client.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=limit))
        if not isinstance(rows, list):
            raise DataError(f"fetch_ohlcv {symbol} {timeframe}: expected a list, got {type(rows).__name__}")
        return rows

    def fetch_funding_history(self, symbol: str, *, since_ms: int, limit: int) -> list[tuple[int, float]]:
        self.load_markets()
        entries = call(self.client, f"fetch_funding_rate_history {symbol}",
                       lambda: self.client.fetch_funding_rate_history(symbol, since=since_ms, limit=limit))
        try:
            return [(int(entry["timestamp"]), float(entry["fundingRate"])) for entry in entries]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"fetch_funding_rate_history {symbol}: malformed entry ({error})") from None

    def fetch_last_prices(self, symbols: list[str]) -> dict[str, float]:
        return {symbol: quote.price for symbol, quote in self.fetch_price_quotes(symbols).items()}

    def fetch_price_quotes(self, symbols: list[str]) -> dict[str, PriceQuote]:
        """Last prices stamped with the ticker's own timestamp (None when the exchange gave none: stale)."""
        self.load_markets()
        tickers = call(self.client, "fetch_tickers", lambda: _checked_dict(self.client.fetch_tickers(symbols)))
        quotes: dict[str, PriceQuote] = {}
        for symbol in symbols:
            ticker = tickers.get(symbol) or {}
            last, stamp = ticker.get("last"), ticker.get("timestamp")
            if isinstance(last, int | float) and math.isfinite(last) and last > 0:
                time_ms = int(stamp) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else None
                quotes[symbol] = PriceQuote(price=float(last), time_ms=time_ms if time_ms and time_ms > 0 else None)
        return quotes

    def fetch_server_time_ms(self) -> int | None:
        """The exchange's clock (Binance: GET /api/v3/time); None when ccxt cannot ask this exchange."""
        if not self.client.has.get("fetchTime"):
            return None
        server_ms = call(self.client, "fetch_time", lambda: self.client.fetch_time())
        if isinstance(server_ms, bool) or not isinstance(server_ms, int | float) or server_ms <= 0:
            raise DataError(f"fetch_time: not a time: {server_ms!r}")
        return int(server_ms)

    def fetch_holdings(self, *, unlisted: bool = False) -> Holdings:
        """Cash in the book's quote currency and the signed amount of each ``BASE/quote`` market.

        Balances in other quotes are not the book's and are ignored; each base asset maps to exactly one
        symbol (``BASE/quote`` spot, or the ``BASE/quote:quote`` perpetual's position). ``unlisted`` (spot): also
        every other coin held, as ``COIN/quote``, although the exchange no longer trades (status BREAK) or lists
        that market: it is still in the account, and dropping it would read its value as a loss.
        """
        markets = self.load_markets()
        balance = call(self.client, "fetch_balance", lambda: self.client.fetch_balance())
        quote_balance = balance.get(self.quote) or {}
        amounts: dict[str, float] = {}
        free: dict[str, float] = {}
        if self.market_type == "swap":
            positions = call(self.client, "fetch_positions", lambda: self.client.fetch_positions())
            for position in positions:
                symbol = position.get("symbol")
                rule = markets.get(symbol) if isinstance(symbol, str) else None
                contracts = _finite(position.get("contracts") or 0.0, f"position contracts {symbol}")
                if rule is None or rule.quote != self.quote or not contracts:
                    continue
                if rule.symbol in amounts:  # two positions in one market: a hedge-mode account
                    raise DataError(f"fetch_positions: {rule.symbol} has both a long and a short position "
                                    "(hedge mode): switch the account to one-way mode")
                sign = -1.0 if position.get("side") == "short" else 1.0
                amounts[rule.symbol] = sign * contracts * float(position.get("contractSize") or 1)
            cash = _finite(quote_balance.get("total") or 0.0, f"balance {self.quote}")  # wallet + unrealized PnL
        else:
            cash = _finite(quote_balance.get("free") or 0.0, f"balance {self.quote}")
            for symbol, rule in markets.items():
                if rule.is_perpetual or rule.quote != self.quote:
                    continue
                coin = balance.get(rule.base) or {}
                total = coin.get("total")
                if total:
                    amounts[symbol] = _finite(total, f"balance {rule.base}")
                    if coin.get("free") is not None:  # the rest is locked by open orders: owned, not sellable
                        free[symbol] = max(0.0, _finite(coin["free"], f"free balance {rule.base}"))
            traded = {symbol for symbol, rule in markets.items() if not rule.is_perpetual and rule.quote == self.quote}
            totals = balance.get("total") if unlisted else None
            for asset, total in (totals.items() if isinstance(totals, dict) else ()):
                if asset != self.quote and total and _ASSET.match(asset) and f"{asset}/{self.quote}" not in traded:
                    amounts[f"{asset}/{self.quote}"] = _finite(total, f"balance {asset}")
            negative = {name: value for name, value in {self.quote: cash, **amounts}.items() if value < 0}
            if negative:  # a spot account cannot hold less than nothing: the reply is wrong, do not trade on it
                raise DataError(f"fetch_balance: negative spot balances {negative}")
        return Holdings(cash_quote=cash, amounts_base=amounts, free_base=free or None)

    def create_market_order(self, symbol: str, side: Side, amount_base: Decimal, *, client_order_id: str,
                            reduce_only: bool = False) -> OrderResult:
        """Place one market order. Any refusal by the exchange is OrderRejected; an ambiguous outcome
        (network error, 5xx, unparseable reply) is ExchangeUnavailable: look the order up before deciding."""
        self._check_on_lot_grid(symbol, amount_base, client_order_id)
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if reduce_only and is_perpetual(symbol):
            params["reduceOnly"] = True
        try:
            order = call(self.client, f"create_order {symbol} {side} {amount_base}",
                         lambda: self.client.create_order(symbol, "market", side, float(amount_base), None, params),
                         idempotent=False)
        except ExchangeError as error:  # e.g. -1013 filter failures arrive as ccxt.BadRequest
            raise OrderRejected(str(error)) from None
        if not isinstance(order, dict) or not order.get("id"):
            # ccxt returns an id-less order for a body it could not parse, although the order may have executed
            raise ExchangeUnavailable(f"create_order {symbol} {client_order_id}: unreadable reply; look it up")
        return self._to_result(order, client_order_id=client_order_id, requested=amount_base)

    def _check_on_lot_grid(self, symbol: str, amount_base: Decimal, client_order_id: str) -> None:
        """ccxt's ``amount_to_precision`` (the exchange's precision mode) must leave the planned amount as it is:
        otherwise ccxt would silently send a different amount than the plan and the journal say.

        Raises:
            OrderRejected: nothing was sent.
        """
        self.load_markets()
        try:
            with isolated_decimal_context():
                on_grid = Decimal(str(self.client.amount_to_precision(symbol, float(amount_base))))
        except (ccxt.BaseError, ValueError, TypeError, ArithmeticError) as error:
            raise OrderRejected(f"create_order {symbol} {client_order_id}: amount {amount_base}: "
                                f"{type(error).__name__}: {error}") from None
        if on_grid != amount_base:
            raise OrderRejected(f"create_order {symbol} {client_order_id}: amount {amount_base} is not on the "
                                f"exchange's lot grid (ccxt amount_to_precision: {on_grid}); not sent")

    def check_one_way_mode(self) -> None:
        """Perps: the planner and the reconciliation assume one net position per market (one-way mode).

        Raises:
            ConfigError: the account is in hedge mode (dual side position), or says nothing about it.
        """
        if self.market_type != "swap" or not self.client.has.get("fetchPositionMode"):
            return
        mode = call(self.client, "fetch_position_mode", lambda: self.client.fetch_position_mode())
        hedged = mode.get("hedged") if isinstance(mode, dict) else None
        if hedged is not False:
            state = "hedge mode (dual side position)" if hedged else f"an unknown position mode ({hedged!r})"
            raise ConfigError(f"the futures account is in {state}: coinbot trades one net position per market; "
                              "switch it to one-way mode (Binance: Futures > Preferences > Position Mode) "
                              "with no open positions, then re-run")

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> OrderResult | None:
        def lookup() -> Any:
            try:
                return self.client.fetch_order(None, symbol, {"origClientOrderId": client_order_id})
            except ccxt.OrderNotFound:
                return None
        order = call(self.client, f"fetch_order {symbol} {client_order_id}", lookup)
        return None if order is None else self._to_result(order, client_order_id=client_order_id, requested=None)

    def _to_result(self, order: dict[str, Any], *, client_order_id: str, requested: Decimal | None) -> OrderResult:
        """The order with its fee in the quote. A filled order whose reply carries no fee (Binance's order
        lookup, a USD-M ACK), and a final one without its filled amount or average price (ccxt leaves what the
        exchange did not say None), takes them from the exchange's trade records of that order."""
        symbol = str(order.get("symbol") or "")
        order = _with_cost_average(order)
        unknown_fill = order.get("filled") is None and order.get("status") in ("closed", "canceled", "expired")
        order_fees = _fees_of(order)
        fills: list[tuple[Any, Any]] = [(fee, order.get("average") or order.get("price")) for fee in order_fees]
        if unknown_fill or (_positive(order.get("filled")) and not (fills and order.get("average"))):
            trades = call(self.client, f"fetch_my_trades {symbol} order {order.get('id')}",
                          lambda: self.client.fetch_my_trades(symbol, None, None, {"orderId": order.get("id")}))
            if not isinstance(trades, list):
                raise DataError(f"fetch_my_trades {symbol}: expected a list, got {type(trades).__name__}")
            trades = [trade for trade in trades if isinstance(trade, dict)]
            order = _filled_from_trades(order, trades, what=f"order {client_order_id}")
            fills = [(fee, order.get("average") or order.get("price")) for fee in order_fees] or [
                (fee, trade.get("price")) for trade in trades for fee in _fees_of(trade)]
        rule = self.load_markets().get(symbol)
        base = rule.base if rule is not None else symbol.split("/")[0]
        fee = fee_in_quote(fills, base=base, quote=self.quote, price_of=self._conversion_price,
                           what=f"order {client_order_id}")
        result = to_order_result(order, client_order_id=client_order_id, requested=requested, fee_quote=fee)
        return replace(result, fees_paid=fees_by_currency(fee for fee, _ in fills))

    def _conversion_price(self, currency: str) -> float | None:
        """The last price of ``currency`` in the book's quote (a fee paid in BNB, say), if it has a market."""
        markets = self.load_markets()
        symbol = next((s for s in (f"{currency}/{self.quote}", f"{currency}/{self.quote}:{self.quote}")
                       if s in markets), None)
        return None if symbol is None else self.fetch_last_prices([symbol]).get(symbol)


def fee_in_quote(fills: Sequence[tuple[Mapping[str, Any], Any]], *, base: str, quote: str,
                 price_of: Callable[[str], float | None], what: str) -> float:
    """Total fee in the quote currency: ``fills`` pairs each ccxt fee ``{cost, currency}`` with the fill price.

    A fee in the quote counts as is; in the base (Binance charges a spot buy's commission in the coin bought)
    at the fill price; in any other coin (BNB) at that coin's last price in the quote.

    >>> fee_in_quote([({"cost": 0.0001, "currency": "ETH"}, 2000.0), ({"cost": 0.3, "currency": "USDT"}, 2000.0)],
    ...              base="ETH", quote="USDT", price_of=lambda c: None, what="x")
    0.5

    Raises:
        DataError: a fee without a cost or currency, or one that cannot be converted (fail closed: never 0).
    """
    total = Decimal(0)
    for fee, fill_price in fills:
        cost, currency = fee.get("cost"), fee.get("currency")
        if cost is None or not isinstance(currency, str):
            raise DataError(f"{what}: fee without cost or currency: {dict(fee)!r}")
        amount = _decimal(cost, f"{what} fee cost")
        if currency == quote or amount == 0:
            total += amount
            continue
        rate = fill_price if currency == base else price_of(currency)
        if rate is None or not _positive(rate):
            raise DataError(f"{what}: cannot convert a fee of {amount} {currency} to {quote} (no price)")
        total += amount * _decimal(rate, f"{what} {currency} price")
    return float(total)


def fees_by_currency(fees: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, Decimal], ...]:
    """ccxt fees ``{cost, currency}`` summed per currency, as the exchange charged them (nothing converted).

    >>> fees_by_currency([{"cost": 0.0001, "currency": "ETH"}, {"cost": "0.0002", "currency": "ETH"}])
    (('ETH', Decimal('0.0003')),)

    Raises:
        DataError: a fee without a cost or currency (fail closed: never guessed).
    """
    totals: dict[str, Decimal] = {}
    for fee in fees:
        cost, currency = fee.get("cost"), fee.get("currency")
        if cost is None or not isinstance(currency, str) or not currency:
            raise DataError(f"fee without cost or currency: {dict(fee)!r}")
        totals[currency] = totals.get(currency, Decimal(0)) + _decimal(cost, f"fee in {currency}")
    return tuple(sorted(totals.items()))


def _fees_of(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """ccxt's ``fees`` list (one per currency), else its single ``fee``; entries without a cost are no fee."""
    fees = record.get("fees")
    listed = fees if isinstance(fees, list) and fees else [record.get("fee")]
    return [fee for fee in listed if isinstance(fee, Mapping) and fee.get("cost") is not None]


def _with_cost_average(order: dict[str, Any]) -> dict[str, Any]:
    """The order with its average fill price from its cost when the reply has a cost but no average."""
    if not order.get("average") and _positive(order.get("filled")) and _positive(order.get("cost")):
        return {**order, "average": float(_decimal(order["cost"], "cost") / _decimal(order["filled"], "filled"))}
    return order


def _filled_from_trades(order: dict[str, Any], trades: list[dict[str, Any]], *, what: str) -> dict[str, Any]:
    """The order's missing filled amount / average price from its trades (a closed order without either fails
    closed: never read as nothing filled)."""
    if order.get("filled") is not None and order.get("average"):
        return order
    amount = sum((_decimal(t.get("amount"), f"{what} trade amount") for t in trades), Decimal(0))
    cost = sum((_decimal(t.get("cost") if t.get("cost") is not None else
                         _decimal(t.get("amount"), "amount") * _decimal(t.get("price"), "price"), f"{what} trade cost")
                for t in trades), Decimal(0))
    if order.get("filled") is None and order.get("status") == "closed" and amount == 0:
        raise DataError(f"{what}: the exchange says it is closed but neither the order nor its trades say how much "
                        "filled; look at it on the exchange")
    filled = amount if order.get("filled") is None else _decimal(order["filled"], f"{what} filled")
    if amount > 0 and amount == filled:
        return {**order, "filled": str(filled), "average": order.get("average") or float(cost / amount)}
    return {**order, "filled": str(filled)}


def _positive(value: Any) -> bool:
    try:
        return Decimal(str(value)) > 0
    except (InvalidOperation, TypeError, ValueError):
        return False


def _decimal(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, TypeError, ValueError):
        raise DataError(f"{what}: not a number: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise DataError(f"{what}: must be a finite number >= 0, got {value!r}")
    return number


def to_order_result(order: dict[str, Any], *, client_order_id: str, requested: Decimal | None,
                    fee_quote: float) -> OrderResult:
    """ccxt order structure -> OrderResult (facts as the exchange reported them; the fee already in the quote)."""
    try:
        amount = Decimal(str(order.get("amount") if order.get("amount") is not None else requested))
        filled = Decimal(str(order.get("filled") or 0))
        average = order.get("average") or order.get("price")
        status: OrderStatus = order.get("status") or "open"
        if status not in ("open", "closed", "canceled", "rejected", "expired"):
            status = "open"
        return OrderResult(
            client_order_id=str(order.get("clientOrderId") or client_order_id),
            exchange_order_id=str(order.get("id") or ""), symbol=str(order["symbol"]), side=order["side"],
            status=status,
            requested_amount_base=amount, filled_amount_base=filled,
            average_price=float(average) if average else None,
            fee_quote=fee_quote, timestamp_ms=int(order.get("timestamp") or 0),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        raise DataError(f"malformed order response for {client_order_id}: {error}") from None


def _non_empty(markets: Any) -> Any:
    """ccxt reads a garbled exchangeInfo as no markets at all: transient, never "every symbol is unknown"."""
    if not markets:
        raise ccxt.ExchangeNotAvailable("load_markets: the exchange listed no markets (garbled exchangeInfo?)")
    return markets


def _checked_dict(reply: Any) -> dict[str, Any]:
    """A reply that must be a mapping; anything else (an empty 200 body parsed as nothing) is transient."""
    if not isinstance(reply, dict):
        raise ccxt.ExchangeNotAvailable(f"expected an object, got {type(reply).__name__}")
    return reply


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what}: not a number: {value!r}") from None
    if not math.isfinite(number):
        raise DataError(f"{what}: not finite: {value!r}")
    return number

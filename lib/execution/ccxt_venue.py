"""Edge: ``CcxtVenue``, the MarketData and Broker of any ccxt exchange (testnet/live, or a fake server),
over one client from ``lib.execution.ccxt_client`` and the market parsing of ``lib.execution.ccxt_markets``."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import ccxt
from loguru import logger

from lib.core.errors import DataError, ExchangeError, ExchangeUnavailable, OrderRejected
from lib.core.symbols import is_perpetual
from lib.core.venue import Holdings, MarketRules, OrderResult, OrderStatus, Side
from lib.execution.ccxt_client import call
from lib.execution.ccxt_markets import to_market_rules


class CcxtVenue:
    """MarketData and Broker over one ccxt client."""

    def __init__(self, client: Any, *, quote: str = "USDT") -> None:
        self.client = client
        self.quote = quote  # the book's cash currency
        self.market_type = "swap" if client.options.get("defaultType") in ("swap", "future") else "spot"
        self._markets: dict[str, MarketRules] | None = None

    def load_markets(self) -> dict[str, MarketRules]:
        if self._markets is None:
            raw_markets = call(self.client, "load_markets", lambda: self.client.load_markets())
            rules: dict[str, MarketRules] = {}
            for symbol, market in raw_markets.items():
                if not market.get("active", True) or market.get("type") not in ("spot", "swap"):
                    continue
                try:
                    rules[symbol] = to_market_rules(market)
                except DataError as error:
                    logger.debug("skipping market {}: {}", symbol, error)
            if not rules:
                raise DataError("load_markets: the exchange listed no usable spot/swap markets")
            self._markets = rules
        return self._markets

    def fetch_ohlcv(self, symbol: str, timeframe: str, *, since_ms: int, limit: int) -> list[list[float]]:
        rows = call(self.client, f"fetch_ohlcv {symbol} {timeframe}",
                    lambda: self.client.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=limit))
        if not isinstance(rows, list):
            raise DataError(f"fetch_ohlcv {symbol} {timeframe}: expected a list, got {type(rows).__name__}")
        return rows

    def fetch_funding_history(self, symbol: str, *, since_ms: int, limit: int) -> list[tuple[int, float]]:
        entries = call(self.client, f"fetch_funding_rate_history {symbol}",
                       lambda: self.client.fetch_funding_rate_history(symbol, since=since_ms, limit=limit))
        try:
            return [(int(entry["timestamp"]), float(entry["fundingRate"])) for entry in entries]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"fetch_funding_rate_history {symbol}: malformed entry ({error})") from None

    def fetch_last_prices(self, symbols: list[str]) -> dict[str, float]:
        tickers = call(self.client, "fetch_tickers", lambda: self.client.fetch_tickers(symbols))
        prices: dict[str, float] = {}
        for symbol in symbols:
            last = (tickers.get(symbol) or {}).get("last")
            if isinstance(last, int | float) and math.isfinite(last) and last > 0:
                prices[symbol] = float(last)
        return prices

    def fetch_holdings(self) -> Holdings:
        """Cash in the book's quote currency and the signed amount of each ``BASE/quote`` market.

        Balances in other quotes are not the book's and are ignored; each base asset maps to exactly one
        symbol (``BASE/quote`` spot, or the ``BASE/quote:quote`` perpetual's position).
        """
        markets = self.load_markets()
        balance = call(self.client, "fetch_balance", lambda: self.client.fetch_balance())
        quote_balance = balance.get(self.quote) or {}
        amounts: dict[str, float] = {}
        if self.market_type == "swap":
            positions = call(self.client, "fetch_positions", lambda: self.client.fetch_positions())
            for position in positions:
                symbol = position.get("symbol")
                rule = markets.get(symbol) if isinstance(symbol, str) else None
                contracts = _finite(position.get("contracts") or 0.0, f"position contracts {symbol}")
                if rule is None or rule.quote != self.quote or not contracts:
                    continue
                sign = -1.0 if position.get("side") == "short" else 1.0
                amounts[rule.symbol] = sign * contracts * float(position.get("contractSize") or 1)
            cash = _finite(quote_balance.get("total") or 0.0, f"balance {self.quote}")  # wallet + unrealized PnL
        else:
            cash = _finite(quote_balance.get("free") or 0.0, f"balance {self.quote}")
            for symbol, rule in markets.items():
                if rule.is_perpetual or rule.quote != self.quote:
                    continue
                total = (balance.get(rule.base) or {}).get("total")
                if total:
                    amounts[symbol] = _finite(total, f"balance {rule.base}")
            negative = {name: value for name, value in {self.quote: cash, **amounts}.items() if value < 0}
            if negative:  # a spot account cannot hold less than nothing: the reply is wrong, do not trade on it
                raise DataError(f"fetch_balance: negative spot balances {negative}")
        return Holdings(cash_quote=cash, amounts_base=amounts)

    def create_market_order(self, symbol: str, side: Side, amount_base: Decimal, *, client_order_id: str,
                            reduce_only: bool = False) -> OrderResult:
        """Place one market order. Any refusal by the exchange is OrderRejected; an ambiguous outcome
        (network error, 5xx, unparseable reply) is ExchangeUnavailable: look the order up before deciding."""
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
        return to_order_result(order, client_order_id=client_order_id, requested=amount_base)

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> OrderResult | None:
        def lookup() -> Any:
            try:
                return self.client.fetch_order(None, symbol, {"origClientOrderId": client_order_id})
            except ccxt.OrderNotFound:
                return None
        order = call(self.client, f"fetch_order {symbol} {client_order_id}", lookup)
        return None if order is None else to_order_result(order, client_order_id=client_order_id, requested=None)


def to_order_result(order: dict[str, Any], *, client_order_id: str, requested: Decimal | None) -> OrderResult:
    """ccxt order structure -> OrderResult (facts as the exchange reported them)."""
    try:
        amount = Decimal(str(order.get("amount") if order.get("amount") is not None else requested))
        filled = Decimal(str(order.get("filled") or 0))
        average = order.get("average") or order.get("price")
        fee = order.get("fee") or {}
        status: OrderStatus = order.get("status") or "open"
        if status not in ("open", "closed", "canceled", "rejected", "expired"):
            status = "open"
        return OrderResult(
            client_order_id=str(order.get("clientOrderId") or client_order_id),
            exchange_order_id=str(order.get("id") or ""), symbol=str(order["symbol"]), side=order["side"],
            status=status,
            requested_amount_base=amount, filled_amount_base=filled,
            average_price=float(average) if average else None,
            fee_quote=float(fee.get("cost") or 0.0), timestamp_ms=int(order.get("timestamp") or 0),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        raise DataError(f"malformed order response for {client_order_id}: {error}") from None


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what}: not a number: {value!r}") from None
    if not math.isfinite(number):
        raise DataError(f"{what}: not finite: {value!r}")
    return number

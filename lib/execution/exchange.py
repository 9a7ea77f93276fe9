"""Edge: talks to exchanges through ccxt. Client factory, the retry policy for network errors, ccxt →
domain error translation, explicit-`since` paging, and `CcxtVenue` (MarketData + Broker).

ccxt exceptions never leave this module: callers see ExchangeUnavailable (transient, after retries),
ExchangeError (permanent), OrderRejected (the exchange said no) or DataError (a malformed answer).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import ccxt
from loguru import logger

from lib.core.errors import ConfigError, DataError, ExchangeError, ExchangeUnavailable, OrderRejected
from lib.core.retry import call_with_retry
from lib.core.symbols import is_perpetual
from lib.core.venue import Holdings, KeyPermissions, MarketData, MarketRules, OrderResult, OrderStatus, Side
from lib.execution.orders import to_market_rules
from lib.execution.simulated import SimulatedMarket
from lib.ops.config import ExchangeSection, Secrets, SimulatedParams

MAX_NETWORK_RETRIES = 4  # retries after the first attempt of a read (timeouts, 429/418, 5xx)
RETRY_BASE_DELAY_S = 0.5
RETRY_MAX_DELAY_S = 30.0


def connect_market_data(section: ExchangeSection, secrets: Secrets, *, now_ms: int,
                        simulated: SimulatedParams) -> MarketData:
    """The market-data source the config names: the built-in simulated market or a ccxt exchange."""
    if section.id == "simulated":
        return SimulatedMarket(simulated, now_ms=now_ms, market_type=section.market_type)
    return CcxtVenue(create_client(section, secrets))


def create_client(section: ExchangeSection, secrets: Secrets) -> Any:
    """A configured ccxt client: rate limiter on, timeout, keys, and the REST base URL override.

    Raises:
        ExchangeError: the id is not a ccxt exchange.
    """
    exchange_class = getattr(ccxt, section.id, None)
    if exchange_class is None or not isinstance(exchange_class, type):
        raise ExchangeError(f"exchange.id {section.id!r} is not a ccxt exchange")
    options: dict[str, Any] = {"defaultType": section.market_type}
    if section.id.startswith("binance"):
        # Load only the markets we trade: no sapi currency/margin calls, no other market types.
        options.update({"fetchMarkets": {"types": ["spot"] if section.market_type == "spot" else ["linear"]},
                        "fetchMargins": False, "fetchCurrencies": False})
    client = exchange_class({
        "enableRateLimit": section.enable_rate_limit,
        "timeout": section.timeout_ms,
        "apiKey": secrets.exchange_api_key or None,
        "secret": secrets.exchange_api_secret or None,
        "password": secrets.exchange_api_password or None,
        "options": options,
        "enableLastJsonResponse": True,  # lets `call` tell an unparseable body from an empty answer
    })
    if section.rest_base_url:
        client.urls["api"] = rebase_urls(client.urls["api"], section.rest_base_url)
        if hasattr(client, "get_exceptions_by_url"):
            _map_binance_errors_by_path(client)
    return client


_BINANCE_ERROR_TABLES_BY_PATH = {"/api/": "spot", "/sapi/": "spot", "/fapi/": "linear", "/dapi/": "inverse"}


def _map_binance_errors_by_path(client: Any) -> None:
    """ccxt's binance picks its spot/linear error tables by *hostname*; behind a rebased URL (testnet proxy,
    loopback) pick them by path, so e.g. a duplicate client id stays InvalidOrder rather than ExchangeError."""

    def get_exceptions_by_url(url: str | None, exact_or_broad: str) -> dict[str, Any]:
        path = urlsplit(url or "").path
        table = next((kind for prefix, kind in _BINANCE_ERROR_TABLES_BY_PATH.items() if path.startswith(prefix)), None)
        return dict(client.exceptions.get(table, {}).get(exact_or_broad, {})) if table else {}

    client.get_exceptions_by_url = get_exceptions_by_url


def rebase_urls(urls: Any, base_url: str) -> Any:
    """Replace scheme+host of every URL string (nested dicts allowed), keeping each path."""
    if isinstance(urls, dict):
        return {key: rebase_urls(value, base_url) for key, value in urls.items()}
    if isinstance(urls, str):
        parts = urlsplit(urls)
        return base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
    return urls


def call(client: Any, what: str, action: Any, *, idempotent: bool = True) -> Any:
    """Run one ccxt call with the retry policy and translate its errors to domain errors.

    Reads (``idempotent``) are retried on ccxt.OperationFailed, which covers NetworkError (timeouts,
    429/418 rate limits, maintenance) and HTTP 5xx. Order placement is never retried here: after an
    ambiguous failure the caller must look the order up by its client id before deciding anything.
    """
    def checked() -> Any:
        client.last_http_response, client.last_json_response = None, None
        result = action()
        body = client.last_http_response
        if isinstance(body, str) and body.strip() and client.last_json_response is None:
            # ccxt turns a truncated or non-JSON body into empty data ([] candles): never mistake it for "no data"
            raise ccxt.ExchangeNotAvailable(f"unparseable reply (not JSON): {body[:80]!r}")
        return result

    try:
        return call_with_retry(
            checked if idempotent else action, what=what,
            is_transient=lambda error: isinstance(error, ccxt.OperationFailed),
            retry_after_s=lambda error: _retry_after_s(client),
            attempts=MAX_NETWORK_RETRIES + 1 if idempotent else 1,
            base_delay_s=RETRY_BASE_DELAY_S, max_delay_s=RETRY_MAX_DELAY_S,
        )
    except ccxt.OperationFailed as error:
        retried = f" after {MAX_NETWORK_RETRIES} retries" if idempotent else ""
        raise ExchangeUnavailable(f"{what}: {type(error).__name__}{retried}: {_short(error)}") from None
    except (ccxt.InsufficientFunds, ccxt.InvalidOrder) as error:
        raise OrderRejected(f"{what}: {type(error).__name__}: {_short(error)}") from None
    except ccxt.BaseError as error:
        raise ExchangeError(f"{what}: {type(error).__name__}: {_short(error)}") from None
    except (ValueError, TypeError, KeyError) as error:  # malformed payload that ccxt failed to parse
        raise DataError(f"{what}: malformed exchange response ({type(error).__name__}: {_short(error)})") from None


def _retry_after_s(client: Any) -> float | None:
    headers = getattr(client, "last_response_headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _short(error: BaseException) -> str:
    return str(error).replace("\n", " ")[:300]


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



BINANCE_KEY_RESTRICTIONS_PATH = "GET /sapi/v1/account/apiRestrictions"
_FUTURES_DEFAULT_TYPES = ("swap", "future", "delivery")


def fetch_api_key_permissions(client: Any) -> KeyPermissions | None:
    """What the client's API key may do, as the exchange reports it; None when ccxt offers no way to ask
    (the caller must then say "unknown", never assume the key is safe).

    Binance (spot and USD-M): ``/sapi/v1/account/apiRestrictions``. "Can trade" means
    enableSpotAndMarginTrading on a spot client, enableFutures on a swap client.

    Raises:
        ExchangeError: the exchange refused the key (bad key, wrong IP) or the request.
        ExchangeUnavailable: network failure or rate limit after the retries.
        DataError: a reply without the boolean fields (fail closed: never read as "cannot withdraw").
    """
    if not hasattr(client, "sapi_get_account_apirestrictions"):
        return None
    source = f"{client.id} {BINANCE_KEY_RESTRICTIONS_PATH}"
    reply = call(client, "fetch_api_key_permissions", lambda: client.sapi_get_account_apirestrictions())
    if not isinstance(reply, dict):
        raise DataError(f"{source}: expected an object, got {type(reply).__name__}")
    is_futures = (client.options or {}).get("defaultType") in _FUTURES_DEFAULT_TYPES
    trade_field = "enableFutures" if is_futures else "enableSpotAndMarginTrading"
    for name in ("enableWithdrawals", trade_field):
        if not isinstance(reply.get(name), bool):
            raise DataError(f"{source}: {name} is missing or not true/false: {reply.get(name)!r}")
    ip_restrict = reply.get("ipRestrict")
    return KeyPermissions(can_trade=reply[trade_field], can_withdraw=reply["enableWithdrawals"],
                          ip_restricted=ip_restrict if isinstance(ip_restrict, bool) else None, raw_source=source)


def require_safe_live_key(client: Any) -> None:
    """Before trading real money: refuse a key that can withdraw funds or cannot trade (fail closed).

    Raises:
        ConfigError: the key's permissions are unsafe (create a trade-only key).
        ExchangeError / ExchangeUnavailable: the permissions could not be read.
    """
    from lib.ops.doctor import check_key_permissions  # pure; imported here to keep exchange.py's imports light

    findings = check_key_permissions(fetch_api_key_permissions(client), mode="live")
    failures = [finding for finding in findings if finding.status == "fail"]
    for finding in findings:
        if finding.status == "warn":
            logger.warning("API key: {} ({})", finding.detail, finding.what_to_do)
    if failures:
        raise ConfigError("unsafe API key for live trading: "
                          + "; ".join(f"{f.detail} → {f.what_to_do}" for f in failures))

"""Edge: the transport to an exchange through ccxt: the configured client (rate limiter, timeout, keys, REST
base URL), the retry policy for network errors, and the ccxt -> domain error translation (``call``).

ccxt exceptions never leave ``call``: callers see ExchangeUnavailable (transient, after retries),
ExchangeError (permanent), OrderRejected (the exchange said no) or DataError (a malformed answer).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import ccxt

from lib.core.errors import DataError, ExchangeError, ExchangeUnavailable, OrderRejected
from lib.core.retry import call_with_retry
from lib.core.secrets import Secrets
from lib.execution.exchange_section import ExchangeSection

MAX_NETWORK_RETRIES = 4  # retries after the first attempt of a read (timeouts, 429/418, 5xx)
RETRY_MAX_DELAY_S = 30.0
RETRY_BASE_DELAY_ATTRIBUTE = "coinbot_retry_base_delay_s"
"""Set on every client by ``create_client`` from ``exchange.retry_base_delay_ms``; read by ``call``."""


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
    setattr(client, RETRY_BASE_DELAY_ATTRIBUTE, section.retry_base_delay_ms / 1000)
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
            base_delay_s=_retry_base_delay_s(client), max_delay_s=RETRY_MAX_DELAY_S,
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


def _retry_base_delay_s(client: Any) -> float:
    """``exchange.retry_base_delay_ms`` of the client's section (the section's default for a foreign client)."""
    return float(getattr(client, RETRY_BASE_DELAY_ATTRIBUTE, ExchangeSection().retry_base_delay_ms / 1000))


def _retry_after_s(client: Any) -> float | None:
    headers = getattr(client, "last_response_headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _short(error: BaseException) -> str:
    return str(error).replace("\n", " ")[:300]

"""Edge: the transport to an exchange through ccxt: the configured client (rate limiter, timeout, keys, sandbox
mode in testnet, REST base URL), the retry policy for network errors with its run-wide circuit breaker, and
the ccxt -> domain error translation (``call``).

ccxt exceptions never leave ``call``: callers see ExchangeUnavailable (transient, after retries),
ExchangeError (permanent), OrderRejected (the exchange said no) or DataError (a malformed answer).
"""

from __future__ import annotations

import decimal
import ipaddress
import re
import weakref
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

import ccxt

from lib.core.errors import ConfigError, DataError, ExchangeError, ExchangeUnavailable, OrderRejected
from lib.core.retry import MAX_RETRY_AFTER_S, CircuitBreaker, CircuitOpenError, call_with_retry
from lib.core.secrets import Secrets, redact_values
from lib.execution.exchange_section import ExchangeSection

MAX_NETWORK_RETRIES = 4  # retries after the first attempt of a read (timeouts, 429/418, 5xx)
RETRY_MAX_DELAY_S = 30.0  # backoff cap; a server's Retry-After is honoured beyond it, up to MAX_RETRY_AFTER_S
RETRY_BASE_DELAY_ATTRIBUTE = "coinbot_retry_base_delay_s"
"""Set on every client by ``create_client`` from ``exchange.retry_base_delay_ms``; read by ``call``."""


def create_client(section: ExchangeSection, secrets: Secrets) -> Any:
    """A configured ccxt client: rate limiter on, timeout, keys, sandbox mode in testnet, the REST base URL.

    Testnet is ccxt's sandbox mode, so a testnet run can never reach the production API: an exchange without
    a sandbox needs a ``rest_base_url``, and in testnet that URL must be loopback or one of the exchange's own
    sandbox hosts (``check_testnet_base_url``). The override is applied after sandbox mode, over every API
    path when it is loopback (sandbox dicts lack some, e.g. Binance's ``sapi``), so a local fake serves them all.

    Raises:
        ExchangeError: the id is not a ccxt exchange.
        ConfigError: testnet on an exchange without a sandbox and no URL, or a production host in testnet.
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
    production_api = client.urls["api"]
    if section.mode == "testnet":
        check_testnet_base_url(section, client)
        if client.urls.get("test"):
            client.set_sandbox_mode(True)
    if section.rest_base_url:
        api = client.urls["api"]
        host = (urlsplit(section.rest_base_url).hostname or "").lower()
        if is_loopback_host(host) and isinstance(api, dict) and isinstance(production_api, dict):
            api = {**production_api, **api}  # a local fake serves every path the sandbox dict lacks
        client.urls["api"] = rebase_urls(api, section.rest_base_url)
    if (section.rest_base_url or section.mode == "testnet") and hasattr(client, "get_exceptions_by_url"):
        _map_binance_errors_by_path(client)
    return client


def sandbox_hosts(client: Any) -> set[str]:
    """The hosts of the exchange's own sandbox URLs (ccxt ``urls['test']``); empty: it has no sandbox."""
    hosts: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, str):
            host = urlsplit(value.replace("{hostname}", str(getattr(client, "hostname", "") or ""))).hostname
            if host:
                hosts.add(host.lower())

    collect(client.urls.get("test"))
    return hosts


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_testnet_base_url(section: ExchangeSection, client: Any) -> None:
    """Testnet must never reach the production API (fail closed).

    Raises:
        ConfigError: the exchange has no sandbox and no ``rest_base_url`` is set, or the URL's host is neither
            loopback nor one of the exchange's sandbox hosts.
    """
    allowed = sandbox_hosts(client)
    if not section.rest_base_url:
        if not client.urls.get("test"):
            raise ConfigError(f"exchange.mode = testnet: ccxt's {section.id} has no sandbox (testnet); set "
                              "exchange.rest_base_url to the exchange's test endpoint, or use paper mode")
        return
    host = (urlsplit(section.rest_base_url).hostname or "").lower()
    if not (is_loopback_host(host) or host in allowed):
        known = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(f"exchange.mode = testnet but exchange.rest_base_url points at {host!r}, which is not a "
                          f"sandbox host of {section.id} (sandbox hosts: {known}; loopback is allowed for tests): "
                          "refusing, a testnet run must never reach the production exchange")


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


def isolated_decimal_context() -> AbstractContextManager[decimal.Context]:
    """A copy of the thread's Decimal context for one ccxt call, restored after it: ccxt's decimal_to_precision sets
    the CURRENT context's rounding to ROUND_HALF_UP (and traps Underflow), which would otherwise change every later
    Decimal result of the run (a collateral amount a cent apart, hence another transfer id, between a run and its
    re-run after a crash, depending on whether ccxt had rounded something before)."""
    return decimal.localcontext()


_CREDENTIALS = ("apiKey", "secret", "password")
"""The client's attributes a retry log line redacts from an error's text (lib.core.retry.error_text)."""


def call(client: Any, what: str, action: Any, *, idempotent: bool = True) -> Any:
    """Run one ccxt call with the retry policy and translate its errors to domain errors.

    Reads (``idempotent``) are retried on ccxt.OperationFailed, which covers NetworkError (timeouts,
    429 rate limits, maintenance), HTTP 5xx and an HTTP 200 whose body is empty or not JSON. Order placement
    is never retried here: after an ambiguous failure the caller must look the order up by its client id
    before deciding anything. The client's run-wide breaker (lib.core.retry.CircuitBreaker) stops every
    request during a ban (HTTP 418, or a Retry-After beyond MAX_RETRY_AFTER_S) and, after an outage, gives
    each read one attempt until one succeeds.
    """
    def checked() -> Any:
        client.last_http_response, client.last_json_response = None, None
        try:
            with isolated_decimal_context():  # ccxt's precision code sets the thread's rounding: not ours to change
                result = action()
        except (AttributeError, TypeError, KeyError, ValueError, IndexError):
            problem = _unusable_body(client)  # ccxt choked on an empty/garbled body: transient, not malformed
            if problem:
                raise ccxt.ExchangeNotAvailable(problem) from None
            raise
        problem = _unusable_body(client)
        if problem:  # ccxt turns an empty or non-JSON body into empty data ([] candles): never "no more data"
            raise ccxt.ExchangeNotAvailable(problem)
        return result

    breaker = breaker_of(client)
    try:
        if not idempotent:  # an order is not sent during a ban, but its failures do not open the breaker
            breaker.check(what)
        return call_with_retry(
            checked if idempotent else action, what=what,
            is_transient=lambda error: isinstance(error, ccxt.OperationFailed),
            retry_after_s=lambda error: _retry_after_s(client),
            is_ban=_is_ban, breaker=breaker if idempotent else None,
            attempts=MAX_NETWORK_RETRIES + 1 if idempotent else 1,
            base_delay_s=_retry_base_delay_s(client), max_delay_s=RETRY_MAX_DELAY_S,
            max_retry_after_s=MAX_RETRY_AFTER_S,
            redact=lambda text: redact_values(text, (getattr(client, name, None) or "" for name in _CREDENTIALS)),
        )
    except CircuitOpenError as error:
        raise ExchangeUnavailable(str(error)) from None
    except ccxt.OperationFailed as error:
        retried = f" after {MAX_NETWORK_RETRIES} retries" if idempotent and not breaker.is_open else ""
        if idempotent and breaker.is_open:
            retried = " (exchange down for this run: one attempt per call)"
        raise ExchangeUnavailable(f"{what}: {type(error).__name__}{retried}: {_short(error)}") from None
    except (ccxt.InsufficientFunds, ccxt.InvalidOrder) as error:
        raise OrderRejected(f"{what}: {type(error).__name__}: {_short(error)}") from None
    except ccxt.BaseError as error:
        raise ExchangeError(f"{what}: {type(error).__name__}: {_short(error)}") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:  # a payload ccxt failed to parse
        raise DataError(f"{what}: malformed exchange response ({type(error).__name__}: {_short(error)})") from None


def _retry_base_delay_s(client: Any) -> float:
    """``exchange.retry_base_delay_ms`` of the client's section (the section's default for a foreign client)."""
    return float(getattr(client, RETRY_BASE_DELAY_ATTRIBUTE, ExchangeSection().retry_base_delay_ms / 1000))


_BREAKERS: weakref.WeakKeyDictionary[Any, CircuitBreaker] = weakref.WeakKeyDictionary()


def breaker_of(client: Any) -> CircuitBreaker:
    """The run-wide circuit breaker of this client (one client per run): shared by every call through it."""
    breaker = _BREAKERS.get(client)
    if breaker is None:
        breaker = _BREAKERS[client] = CircuitBreaker()
    return breaker


def _unusable_body(client: Any) -> str:
    """Why the last reply cannot be data ("" when it can): an empty body, or one that is not JSON."""
    body = client.last_http_response
    if not isinstance(body, str):
        return ""
    if not body.strip():
        return "empty reply (HTTP 200 without a body)"
    if client.last_json_response is None:
        return f"unparseable reply (not JSON): {body[:80]!r}"
    return ""


def _is_ban(error: BaseException) -> bool:
    """Binance answers HTTP 418 once it has banned the IP: every further request extends the ban."""
    return isinstance(error, ccxt.DDoSProtection) and re.search(r"\b418\b", str(error)) is not None


def _retry_after_s(client: Any) -> float | None:
    headers = getattr(client, "last_response_headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _short(error: BaseException) -> str:
    return str(error).replace("\n", " ")[:300]

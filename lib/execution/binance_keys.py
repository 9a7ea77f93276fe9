"""Edge: Binance's key-permission API: what the configured API key may do, as the exchange reports it."""

from __future__ import annotations

from typing import Any

from lib.core.errors import DataError
from lib.core.venue import KeyPermissions
from lib.execution.ccxt_client import call

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
    api = client.urls.get("api")
    if not hasattr(client, "sapi_get_account_apirestrictions") or not (isinstance(api, dict) and api.get("sapi")):
        return None  # e.g. Binance's testnets serve no /sapi: the permissions are unknown, not safe
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

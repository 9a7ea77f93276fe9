"""Pure: the key policy: which mode may trade with which keys (``check_mode_allowed``), what an API key must
not be able to do before any order, testnet or live (``check_key_permissions``, also doctor's key rows) and
the refusal that follows (``refuse_unsafe_key``). Fails closed: in live a key not known to be safe is unsafe.
"""

from __future__ import annotations

from collections.abc import Sequence

from lib.core.errors import ConfigError
from lib.core.findings import Finding, Status
from lib.core.secrets import Secrets
from lib.core.venue import KeyPermissions
from lib.execution.exchange_section import ExchangeSection


def check_mode_allowed(exchange: ExchangeSection, secrets: Secrets, *, live_flag: bool) -> None:
    """Refuse testnet/live without keys, and live without an explicit opt-in.

    Raises:
        ConfigError: with the reason and what to do.
    """
    if exchange.mode == "paper":
        return
    if not secrets.has_exchange_keys:
        raise ConfigError(
            f"exchange.mode={exchange.mode} needs COINBOT_EXCHANGE_API_KEY and COINBOT_EXCHANGE_API_SECRET in .env"
        )
    if exchange.mode == "live" and not (live_flag or exchange.live_confirmed):
        raise ConfigError(
            "exchange.mode=live trades real money: pass --live or set exchange.live_confirmed = true to confirm"
        )


def check_key_permissions(perms: KeyPermissions | None, *, mode: str) -> list[Finding]:
    """What the exchange says the key may do. A key that can withdraw is a FAIL in every non-paper mode (a
    testnet run must not hold a key that guards real funds); a key that cannot trade, or permissions the
    exchange cannot report (``perms`` None), are a FAIL in live and a WARN in testnet (sandbox: play money).

    >>> [f.status for f in check_key_permissions(KeyPermissions(can_trade=True, can_withdraw=True,
    ...     ip_restricted=True, raw_source="x"), mode="testnet")]
    ['fail', 'ok', 'ok']
    """
    if mode == "paper":
        return [Finding("key permissions", "ok", "not checked in paper mode (no key is used)")]
    severe: Status = "fail" if mode == "live" else "warn"
    if perms is None:
        consequence = ("rebalance refuses to trade real money with a key it cannot check" if mode == "live"
                       else "testnet runs in the exchange's sandbox, so this key cannot touch real funds there")
        return [Finding("key permissions", severe,
                        f"unknown: this exchange does not report key permissions ({consequence})",
                        "in the exchange's API management page, check the key cannot withdraw and is "
                        "restricted to this server's IP")]
    source = f"(from {perms.raw_source})"
    withdraw = (Finding("key withdrawals", "fail", f"the key CAN withdraw funds {source}",
                        "create a key without withdrawal permission and put it in .env")
                if perms.can_withdraw else Finding("key withdrawals", "ok", f"disabled {source}"))
    trade = (Finding("key trading", "ok", f"enabled {source}") if perms.can_trade
             else Finding("key trading", severe, f"the key cannot trade this market {source}",
                          "enable spot (or futures) trading for the key in the exchange's API management"))
    if perms.ip_restricted:
        ip = Finding("key IP restriction", "ok", f"restricted to trusted IPs {source}")
    else:
        state = "unknown" if perms.ip_restricted is None else "not restricted"
        ip = Finding("key IP restriction", "warn", f"{state} {source}",
                     "restrict the key to this server's IP address in the exchange's API management")
    return [withdraw, trade, ip]


def refuse_unsafe_key(findings: Sequence[Finding]) -> None:
    """Before any order (testnet or live): refuse a key that can withdraw funds, and in live also one that
    cannot trade or whose permissions are unknown (fail closed).

    Raises:
        ConfigError: the key's permissions are unsafe or unknown (create a trade-only key).
    """
    failures = [finding for finding in findings if finding.status == "fail"]
    if failures:
        raise ConfigError("unsafe API key: "
                          + "; ".join(f"{f.detail} → {f.what_to_do}" for f in failures))

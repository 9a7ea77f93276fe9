"""Pure: per-symbol fetch failures as a ledger (state/symbol_failures.json), so each dead symbol is alerted once.

fetch_prices runs hourly: a delisted symbol would otherwise alert every hour, and an alert that fires every
hour is an alert nobody reads. A symbol is alerted when it starts failing, logged while it keeps failing,
and logged once more when it recovers. A symbol taken out of data.symbols leaves the ledger, so if it is
added back and still fails it is alerted again (not taken as already known).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from lib.core.errors import StateError
from lib.core.symbols import to_perpetual
from lib.core.timeframes import format_ms

LEDGER_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerUpdate:
    failing: dict[str, dict[str, Any]]  # symbol -> {"since_ms": int, "error": str}: the new ledger
    new: tuple[str, ...]  # started failing in this run: alert
    recovered: tuple[str, ...]  # failed before, fine now
    dropped: tuple[str, ...] = ()  # failed before, no longer configured (nor fetched by this run): forgotten


def parse_ledger(raw: Any) -> dict[str, dict[str, Any]]:
    """The ``failing`` map of a ledger document (None: no file yet).

    Raises:
        StateError: not a ledger this version wrote.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict) or raw.get("schema_version") != LEDGER_SCHEMA_VERSION:
        raise StateError(f"symbol_failures.json: not a schema_version {LEDGER_SCHEMA_VERSION} ledger; delete it")
    failing = raw.get("failing")
    if not isinstance(failing, dict) or not all(isinstance(v, dict) for v in failing.values()):
        raise StateError("symbol_failures.json: failing must map symbols to objects; delete it")
    return failing


def update_ledger(previous: Mapping[str, Mapping[str, Any]], failures: Mapping[str, str], *,
                  attempted: Collection[str], configured: Collection[str], now_ms: int) -> LedgerUpdate:
    """Merge this run's ``failures`` (symbol -> error) into the ledger.

    Only symbols this run ``attempted`` can recover (a ``--symbols`` run says nothing about the others).
    ``configured``: data.symbols (spot names; a ledger entry of their perpetual counts as configured too, the
    carry books fetch both venues into one ledger); an entry of any other symbol not attempted is dropped.
    """
    known = {*configured, *(to_perpetual(symbol) for symbol in configured), *attempted}
    dropped = tuple(sorted(symbol for symbol in previous if symbol not in known))
    failing = {symbol: dict(entry) for symbol, entry in previous.items()
               if symbol in known and (symbol in failures or symbol not in attempted)}
    new = []
    for symbol, error in sorted(failures.items()):
        if symbol not in failing:
            new.append(symbol)
            failing[symbol] = {"since_ms": now_ms, "error": error[:300]}
        else:
            failing[symbol]["error"] = error[:300]
    recovered = tuple(sorted(symbol for symbol in previous if symbol in attempted and symbol not in failures))
    return LedgerUpdate(failing=failing, new=tuple(new), recovered=recovered, dropped=dropped)


def change_lines(previous: Mapping[str, Mapping[str, Any]], update: LedgerUpdate) -> list[str]:
    """Log lines for the symbols that left the ledger: recovered, or no longer configured (a symbol added back
    that still fails is alerted again)."""
    def since(symbol: str) -> str:
        since_ms = previous[symbol].get("since_ms")
        return format_ms(since_ms) if isinstance(since_ms, int) else "an unknown time"
    return ([f"{symbol} fetches again (was failing since {since(symbol)})" for symbol in update.recovered]
            + [f"{symbol} is no longer in data.symbols: forgotten as failing (since {since(symbol)})"
               for symbol in update.dropped])


def to_document(failing: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {"schema_version": LEDGER_SCHEMA_VERSION, "failing": {s: dict(e) for s, e in sorted(failing.items())}}


def alert_text(new: Collection[str], failures: Mapping[str, str], *, held: Collection[str],
               healthy_count: int) -> str:
    """One message for the symbols that started failing; held positions are called out for a person."""
    lines = [f"coinbot: fetch_prices cannot fetch {len(new)} symbol(s); the other {healthy_count} were fetched "
             "and the daily chain goes on without them (alerted once; see doctor)"]
    for symbol in sorted(new):
        flag = " — HELD POSITION: a person must decide (it is not traded while its data is stale)" \
            if symbol in held else ""
        lines.append(f"- {symbol}: {failures[symbol][:300]}{flag}")
    lines.append("if a symbol is no longer listed, remove it from data.symbols (doctor lists unlisted symbols)")
    return "\n".join(lines)

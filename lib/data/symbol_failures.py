"""Pure: per-symbol fetch failures as a ledger (state/symbol_failures.json), so each dead symbol is alerted once.

fetch_prices runs hourly: a delisted symbol would otherwise alert every hour, and an alert that fires every
hour is an alert nobody reads. A symbol is alerted when it starts failing, logged while it keeps failing,
and logged once more when it recovers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from lib.core.errors import StateError

LEDGER_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerUpdate:
    failing: dict[str, dict[str, Any]]  # symbol -> {"since_ms": int, "error": str}: the new ledger
    new: tuple[str, ...]  # started failing in this run: alert
    recovered: tuple[str, ...]  # failed before, fine now


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
                  attempted: Collection[str], now_ms: int) -> LedgerUpdate:
    """Merge this run's ``failures`` (symbol -> error) into the ledger.

    Only symbols this run ``attempted`` can recover (a ``--symbols`` run says nothing about the others).
    """
    failing = {symbol: dict(entry) for symbol, entry in previous.items()
               if symbol in failures or symbol not in attempted}
    new = []
    for symbol, error in sorted(failures.items()):
        if symbol not in failing:
            new.append(symbol)
            failing[symbol] = {"since_ms": now_ms, "error": error[:300]}
        else:
            failing[symbol]["error"] = error[:300]
    recovered = tuple(sorted(symbol for symbol in previous if symbol in attempted and symbol not in failures))
    return LedgerUpdate(failing=failing, new=tuple(new), recovered=recovered)


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

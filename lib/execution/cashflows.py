"""Pure: external cash flows (deposits, withdrawals, transfers) and how they move the risk baselines.

Money moved in or out of the account by a person is not trading P&L: taking 300 USDT out of a 1,000 USDT book
must not read as a 30 % drawdown. Every flow is one line of state/cashflows.jsonl (``scripts/cashflow.py``
records one by hand; rebalance appends the exchange's own with ``book.exchange_cashflows``); a run shifts the
high-water mark, the start-of-day equity and the inception equity by the flows recorded since the previous run
(lib.execution.risk_baselines), and the report leaves them out of the P&L.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from lib.core.errors import StateError


@dataclass(frozen=True, slots=True, kw_only=True)
class CashFlow:
    """One external flow in the quote currency: ``amount_quote`` > 0 a deposit, < 0 a withdrawal."""

    time_ms: int  # when the money moved (the baselines of runs after this time are shifted)
    amount_quote: Decimal
    source: str  # "manual" (scripts/cashflow.py) or the exchange's history
    note: str = ""

    def __post_init__(self) -> None:
        if not self.amount_quote.is_finite() or self.amount_quote == 0:
            raise StateError(f"cash flow amount must be a finite non-zero number, got {self.amount_quote!r}")
        if isinstance(self.time_ms, bool) or not isinstance(self.time_ms, int) or self.time_ms <= 0:
            raise StateError(f"cash flow time must be epoch ms > 0, got {self.time_ms!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"time_ms": self.time_ms, "amount_quote": str(self.amount_quote), "source": self.source,
                "note": self.note}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CashFlow:
        try:
            return cls(time_ms=raw["time_ms"], amount_quote=Decimal(str(raw["amount_quote"])),
                       source=str(raw["source"]), note=str(raw.get("note", "")))
        except (KeyError, TypeError, InvalidOperation) as error:
            raise StateError(f"cashflows.jsonl: unreadable record {dict(raw)!r}: {error!r}") from None


def unrecorded_flows(fetched: Iterable[CashFlow], recorded: Iterable[CashFlow]) -> list[CashFlow]:
    """The ``fetched`` flows (the exchange's, ``source`` keyed by its own id) that ``recorded`` does not hold yet,
    each once: what a run appends to state/cashflows.jsonl, so a re-run (or one after a crash) appends nothing."""
    seen = {flow.source for flow in recorded}
    new = []
    for flow in fetched:
        if flow.source not in seen:
            seen.add(flow.source)
            new.append(flow)
    return new


def sum_flows_quote(flows: Iterable[CashFlow], *, after_ms: int, until_ms: int) -> float:
    """The net flow with ``after_ms < time_ms <= until_ms``: what moved since the previous run's valuation."""
    total = sum((f.amount_quote for f in flows if after_ms < f.time_ms <= until_ms), Decimal(0))
    value = float(total)
    if not math.isfinite(value):
        raise StateError(f"cash flows sum to {total!r}")
    return value

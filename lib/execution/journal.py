"""Pure: the order journal's records (one JSON line each in state/orders.jsonl) and what they add up to.

Every line stands alone: an order event repeats the intent (``requested_*``, ``reference_price``) next to the
exchange's facts (``status``, ``filled_amount_base``, ``average_price``, ``fee_quote``, ``exchange_order_id``),
so a reader never has to join lines to know what was asked and what happened. A fill's fee is there twice:
``fee_quote``, every commission converted to the quote (what fees_paid_quote adds up), and ``fees_paid``, each
currency's commission as the exchange charged it (the coin bought, BNB, the quote); a line written before
``fees_paid`` existed has none, and its whole fee is read as paid in the quote (what was assumed then).

Reconciliation answers the questions a re-run after a crash must ask first: which client ids were ``sent``
without a final event (the exchange must be asked about them before anything is planned), which ids already
filled (never send them again), and what positions the fills imply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from lib.core.errors import ExchangeUnavailable, OrderRejected, StateError
from lib.core.state import JOURNAL_EVENTS, JOURNAL_SCHEMA_VERSION
from lib.core.symbols import base_of
from lib.core.venue import OrderResult
from lib.execution.orders import PlannedOrder, SkippedOrder
from lib.execution.risk import RiskRejection

FINAL_EVENTS = ("filled", "rejected", "failed")
"""An order id whose latest ``sent`` is followed by one of these is settled; otherwise it is open."""
ORDER_EVENTS = ("planned", "sent", *FINAL_EVENTS)
"""Events about one client order id (they carry ``client_order_id``, ``symbol`` and ``requested_side``)."""
ORDER_STATUSES = ("open", "closed", "canceled", "rejected", "expired")
"""Exchange order statuses as ccxt unifies them (``status`` of filled/rejected events)."""

_DECIMAL_FIELDS = ("requested_amount_base", "requested_notional_quote", "filled_amount_base")
_FLOAT_FIELDS = ("reference_price", "target_weight", "current_weight", "average_price", "fee_quote")
_INT_FIELDS = ("time_ms", "exchange_time_ms")
_BOOL_FIELDS = ("reduce_only",)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """Who writes the events: the run, the rebalance it works on (``<strategy>-<targets.as_of_ms>``), where."""

    time_ms: int
    run_id: str
    rebalance_id: str
    mode: str
    venue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEvent:
    """One journal line. Intent (``requested_*``) and facts (``status``, ``filled_*``, ...) are kept apart.

    ``reason`` is a short machine-readable cause (a ``lib.execution.orders.SKIP_*`` string, a risk check name, an error
    class); ``detail`` is for people. Construction validates: a bad line is a StateError, never guessed at.
    """

    event: str
    time_ms: int
    run_id: str
    rebalance_id: str
    mode: str
    venue: str
    symbol: str | None = None
    client_order_id: str | None = None
    requested_side: str | None = None
    requested_amount_base: Decimal | None = None
    requested_notional_quote: Decimal | None = None
    reference_price: float | None = None
    reduce_only: bool | None = None
    target_weight: float | None = None
    current_weight: float | None = None
    status: str | None = None
    filled_amount_base: Decimal | None = None
    average_price: float | None = None
    fee_quote: float | None = None
    fees_paid: tuple[tuple[str, Decimal], ...] | None = None  # filled: (currency, amount) as the exchange charged
    exchange_order_id: str | None = None
    exchange_time_ms: int | None = None
    transfer_id: str | None = None  # transfer_* events: the deterministic id of a wallet transfer
    reason: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        where = f"journal event {self.event!r} ({self.client_order_id or self.symbol or '-'})"
        if self.event not in JOURNAL_EVENTS:
            raise StateError(f"{where}: unknown event (known: {', '.join(JOURNAL_EVENTS)})")
        for name in ("run_id", "rebalance_id", "mode", "venue"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise StateError(f"{where}: {name} must be a non-empty string")
        for name in _DECIMAL_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value < 0):
                raise StateError(f"{where}: {name} {value!r} is not a finite Decimal >= 0")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise StateError(f"{where}: {name} {value!r} is not a finite number")
        if self.fees_paid is not None and not all(
                isinstance(currency, str) and currency and isinstance(amount, Decimal) and amount.is_finite()
                and amount >= 0 for currency, amount in self.fees_paid):
            raise StateError(f"{where}: fees_paid {self.fees_paid!r} is not (currency, Decimal >= 0) pairs")
        if self.requested_side not in (None, "buy", "sell"):
            raise StateError(f"{where}: requested_side {self.requested_side!r} is not buy/sell")
        if self.status not in (None, *ORDER_STATUSES):
            raise StateError(f"{where}: status {self.status!r} is not one of {ORDER_STATUSES}")
        if self.event in ORDER_EVENTS and not (self.client_order_id and self.symbol and self.requested_side):
            raise StateError(f"{where}: needs client_order_id, symbol and requested_side")
        if self.event in ("planned", "sent") and not (self.requested_amount_base and self.reference_price):
            raise StateError(f"{where}: needs requested_amount_base > 0 and reference_price")
        if self.event == "filled" and not self.filled_amount_base:
            raise StateError(f"{where}: needs filled_amount_base > 0 (nothing filled is 'rejected')")
        if self.event in ("skipped", "risk_rejected", "rejected", "failed") and not self.reason:
            raise StateError(f"{where}: needs a reason")

    @property
    def is_final(self) -> bool:
        return self.event in FINAL_EVENTS

    @property
    def signed_filled_base(self) -> Decimal:
        """Filled amount, negative for a sell (0 for anything but ``filled``)."""
        if self.event != "filled" or self.filled_amount_base is None:
            return Decimal(0)
        return self.filled_amount_base if self.requested_side == "buy" else -self.filled_amount_base

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, None fields left out, Decimals as strings (nothing rounded through a float)."""
        document: dict[str, Any] = {"schema_version": JOURNAL_SCHEMA_VERSION}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None:
                continue
            if spec.name == "fees_paid":
                value = {currency: str(amount) for currency, amount in value}
            document[spec.name] = str(value) if isinstance(value, Decimal) else value
        return document

    @classmethod
    def from_dict(cls, raw: Any) -> JournalEvent:
        """Inverse of :meth:`to_dict`. Raises StateError for anything malformed or unknown."""
        if not isinstance(raw, dict):
            raise StateError("journal line is not a JSON object")
        if raw.get("schema_version") != JOURNAL_SCHEMA_VERSION:
            raise StateError(f"journal line: schema_version {raw.get('schema_version')!r} is not supported "
                             f"(expected {JOURNAL_SCHEMA_VERSION})")
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(raw) - known - {"schema_version"})
        if unknown:
            raise StateError(f"journal line: unknown field {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "schema_version" or value is None:
                continue
            values[name] = _parse_field(name, value)
        try:
            return cls(**values)
        except TypeError as error:
            raise StateError(f"journal line: {error}") from None


def _parse_field(name: str, value: Any) -> Any:
    if name == "fees_paid":
        if not isinstance(value, dict):
            raise StateError(f"journal line: fees_paid must map currencies to decimal strings, got {value!r}")
        return tuple(sorted((str(currency), _parse_decimal(f"fees_paid.{currency}", amount))
                            for currency, amount in value.items()))
    if name in _DECIMAL_FIELDS:
        return _parse_decimal(name, value)
    if name in _INT_FIELDS and (isinstance(value, bool) or not isinstance(value, int)):
        raise StateError(f"journal line: {name} must be an integer, got {value!r}")
    if name in _BOOL_FIELDS and not isinstance(value, bool):
        raise StateError(f"journal line: {name} must be true/false, got {value!r}")
    if name not in _DECIMAL_FIELDS + _FLOAT_FIELDS + _INT_FIELDS + _BOOL_FIELDS and not isinstance(value, str):
        raise StateError(f"journal line: {name} must be a string, got {value!r}")
    return value


def _parse_decimal(name: str, value: Any) -> Decimal:
    if not isinstance(value, str):
        raise StateError(f"journal line: {name} must be a decimal string, got {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise StateError(f"journal line: {name} is not a number: {value!r}") from None


def parse_journal(records: Sequence[Mapping[str, Any]]) -> list[JournalEvent]:
    """Journal lines (as read by lib.core.storage.read_jsonl) -> events; the line number names a bad one."""
    events = []
    for number, record in enumerate(records, start=1):
        try:
            events.append(JournalEvent.from_dict(record))
        except StateError as error:
            raise StateError(f"orders journal record {number}: {error}") from None
    return events


# --- building events ---------------------------------------------------------------------------------------


def _intent(order: PlannedOrder) -> dict[str, Any]:
    return {
        "symbol": order.symbol, "client_order_id": order.client_order_id, "requested_side": order.side,
        "requested_amount_base": order.amount_base, "requested_notional_quote": order.notional_quote,
        "reference_price": order.reference_price, "reduce_only": order.reduce_only,
        "target_weight": order.target_weight, "current_weight": order.current_weight,
    }


def _run(run: RunInfo) -> dict[str, Any]:
    return {"time_ms": run.time_ms, "run_id": run.run_id, "rebalance_id": run.rebalance_id, "mode": run.mode,
            "venue": run.venue}


def to_planned_event(order: PlannedOrder, run: RunInfo) -> JournalEvent:
    return JournalEvent(event="planned", **_run(run), **_intent(order))


def to_sent_event(order: PlannedOrder, run: RunInfo) -> JournalEvent:
    """Written (and fsync'ed) BEFORE the order call, so a crash can never hide an order from the journal."""
    return JournalEvent(event="sent", **_run(run), **_intent(order))


def to_skipped_event(skipped: SkippedOrder, run: RunInfo) -> JournalEvent:
    return JournalEvent(event="skipped", **_run(run), symbol=skipped.symbol, requested_side=skipped.side,
                        target_weight=skipped.target_weight, current_weight=skipped.current_weight,
                        reason=skipped.reason, detail=skipped.detail)


def to_risk_rejected_event(rejection: RiskRejection, run: RunInfo) -> JournalEvent:
    return JournalEvent(event="risk_rejected", **_run(run), symbol=rejection.symbol, reason=rejection.check,
                        detail=rejection.detail)


def to_result_event(sent: JournalEvent, result: OrderResult, run: RunInfo, *, detail: str = "") -> JournalEvent:
    """The final event for an order the exchange knows: ``filled`` if anything filled, else ``rejected``.

    ``sent`` supplies the intent; ``result`` the facts. A partial fill is a ``filled`` event whose
    ``filled_amount_base`` is below ``requested_amount_base`` (its ``status`` says why it stopped).
    """
    filled = result.filled_amount_base > 0
    if filled and result.filled_amount_base < (sent.requested_amount_base or Decimal(0)):
        detail = (f"partial fill {result.filled_amount_base} of {sent.requested_amount_base} "
                  f"(status {result.status}); {detail}").rstrip("; ")
    return JournalEvent(
        event="filled" if filled else "rejected", **_run(run), **_intent_of(sent), status=result.status,
        filled_amount_base=result.filled_amount_base, average_price=result.average_price,
        fee_quote=result.fee_quote, fees_paid=result.fees_paid or None,
        exchange_order_id=result.exchange_order_id or None,
        exchange_time_ms=result.timestamp_ms, reason=None if filled else "not_filled",
        detail=detail or ("" if filled else f"exchange status {result.status}, nothing filled"))


def to_rejected_event(sent: JournalEvent, run: RunInfo, *, reason: str, detail: str) -> JournalEvent:
    """The exchange said no (and a lookup by client id confirmed it holds no such order)."""
    return JournalEvent(event="rejected", **_run(run), **_intent_of(sent), reason=reason, detail=detail)


def to_transfer_event(kind: str, run: RunInfo, *, transfer_id: str, amount_quote: Decimal, from_wallet: str,
                      to_wallet: str, tran: tuple[str, int] | None = None, detail: str = "") -> JournalEvent:
    """``transfer_sent`` (before the call) / ``transferred`` (with the exchange's id and time) / ``transfer_failed``
    of a wallet transfer (lib.execution.wallet_transfer); ``reason`` is ``<from>-><to>``."""
    return JournalEvent(event=kind, **_run(run), transfer_id=transfer_id, requested_notional_quote=amount_quote,
                        reason=f"{from_wallet}->{to_wallet}", detail=detail,
                        exchange_order_id=None if tran is None else tran[0],
                        exchange_time_ms=None if tran is None else tran[1])


def to_leg_mismatch_event(run: RunInfo, *, symbol: str, unhedged_quote: Decimal, detail: str) -> JournalEvent:
    """A carry pair found unhedged after its legs (lib.execution.carry_run); ``detail`` names the fixes."""
    return JournalEvent(event="leg_mismatch", **_run(run), symbol=symbol, requested_notional_quote=unhedged_quote,
                        reason="unhedged", detail=detail)


def to_failed_event(sent: JournalEvent, run: RunInfo, *, reason: str, detail: str) -> JournalEvent:
    """The order never reached the exchange (a later lookup by client id did not find it)."""
    return JournalEvent(event="failed", **_run(run), **_intent_of(sent), reason=reason, detail=detail)


def _intent_of(sent: JournalEvent) -> dict[str, Any]:
    return {name: getattr(sent, name) for name in (
        "symbol", "client_order_id", "requested_side", "requested_amount_base", "requested_notional_quote",
        "reference_price", "reduce_only", "target_weight", "current_weight")}


# --- reconciliation ----------------------------------------------------------------------------------------


def find_open_orders(events: Iterable[JournalEvent]) -> list[JournalEvent]:
    """The latest ``sent`` event of every client id that has no final event after it, in journal order.

    These orders may or may not have executed: ask the exchange (by client id) before planning anything.
    An id sent again after a final ``failed``/``rejected`` is open again until its new final event.
    """
    open_by_id: dict[str, JournalEvent] = {}
    for event in events:
        if event.client_order_id is None:
            continue
        if event.event == "sent":
            open_by_id[event.client_order_id] = event
        elif event.is_final:
            open_by_id.pop(event.client_order_id, None)
    return list(open_by_id.values())


def find_filled_ids(events: Iterable[JournalEvent]) -> frozenset[str]:
    """Client ids with a ``filled`` event: they executed, so they must never be sent again."""
    return frozenset(e.client_order_id for e in events if e.event == "filled" and e.client_order_id)


def find_sent_ids(events: Iterable[JournalEvent]) -> frozenset[str]:
    """Client ids that were ever sent: look them up before sending them again."""
    return frozenset(e.client_order_id for e in events if e.event == "sent" and e.client_order_id)


def compute_fill_positions(events: Iterable[JournalEvent]) -> dict[str, Decimal]:
    """Signed base amount per symbol implied by the fills (buys +, sells -) net of commissions charged in the
    symbol's own base coin (``fees_paid``); symbols netting to 0 dropped.

    From an empty account this equals what the venue holds, which is how a test (or a person) checks the
    journal against positions.json. Fees paid in the quote or another asset (BNB) do not change base amounts.
    """
    totals: dict[str, Decimal] = {}
    for event in events:
        if event.event == "filled" and event.symbol is not None:
            in_base = sum((amount for currency, amount in event.fees_paid or () if currency == base_of(event.symbol)),
                          Decimal(0))
            totals[event.symbol] = totals.get(event.symbol, Decimal(0)) + event.signed_filled_base - in_base
    return {symbol: amount for symbol, amount in sorted(totals.items()) if amount != 0}


def compute_fees_quote(events: Iterable[JournalEvent]) -> float:
    """Sum of ``fee_quote`` over the fills."""
    return sum((event.fee_quote or 0.0) for event in events if event.event == "filled")


def find_problems(events: Sequence[JournalEvent]) -> list[str]:
    """Inconsistencies a correct writer never produces; empty = consistent.

    A final event needs an open ``sent`` before it, except ``filled`` after ``failed``/``rejected`` (the venue
    turned out to hold the order after all: a late arrival, found by client id). Also flagged: an id sent
    again after it filled, two fills of one id, a fill larger than the request.
    """
    problems: list[str] = []
    state: dict[str, str] = {}  # client id -> open | filled | failed | rejected
    for number, event in enumerate(events, start=1):
        client_id = event.client_order_id
        if client_id is None or event.event == "planned":
            continue
        before = state.get(client_id)
        if event.event == "sent":
            if before == "filled":
                problems.append(f"event {number}: {client_id} sent again after it filled")
            state[client_id] = "open"
            continue
        allowed = ("open", "failed", "rejected") if event.event == "filled" else ("open",)
        if before not in allowed:
            problems.append(f"event {number}: {event.event} {client_id} after {before or 'nothing'} "
                            "(needs an open 'sent' before it)")
        state[client_id] = event.event
        requested, got = event.requested_amount_base, event.filled_amount_base
        if event.event == "filled" and requested is not None and got is not None and got > requested:
            problems.append(f"event {number}: {client_id} filled {got} > requested {requested}")
    return problems


# --- what one pass of sending produced ---------------------------------------------------------------------


@dataclass(slots=True)
class SendOutcome:
    """The final events of the orders sent, and why sending stopped early (an order of unknown outcome)."""

    filled: list[JournalEvent] = field(default_factory=list)
    rejected: list[JournalEvent] = field(default_factory=list)
    unresolved: str = ""

    def raise_if_failed(self) -> None:
        """ExchangeUnavailable for an unknown outcome (the next run looks it up), OrderRejected for refusals."""
        if self.unresolved:
            raise ExchangeUnavailable(self.unresolved)
        if self.rejected:
            raise OrderRejected(f"{len(self.rejected)} order(s) rejected: " + "; ".join(
                f"{e.requested_side} {e.requested_amount_base} {e.symbol}: {e.detail}" for e in self.rejected[:5]))


def describe_rejections(rejections: Sequence[RiskRejection], *, limit: int = 10) -> str:
    """Risk rejections as one line for an error message (and so the alert); the journal has every one."""
    parts = [f"{r.check}{' ' + r.symbol if r.symbol else ''}: {r.detail}" for r in rejections[:limit]]
    more = f"; ... and {len(rejections) - limit} more (see the journal)" if len(rejections) > limit else ""
    return "; ".join(parts) + more

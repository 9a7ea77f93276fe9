"""Edge: collateral moved between the spot and the USD-M futures wallet, journaled and idempotent.

``transfer_collateral`` is the one way to move quote between the two wallets (the carry rebalance sizes it from
the short legs' initial margin; a margin guard may call it to add collateral). Invariants, as for orders:
- ``transfer_sent`` is journaled (fsync'ed) BEFORE the call; ``transferred`` / ``transfer_failed`` after it;
- a transfer id already ``transferred`` is never sent again (a re-run on the same targets is a no-op);
- after ANY failure, and before re-sending an id journaled ``sent`` without an outcome, the exchange's transfer
  history is asked first. Binance's universal transfer (POST /sapi/v1/asset/transfer) takes no client id, so a
  transfer is recognised by type, asset and exact amount at or after the time it was sent, and not claimed by
  another journaled transfer; an outcome that stays unknown stops the run (the next run asks again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from loguru import logger

from lib.core import errors
from lib.execution.carry_legs import WALLETS
from lib.execution.ccxt_client import call
from lib.execution.journal import JournalEvent, RunInfo, to_transfer_event
from lib.execution.paper import PaperBroker

BINANCE_TRANSFER_TYPES = {("spot", "futures"): "MAIN_UMFUTURE", ("futures", "spot"): "UMFUTURE_MAIN"}
LOOKUP_SLACK_MS = 120_000
"""A transfer found in the history may be stamped this much before our ``transfer_sent`` line (clock skew)."""


class TransferJournal(Protocol):
    history: list[JournalEvent]

    def append(self, event: JournalEvent) -> None: ...


class WalletTransfers(Protocol):
    """Moves quote between the two wallets of one account holder."""

    def send(self, amount_quote: Decimal, from_wallet: str, to_wallet: str, transfer_id: str) -> str:
        """The exchange's id of the executed transfer. OrderRejected: refused; anything else: unknown."""
        ...

    def find(self, amount_quote: Decimal, from_wallet: str, to_wallet: str, transfer_id: str, *, since_ms: int,
             claimed: frozenset[str]) -> tuple[str, int] | None:
        """(exchange id, time) of a matching executed transfer not in ``claimed``; None when there is none."""
        ...


class HasTransfers(Protocol):
    transfers: WalletTransfers


class CcxtTransfers:
    """Binance universal transfers through the spot (``binance``) ccxt client: ``transfer`` / ``fetch_transfers``."""

    def __init__(self, client: Any, *, quote: str) -> None:
        self.client, self.quote = client, quote

    def send(self, amount_quote: Decimal, from_wallet: str, to_wallet: str, transfer_id: str) -> str:
        kind = BINANCE_TRANSFER_TYPES[(from_wallet, to_wallet)]
        reply = call(self.client, f"transfer {amount_quote} {self.quote} {from_wallet}->{to_wallet} ({transfer_id})",
                     lambda: self.client.transfer(self.quote, float(amount_quote), from_wallet, to_wallet,
                                                  {"type": kind}), idempotent=False)
        tran_id = reply.get("id") if isinstance(reply, dict) else None
        if not tran_id:
            raise errors.ExchangeUnavailable(f"transfer {transfer_id}: unreadable reply; look it up")
        return str(tran_id)

    def find(self, amount_quote: Decimal, from_wallet: str, to_wallet: str, transfer_id: str, *, since_ms: int,
             claimed: frozenset[str]) -> tuple[str, int] | None:
        kind = BINANCE_TRANSFER_TYPES[(from_wallet, to_wallet)]
        rows = call(self.client, f"fetch_transfers {kind} since {since_ms}",
                    lambda: self.client.fetch_transfers(self.quote, since_ms, 100, {"type": kind}))
        if not isinstance(rows, list):
            raise errors.DataError(f"fetch_transfers: expected a list, got {type(rows).__name__}")
        for row in sorted(rows, key=lambda r: r.get("timestamp") or 0):
            tran_id, stamp = str(row.get("id") or ""), row.get("timestamp")
            if not tran_id or tran_id in claimed or row.get("status") not in ("ok", None):
                continue
            if _decimal(row.get("amount")) == amount_quote and isinstance(stamp, int) and stamp >= since_ms:
                return tran_id, stamp
        return None


@dataclass
class PaperWallets:
    """The paper spot and futures accounts' transfers: cash moves between the two PaperBrokers, each recorded by
    its transfer id (saved in positions.json), so a re-run finds it exactly."""

    spot: PaperBroker
    futures: PaperBroker
    now_ms: int
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def send(self, amount_quote: Decimal, from_wallet: str, to_wallet: str, transfer_id: str) -> str:
        if transfer_id in self.records:
            return str(self.records[transfer_id]["id"])
        source, target = (self.spot, self.futures) if from_wallet == "spot" else (self.futures, self.spot)
        source.move_cash(-amount_quote)
        target.move_cash(amount_quote)
        self.records[transfer_id] = {"id": f"paper-{transfer_id}", "amount": str(amount_quote), "from": from_wallet,
                                     "to": to_wallet, "time_ms": self.now_ms}
        return f"paper-{transfer_id}"

    def find(self, amount_quote: Decimal, from_wallet: str, to_wallet: str, transfer_id: str, *, since_ms: int,
             claimed: frozenset[str]) -> tuple[str, int] | None:
        record = self.records.get(transfer_id)
        return None if record is None else (str(record["id"]), int(record["time_ms"]))


def transfer_collateral(session: HasTransfers, amount_quote: Decimal, from_wallet: str, to_wallet: str,
                        transfer_id: str, *, journal: TransferJournal, run: RunInfo) -> str:
    """Move ``amount_quote`` from one wallet to the other exactly once; returns the exchange's transfer id.

    Raises:
        OrderRejected: the exchange refused it (and holds no such transfer): journaled ``transfer_failed``.
        ExchangeUnavailable: the outcome is unknown (journaled ``transfer_sent`` only): the next run looks it up.
    """
    if from_wallet not in WALLETS or to_wallet not in WALLETS or from_wallet == to_wallet:
        raise errors.DataError(f"transfer {transfer_id}: {from_wallet} -> {to_wallet} is not between {WALLETS}")
    if not amount_quote.is_finite() or amount_quote <= 0:
        raise errors.DataError(f"transfer {transfer_id}: amount {amount_quote} is not > 0")
    events = [e for e in journal.history if e.transfer_id == transfer_id]
    done = next((e for e in events if e.event == "transferred"), None)
    if done is not None:
        logger.info("transfer {} already done ({}): not sent again", transfer_id, done.exchange_order_id)
        return str(done.exchange_order_id)
    transfers = session.transfers
    claimed = frozenset(str(e.exchange_order_id) for e in journal.history
                        if e.event == "transferred" and e.exchange_order_id)
    facts = _Facts(amount_quote, from_wallet, to_wallet, transfer_id, run)
    last_sent = next((e for e in reversed(events) if e.event == "transfer_sent"), None)
    if last_sent is not None and (events[-1].event == "transfer_sent"):  # open since an earlier run: ask first
        found = _lookup(transfers, facts, since_ms=last_sent.time_ms - LOOKUP_SLACK_MS, claimed=claimed)
        if found is not None:
            journal.append(_event("transferred", facts, tran=found, detail="found in the transfer history"))
            return found[0]
        logger.warning("transfer {} sent earlier is not in the history: sending it now", transfer_id)
    sent = _event("transfer_sent", facts)
    journal.append(sent)
    try:
        tran_id = transfers.send(amount_quote, from_wallet, to_wallet, transfer_id)
    except errors.OrderRejected as error:
        found = _lookup(transfers, facts, since_ms=sent.time_ms - LOOKUP_SLACK_MS, claimed=claimed)
        if found is None:
            journal.append(_event("transfer_failed", facts, detail=str(error)[:300]))
            raise
        tran_id = found[0]
    except errors.CoinbotError as error:  # timeout, 5xx, unreadable: it may have executed
        logger.warning("transfer {} outcome unknown ({}: {}); looking it up", transfer_id, type(error).__name__, error)
        found = _lookup(transfers, facts, since_ms=sent.time_ms - LOOKUP_SLACK_MS, claimed=claimed)
        if found is None:
            raise errors.ExchangeUnavailable(f"transfer {transfer_id} ({amount_quote} {from_wallet}->{to_wallet}) "
                                             f"has an unknown outcome ({error}); the next run looks it up") from None
        journal.append(_event("transferred", facts, tran=found, detail=f"found after {type(error).__name__}"))
        return found[0]
    journal.append(_event("transferred", facts, tran=(tran_id, run.time_ms)))
    return tran_id


def reconcile_open_transfers(session: HasTransfers, *, journal: TransferJournal, run: RunInfo) -> list[JournalEvent]:
    """Every transfer journaled ``transfer_sent`` without an outcome (an earlier run died or could not tell) is looked
    up in the history before anything else: found -> ``transferred``; absent -> ``transfer_failed`` (it never
    executed; a later plan may send it again). A failed lookup raises ExchangeUnavailable: nothing is traded."""
    settled: list[JournalEvent] = []
    latest: dict[str, JournalEvent] = {}
    for event in journal.history:
        if event.transfer_id:
            latest[event.transfer_id] = event
    claimed = frozenset(str(e.exchange_order_id) for e in journal.history
                        if e.event == "transferred" and e.exchange_order_id)
    for transfer_id, sent in latest.items():
        if sent.event != "transfer_sent" or sent.requested_notional_quote is None or "->" not in (sent.reason or ""):
            continue
        from_wallet, to_wallet = str(sent.reason).split("->", 1)
        facts = _Facts(sent.requested_notional_quote, from_wallet, to_wallet, transfer_id, run)
        found = _lookup(session.transfers, facts, since_ms=sent.time_ms - LOOKUP_SLACK_MS, claimed=claimed)
        event = (_event("transfer_failed", facts, detail="not in the exchange's transfer history: never executed")
                 if found is None else _event("transferred", facts, tran=found,
                                              detail="found in the transfer history after an interrupted run"))
        journal.append(event)
        settled.append(event)
        if found is not None:
            claimed |= {found[0]}
        logger.warning("reconciled transfer {}: {}", transfer_id, event.event)
    return settled


@dataclass(frozen=True, slots=True)
class _Facts:
    amount_quote: Decimal
    from_wallet: str
    to_wallet: str
    transfer_id: str
    run: RunInfo


def _lookup(transfers: WalletTransfers, facts: _Facts, *, since_ms: int,
            claimed: frozenset[str]) -> tuple[str, int] | None:
    """A found transfer, None when the history has none; a failed lookup is an unknown outcome (raises)."""
    try:
        return transfers.find(facts.amount_quote, facts.from_wallet, facts.to_wallet, facts.transfer_id,
                              since_ms=since_ms, claimed=claimed)
    except errors.CoinbotError as error:
        raise errors.ExchangeUnavailable(f"transfer {facts.transfer_id}: cannot look it up ({error}); the next run "
                                         "asks again") from None


def _event(kind: str, facts: _Facts, *, tran: tuple[str, int] | None = None, detail: str = "") -> JournalEvent:
    return to_transfer_event(kind, facts.run, transfer_id=facts.transfer_id, amount_quote=facts.amount_quote,
                             from_wallet=facts.from_wallet, to_wallet=facts.to_wallet, tran=tran, detail=detail)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None

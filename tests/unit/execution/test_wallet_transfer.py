"""transfer_collateral: journaled before the call, never sent twice, looked up after any failure and before a
resend; the paper wallets move cash between the two paper accounts."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal as D

import pytest

from lib.core.errors import ExchangeUnavailable, OrderRejected
from lib.execution.journal import JournalEvent, RunInfo
from lib.execution.paper import PaperBroker, PaperParams, PaperSnapshot
from lib.execution.wallet_transfer import PaperWallets, reconcile_open_transfers, transfer_collateral

RUN = RunInfo(time_ms=1_000_000, run_id="run-1", rebalance_id="funding_carry-1", mode="testnet", venue="binance")


@dataclass
class Exchange:
    """An exchange's transfer desk: ``fail`` says what the next send does: "" (ok), "lost" (executes, the reply
    is lost), "down" (not executed, no reply) or "refuse"."""

    fail: list[str] = field(default_factory=list)
    executed: list[tuple[str, D, str, str, int]] = field(default_factory=list)
    sends: int = 0

    def send(self, amount: D, from_wallet: str, to_wallet: str, transfer_id: str) -> str:
        self.sends += 1
        mode = self.fail.pop(0) if self.fail else ""
        if mode == "refuse":
            raise OrderRejected("insufficient balance")
        if mode == "down":
            raise ExchangeUnavailable("timeout")
        self.executed.append((f"t{len(self.executed) + 1}", amount, from_wallet, to_wallet, RUN.time_ms))
        if mode == "lost":
            raise ExchangeUnavailable("timeout")
        return self.executed[-1][0]

    def find(self, amount: D, from_wallet: str, to_wallet: str, transfer_id: str, *, since_ms: int,
             claimed: frozenset[str]) -> tuple[str, int] | None:
        return next(((i, t) for i, a, f, to, t in self.executed if (a, f, to) == (amount, from_wallet, to_wallet)
                     and t >= since_ms and i not in claimed), None)


@dataclass
class Session:
    transfers: Exchange


class Journal:
    def __init__(self) -> None:
        self.history: list[JournalEvent] = []

    def append(self, event: JournalEvent) -> None:
        self.history.append(event)


def move(session: Session, journal: Journal, transfer_id: str = "tr-a") -> str:
    return transfer_collateral(session, D("250.08"), "spot", "futures", transfer_id, journal=journal, run=RUN)


def test_a_transfer_is_journaled_before_and_after_and_never_sent_twice() -> None:
    session, journal = Session(Exchange()), Journal()
    assert move(session, journal) == "t1"
    assert [e.event for e in journal.history] == ["transfer_sent", "transferred"]
    assert journal.history[1].requested_notional_quote == D("250.08") and journal.history[1].reason == "spot->futures"
    assert move(session, journal) == "t1"  # a re-run: done already, nothing sent
    assert session.transfers.sends == 1 and len(journal.history) == 2


def test_a_lost_reply_is_found_in_the_history_and_not_sent_again() -> None:
    session, journal = Session(Exchange(fail=["lost"])), Journal()
    assert move(session, journal) == "t1"
    assert session.transfers.sends == 1 and len(session.transfers.executed) == 1
    assert journal.history[-1].event == "transferred" and "found after" in journal.history[-1].detail


def test_an_unknown_outcome_stops_and_the_next_run_looks_up_before_sending() -> None:
    session, journal = Session(Exchange(fail=["down"])), Journal()
    with pytest.raises(ExchangeUnavailable, match="unknown outcome"):
        move(session, journal)
    assert [e.event for e in journal.history] == ["transfer_sent"]  # open: the next run asks first
    assert move(session, journal) == "t1"  # not in the history: sent now, once
    assert session.transfers.sends == 2 and len(session.transfers.executed) == 1


def test_a_transfer_an_earlier_run_sent_is_found_before_any_resend() -> None:
    exchange = Exchange(fail=["lost"])
    session, journal = Session(exchange), Journal()
    exchange.find = lambda *a, **k: None  # type: ignore[method-assign]  # the history lags right after the send
    with pytest.raises(ExchangeUnavailable):
        move(session, journal)
    del exchange.find  # the history has caught up by the next run
    assert move(session, journal) == "t1"
    assert exchange.sends == 1 and [e.event for e in journal.history] == ["transfer_sent", "transferred"]


def test_a_refused_transfer_is_journaled_failed_and_raises() -> None:
    session, journal = Session(Exchange(fail=["refuse"])), Journal()
    with pytest.raises(OrderRejected):
        move(session, journal)
    assert [e.event for e in journal.history] == ["transfer_sent", "transfer_failed"]


def test_a_transfer_claimed_by_another_id_is_not_taken_for_this_one() -> None:
    session, journal = Session(Exchange(fail=["", "down"])), Journal()
    move(session, journal, "tr-a")
    with pytest.raises(ExchangeUnavailable):  # same amount and direction, but t1 belongs to tr-a
        move(session, journal, "tr-b")


def test_paper_wallets_move_cash_and_refuse_what_the_margin_needs() -> None:
    params = PaperParams(max_leverage=3.0, slippage_bps=0.0)  # fee 10 bps
    spot = PaperBroker(PaperSnapshot(cash_quote=D("1000")), prices={"BTC/USDT:USDT": 20_000.0}, now_ms=1,
                       params=params)
    futures = PaperBroker(PaperSnapshot(cash_quote=D("0")), prices={"BTC/USDT:USDT": 20_000.0}, now_ms=1,
                          params=params)
    wallets = PaperWallets(spot=spot, futures=futures, now_ms=1)
    wallets.send(D("250"), "spot", "futures", "tr-a")
    assert (spot.fetch_holdings().cash_quote, futures.fetch_holdings().cash_quote) == (750.0, 250.0)
    assert wallets.find(D("250"), "spot", "futures", "tr-a", since_ms=0, claimed=frozenset())[0] == "paper-tr-a"
    futures.create_market_order("BTC/USDT:USDT", "sell", D("0.03"), client_order_id="cb-1")  # 600 short, fee 0.6
    with pytest.raises(OrderRejected, match="over 3.0x"):  # 249.4 - 100 = 149.4 x 3 < 600
        wallets.send(D("100"), "futures", "spot", "tr-b")
    assert futures.fetch_holdings().cash_quote == pytest.approx(249.4)


def test_open_transfers_of_an_earlier_run_are_settled_first_found_or_not() -> None:
    exchange = Exchange(fail=["down", "lost"])
    session, journal = Session(exchange), Journal()
    with pytest.raises(ExchangeUnavailable):
        move(session, journal, "tr-a")  # never executed
    exchange.find = lambda *a, **k: None  # type: ignore[method-assign]  # the history lags right after the send
    with pytest.raises(ExchangeUnavailable):  # executed, reply lost, and the history does not show it yet
        transfer_collateral(session, D("99"), "futures", "spot", "tr-b", journal=journal, run=RUN)
    del exchange.find  # the history has caught up by the next run
    settled = reconcile_open_transfers(session, journal=journal, run=RUN)
    assert [(e.transfer_id, e.event) for e in settled] == [("tr-a", "transfer_failed"), ("tr-b", "transferred")]
    assert settled[1].exchange_order_id == "t1" and settled[1].reason == "futures->spot"
    assert reconcile_open_transfers(session, journal=journal, run=RUN) == [] and exchange.sends == 2

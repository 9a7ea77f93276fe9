"""The exchange's deposits/withdrawals recorded in state/cashflows.jsonl once each (keyed by the exchange's id):
a re-run, or one after a crash between the append and positions.json, appends nothing; a dry run writes nothing.
The client is a stand-in for ccxt's history calls (the thing under test is what we do with its entries)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lib.core import storage
from lib.core.errors import DataError
from lib.execution.cashflows import CashFlow, sum_flows_quote, unrecorded_flows
from lib.execution.ccxt_cashflows import record_exchange_cashflows
from lib.execution.state_files import read_cashflows

SINCE, NOW = 1_000_000, 2_000_000


class History:
    """ccxt's fetch_deposits / fetch_withdrawals answering fixed entries (unified ccxt shape)."""

    has = {"fetchDeposits": True, "fetchWithdrawals": True}
    last_http_response = last_json_response = None

    def __init__(self, deposits: list[dict[str, Any]], withdrawals: list[dict[str, Any]]) -> None:
        self.deposits, self.withdrawals = deposits, withdrawals

    def fetch_deposits(self, code: str | None, since: int) -> list[dict[str, Any]]:
        return [e for e in self.deposits if e["timestamp"] >= since]

    def fetch_withdrawals(self, code: str | None, since: int) -> list[dict[str, Any]]:
        return [e for e in self.withdrawals if e["timestamp"] >= since]


def entry(id_: str | None, amount: float, time_ms: int, *, status: str = "ok", currency: str = "USDT",
          fee: float = 0.0) -> dict[str, Any]:
    return {"id": id_, "amount": amount, "timestamp": time_ms, "status": status, "currency": currency,
            "fee": {"currency": currency, "cost": fee}}


def history() -> History:
    return History(
        deposits=[entry("d1", 500.0, SINCE + 10), entry("d0", 70.0, SINCE),  # d0: the last run valued it
                  entry("d2", 20.0, SINCE + 20, status="pending"),  # not credited yet
                  entry("d3", 1.5, SINCE + 30, currency="BTC")],  # not the quote
        withdrawals=[entry("w1", 300.0, SINCE + 40, fee=1.0), entry("w2", 40.0, NOW + 1)])  # w2: after this run


def record(path: Path, client: History, *, write: bool = True) -> list[CashFlow]:
    return record_exchange_cashflows(client, path, read_cashflows(path), quote="USDT", since_ms=SINCE, until_ms=NOW,
                                     write=write)


def test_the_exchanges_flows_are_appended_once_each(tmp_path: Path) -> None:
    path = tmp_path / "cashflows.jsonl"
    storage.append_jsonl(path, CashFlow(time_ms=SINCE + 5, amount_quote=Decimal(100), source="manual").to_dict())
    new = record(path, history())
    assert [(f.source, f.amount_quote, f.time_ms) for f in new] == [
        ("exchange:fetchDeposits:d1", Decimal("500.0"), SINCE + 10),
        ("exchange:fetchWithdrawals:w1", Decimal("-301.0"), SINCE + 40)]  # 300 + its 1.0 fee
    on_file = read_cashflows(path)
    assert [f.source for f in on_file] == ["manual", "exchange:fetchDeposits:d1", "exchange:fetchWithdrawals:w1"]
    assert sum_flows_quote(on_file, after_ms=SINCE, until_ms=NOW) == 100 + 500 - 301  # 299: what report takes out
    # the re-run (or the run after a crash right after the appends) finds both by id: nothing new, nothing appended
    assert record(path, history()) == [] and read_cashflows(path) == on_file


def test_a_pending_withdrawal_once_recorded_is_not_recorded_again_when_it_completes(tmp_path: Path) -> None:
    path = tmp_path / "cashflows.jsonl"
    pending = History([], [entry("w1", 300.0, SINCE + 40, status="pending")])
    assert [f.amount_quote for f in record(path, pending)] == [Decimal("-300.0")]
    done = History([], [entry("w1", 300.0, SINCE + 40, status="ok")])
    assert record(path, done) == [] and len(read_cashflows(path)) == 1


def test_a_dry_run_or_a_bots_ledger_writes_nothing_but_still_sees_the_flows(tmp_path: Path) -> None:
    path = tmp_path / "cashflows.jsonl"
    assert len(record(path, history(), write=False)) == 2 and not path.exists()


def test_an_entry_without_an_id_is_refused_it_could_not_be_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "cashflows.jsonl"
    with pytest.raises(DataError, match="no id"):
        record(path, History([entry(None, 500.0, SINCE + 10)], []))
    assert not path.exists()


def test_unrecorded_flows_drop_what_the_file_holds_and_repeats() -> None:
    def flow(source: str, amount: int) -> CashFlow:
        return CashFlow(time_ms=SINCE + 1, amount_quote=Decimal(amount), source=source)

    recorded = [flow("manual", 100), flow("exchange:fetchDeposits:a", 50)]
    fetched = [flow("exchange:fetchDeposits:a", 50), flow("exchange:fetchDeposits:b", 20),
               flow("exchange:fetchDeposits:b", 20), flow("exchange:fetchWithdrawals:a", -30)]
    assert unrecorded_flows(fetched, recorded) == [flow("exchange:fetchDeposits:b", 20),
                                                   flow("exchange:fetchWithdrawals:a", -30)]

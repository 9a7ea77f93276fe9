"""The funding ledger: records booked once by (id, symbol, time), per-coin sums, ccxt rows parsed exactly, and the
paper account's records equal to what lib.execution.paper_funding charges."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from lib.core import errors
from lib.core.venue import MarketData
from lib.execution.carry_state import RunState
from lib.execution.funding_ledger import (
    FundingRecord,
    book,
    funding_by_coin,
    not_booked_text,
    paper_funding_records,
    paper_run_records,
    parse_funding_rows,
    read_ledger,
    window_start,
)
from lib.execution.paper import PaperSnapshot
from lib.execution.paper_funding import accrue_funding
from lib.execution.venue_session import settle_paper_funding

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


def record(record_id: str, symbol: str, time_ms: int, amount: str, mode: str = "testnet") -> FundingRecord:
    return FundingRecord(record_id=record_id, symbol=symbol, time_ms=time_ms, amount_quote=Decimal(amount),
                         mode=mode, venue="binance")


def test_a_record_is_booked_once_whatever_the_reruns(tmp_path: Path) -> None:
    path = tmp_path / "funding.jsonl"
    first = [record("7", BTC, 28_800_000, "0.0123"), record("7", ETH, 28_800_000, "0.0045")]  # one id, two coins
    assert book(path, first) == first
    again = [*first, record("9", BTC, 57_600_000, "-0.0020"), record("9", BTC, 57_600_000, "-0.0020")]
    assert book(path, again) == [record("9", BTC, 57_600_000, "-0.0020")]
    assert book(path, again) == []
    assert read_ledger(path) == [*first, record("9", BTC, 57_600_000, "-0.0020")]
    # 0.0123 - 0.0020 = 0.0103 on BTC, 0.0045 on ETH: exact decimals
    assert funding_by_coin(read_ledger(path)) == {"BTC/USDT": Decimal("0.0103"), "ETH/USDT": Decimal("0.0045")}


def test_the_ledger_is_read_per_mode_and_the_window_starts_at_the_newest_record(tmp_path: Path) -> None:
    path = tmp_path / "funding.jsonl"
    assert window_start(path, mode="testnet", venue="binance", first_fill_ms=5_000, now_ms=9_000) == 5_000
    assert window_start(path, mode="testnet", venue="binance", first_fill_ms=None, now_ms=9_000) == 9_000
    book(path, [record("1", BTC, 100, "1"), record("2", BTC, 200, "1"), record("3", BTC, 900, "1", mode="paper")])
    assert window_start(path, mode="testnet", venue="binance", first_fill_ms=5, now_ms=9_000) == 200  # inclusive
    assert [r.record_id for r in read_ledger(path, mode="paper")] == ["3"]


def test_ccxt_rows_are_parsed_from_the_exact_income_text() -> None:
    rows = [
        {"info": {"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "0.00134317", "asset": "USDT",
                  "time": "1621584000000", "tranId": "4480321991774044580"},
         "symbol": BTC, "code": "USDT", "timestamp": 1621584000000, "id": "4480321991774044580", "amount": 0.00134317},
        {"info": {"incomeType": "FUNDING_FEE", "income": "-0.1", "asset": "BNFCR"}, "symbol": BTC, "code": "BNFCR",
         "timestamp": 1621584000000, "id": "1", "amount": -0.1},  # another asset: not the book's
    ]
    assert parse_funding_rows(rows, quote="USDT", mode="live", venue="binance") == [
        FundingRecord(record_id="4480321991774044580", symbol=BTC, time_ms=1621584000000,
                      amount_quote=Decimal("0.00134317"), mode="live", venue="binance")]
    with pytest.raises(errors.DataError):
        parse_funding_rows([{"symbol": BTC, "timestamp": 1, "amount": 1.0}], quote="USDT", mode="live",
                           venue="binance")  # no id: cannot be booked once
    with pytest.raises(errors.DataError):
        parse_funding_rows({"rows": []}, quote="USDT", mode="live", venue="binance")


def testpaper_run_records_are_what_the_paper_account_settles() -> None:
    # short 0.01 BTC perp at 50,000, rates 0.0001 at 8 h and -0.00005 at 16 h: a short receives 0.01 x 50,000 x
    # 0.0001 = 0.05, then pays 0.01 x 50,000 x 0.00005 = 0.025; the 0 h print is before the window
    amounts = {BTC: Decimal("-0.01"), "BTC/USDT": Decimal("0.01")}
    rates = {BTC: [(0, 0.0003), (28_800_000, 0.0001), (57_600_000, -0.00005)]}
    records = paper_funding_records(amounts, rates=rates, prices={BTC: 50_000.0}, since_ms=0, until_ms=57_600_000,
                                    mode="paper", venue="binance")
    assert [(r.record_id, r.time_ms, r.amount_quote) for r in records] == [
        ("paper-28800000", 28_800_000, Decimal("0.05")), ("paper-57600000", 57_600_000, Decimal("-0.025"))]
    snapshot = PaperSnapshot(cash_quote=Decimal(100), amounts_base=amounts, entry_prices={BTC: Decimal(50_000)})
    _, paid = accrue_funding(snapshot, rates=rates, prices={BTC: 50_000.0}, since_ms=0, until_ms=57_600_000)
    assert sum(r.amount_quote for r in records) == -paid == Decimal("0.025")


class RatesOnly:
    """Market data that knows the BTC perp's funding prints only (what the paper account settles with)."""

    def fetch_funding_history(self, symbol: str, *, since_ms: int, limit: int) -> list[tuple[int, float]]:
        prints = [(0, 0.0003), (28_800_000, 0.0001), (57_600_000, -0.00005)]
        return [(t, r) for t, r in prints if t >= since_ms][:limit]


def test_a_paper_run_books_exactly_what_its_account_settled() -> None:
    snapshot = PaperSnapshot(cash_quote=Decimal(100), amounts_base={BTC: Decimal("-0.01")},
                             entry_prices={BTC: Decimal(50_000)})
    prices = {BTC: 50_000.0}
    state = SimpleNamespace(previous=SimpleNamespace(paper={"futures": snapshot.to_dict()}, updated_ms=0),
                            run=SimpleNamespace(time_ms=57_600_000, mode="paper", venue="binance"),
                            session=SimpleNamespace(futures=SimpleNamespace(market_data=RatesOnly()),
                                                    fetch_prices=lambda symbols: prices))
    records = paper_run_records(cast(RunState, state))
    settled = settle_paper_funding(cast(MarketData, RatesOnly()), snapshot, prices, 0, 57_600_000)
    assert sum(r.amount_quote for r in records) == settled.cash_quote - snapshot.cash_quote == Decimal("0.025")
    assert [r.key for r in records] == [("paper-28800000", BTC, 28_800_000), ("paper-57600000", BTC, 57_600_000)]


def test_the_alert_line_of_a_failed_funding_fetch_says_what_is_missed_and_where_the_next_run_starts() -> None:
    error = errors.ExchangeUnavailable("fetch_funding_history: OperationFailed after 4 retries")
    exchange = not_booked_text(error, paper=False, since_ms=1_767_225_600_000)
    assert exchange == ("funding records not booked (ExchangeUnavailable: fetch_funding_history: OperationFailed "
                        "after 4 retries); nothing booked, the next run asks again from 2026-01-01T00:00Z")
    unreadable = not_booked_text(errors.StateError("cannot read state/funding.jsonl"), paper=False, since_ms=None)
    assert unreadable.endswith("the next run asks again from the newest record booked")
    assert "paper" not in unreadable  # an exchange account whose ledger could not be read is not a paper one
    paper = not_booked_text(error, paper=True, since_ms=None)
    assert paper.startswith("paper funding records not booked") and "the paper wallet settled them" in paper

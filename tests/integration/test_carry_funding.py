"""Funding earned from the exchange's own funding records (ccxt fetch_funding_history on the USD-M client = Binance
GET /fapi/v1/income, incomeType FUNDING_FEE), over real ccxt HTTP against FakeBinance: booked once by id/symbol/time
in state/funding.jsonl, a re-run books nothing again, and the report shows each coin's sum."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

import pytest

from lib.core.storage import read_jsonl
from lib.core.timeframes import MS_PER_HOUR
from lib.execution.ccxt_client import create_client
from lib.execution.funding_ledger import PAGE, fetch_exchange_funding
from lib.ops.config import ExchangeSection, Secrets
from tests.fakes.exchange_server import INCOME_PATH, FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance_carry import FAKE_NOW_MS, KEYS, TELEGRAM, assert_hedged_or_flat, setup


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1000}, futures_wallet_quote=0) as server:
        server.ticker_clock = "wall"
        yield server


def ledger(project: Project) -> list[dict[str, object]]:
    rows, torn = read_jsonl(project.state / "funding.jsonl")
    assert not torn
    return rows


def test_funding_is_booked_once_from_the_exchanges_records_and_reported_per_coin(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    assert project.run("rebalance").returncode == 0
    assert fake.funding_income == [] and not (project.state / "funding.jsonl").exists()  # no settlement yet
    fake.advance_ms(16 * MS_PER_HOUR)  # 08:00 and 16:00 settle on both shorts
    fake.settle_funding()
    income = list(fake.funding_income)
    assert len(income) == 4 and sum(Decimal(r["income"]) for r in income) != 0
    second = project.run("rebalance")
    assert second.returncode == 0, second.stderr[-3000:]
    booked = ledger(project)
    assert sorted((r["id"], r["amount_quote"]) for r in booked) == sorted((r["tranId"], r["income"]) for r in income)
    assert {r["symbol"] for r in booked} == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    third = project.run("rebalance")  # the window overlaps the newest record: nothing booked twice
    assert third.returncode == 0, third.stderr[-3000:]
    assert ledger(project) == booked
    assert fake.request_count(INCOME_PATH, method="GET") >= 2
    assert_hedged_or_flat(fake)

    per_coin: dict[str, Decimal] = defaultdict(Decimal)
    for row in income:
        per_coin[str(row["symbol"]).removesuffix("USDT")] += Decimal(row["income"])
    report = project.run("report", "--dry-run")  # prints, then fails on the pipeline's health (no candles here)
    assert "carry sleeve" in report.stdout, report.stderr[-3000:]
    for coin, amount in per_coin.items():
        line = next(x for x in report.stdout.splitlines() if x.strip().startswith(f"{coin}/USDT: basis P&L"))
        assert f"funding earned {amount:+.4f}" in line and "net of fees" in line
    assert f"funding earned {sum(per_coin.values()):+.4f} USDT" in report.stdout


def test_funding_history_pages_and_windows_over_ccxt_http(fake: FakeBinance) -> None:
    section = ExchangeSection(id="binanceusdm", market_type="swap", mode="testnet", rest_base_url=fake.base_url,
                              timeout_ms=2000, enable_rate_limit=False, retry_base_delay_ms=10)
    client = create_client(section, Secrets(exchange_api_key="k", exchange_api_secret="s"))
    start = FAKE_NOW_MS - 20 * 86_400_000
    # 2,500 records 10 minutes apart from ``start`` (17.4 days): three 7-day windows of 1,008, 1,008 and 484 records;
    # each of the first two takes a full page of 1,000 and a second page from the newest time (inclusive): 5 requests
    fake.funding_income.extend({"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "0.01", "asset": "USDT",
                                "time": start + i * MS_PER_HOUR // 6, "info": "FUNDING_FEE", "tranId": str(9_000 + i),
                                "tradeId": ""} for i in range(2 * PAGE + 500))
    records = fetch_exchange_funding(client, since_ms=start, until_ms=FAKE_NOW_MS, quote="USDT", mode="testnet",
                                     venue="binance")
    assert len({r.key for r in records}) == 2 * PAGE + 500  # every record once the ledger dedupes page overlaps
    assert sum({r.key: r.amount_quote for r in records}.values()) == Decimal("25.00")
    assert {r.symbol for r in records} == {"BTC/USDT:USDT"}
    assert fake.request_count(INCOME_PATH, method="GET") == 5


def test_a_failed_funding_fetch_alerts_once_trades_on_and_the_next_run_books_the_records_once(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    assert project.run("rebalance").returncode == 0
    fake.advance_ms(8 * MS_PER_HOUR)  # 08:00 settles on both shorts
    fake.settle_funding()
    second = project.run("rebalance")
    assert second.returncode == 0, second.stderr[-3000:]
    booked = ledger(project)
    assert len(booked) == 2
    ledger_bytes = (project.state / "funding.jsonl").read_bytes()
    positions_before = (project.state / "positions.json").read_bytes()
    fake.advance_ms(8 * MS_PER_HOUR)  # 16:00 settles: two records the failing run cannot read
    fake.settle_funding()
    assert len(fake.funding_income) == 4
    fake.fail_next(INCOME_PATH, status=500, times=None, method="GET")  # every attempt, retries included

    failed = project.run("rebalance")
    assert failed.returncode == 0, failed.stderr[-3000:]  # funding bookkeeping is no trading input: the run trades on
    assert project.runs()[-1]["status"] == "ok"
    assert (project.state / "positions.json").read_bytes() != positions_before  # the book was valued and written
    assert_hedged_or_flat(fake)
    telegram.wait_for_messages(1)
    texts = telegram.texts
    assert len(texts) == 1 and "funding records not booked" in texts[0] and "the next run asks again" in texts[0]
    # the credentials (not the chat id "42": the alert's millisecond times and clock contain it by chance)
    assert all(value not in texts[0] for value in (*KEYS.values(), TELEGRAM["COINBOT_TELEGRAM_BOT_TOKEN"]))
    assert (project.state / "funding.jsonl").read_bytes() == ledger_bytes  # nothing booked, the cursor unmoved

    fake.clear_faults()
    fourth = project.run("rebalance")
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    rebooked = ledger(project)
    assert rebooked[:2] == booked  # appended after the earlier lines
    assert sorted((r["id"], r["amount_quote"]) for r in rebooked) == \
        sorted((r["tranId"], r["income"]) for r in fake.funding_income)  # each of the 4 records once
    assert len(telegram.messages) == 1  # the failure was said once

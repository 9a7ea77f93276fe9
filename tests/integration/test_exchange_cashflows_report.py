"""book.exchange_cashflows: a deposit read from the exchange's history is recorded in state/cashflows.jsonl by
rebalance (once, by the exchange's id), so the daily report leaves it out of the day's P&L; a re-run appends
nothing and a dry run writes nothing. Real scripts against the fake Binance (its capital history endpoints)."""

from __future__ import annotations

import re
import time
from decimal import Decimal

from lib.core.storage import read_jsonl
from lib.core.timeframes import MS_PER_DAY, format_ms
from lib.ops.equity_csv import to_equity_csv_header
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import KEYS, TELEGRAM, assert_ok, config_text, positions, with_risk, write_targets


def test_an_exchange_deposit_is_recorded_once_and_is_no_profit_in_the_report(project: Project,
                                                                            telegram: FakeTelegram) -> None:
    with FakeBinance(spot_balances={"USDT": 1000}) as fake:  # the wall clock: its history and the runs agree
        project.write_config(config_text(telegram, fake=fake, extra=with_risk("[book]\nexchange_cashflows = true\n")))
        project.write_env(**TELEGRAM, **KEYS)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        first = positions(project)
        yesterday_ms = first.updated_ms - MS_PER_DAY  # yesterday's report saw this equity: the day's reference
        (project.state / "equity.csv").write_text(
            f"{to_equity_csv_header()}\n{yesterday_ms},{format_ms(yesterday_ms)},{first.equity_quote},"
            f"{first.equity_quote},{first.equity_quote},0.3,0.3\n")
        time.sleep(1.1)
        fake.move_capital("USDT", Decimal(500))  # 500 arrive on the exchange; nobody records it by hand
        assert_ok(project.run("rebalance", "--dry-run"))
        assert not (project.state / "cashflows.jsonl").exists()  # a dry run writes nothing
        assert_ok(project.run("rebalance"))
        recorded = read_jsonl(project.state / "cashflows.jsonl")[0]
        assert [(r["amount_quote"], r["source"]) for r in recorded] == [
            ("500.0", f"exchange:fetchDeposits:{fake.capital_moves[0]['id']}")]
        assert_ok(project.run("rebalance"))  # the re-run sees the same deposit in the history: appends nothing
        assert read_jsonl(project.state / "cashflows.jsonl")[0] == recorded
        after = positions(project)
        report = project.run("report", "--dry-run")
    assert after.equity_quote > first.equity_quote + 490  # the account did grow by the deposit
    match = re.search(r"day ([+-][\d,.]+) USDT \(([+-][\d.]+)%\) vs report [^\n]*, net of cash flows \+500\.00",
                      report.stdout)
    assert match is not None, report.stdout + report.stderr[-2000:]
    day = float(match.group(1).replace(",", ""))
    assert abs(day - (after.equity_quote - first.equity_quote - 500)) < 0.01  # fees/price only: not +500
    assert abs(day) < 2


def test_a_hand_record_that_could_twin_an_exchange_flow_is_refused_unless_said_outside_its_history(
        project: Project, telegram: FakeTelegram) -> None:
    with FakeBinance(spot_balances={"USDT": 1000}) as fake:
        project.write_config(config_text(telegram, fake=fake, extra=with_risk("[book]\nexchange_cashflows = true\n")))
        project.write_env(**TELEGRAM, **KEYS)
        refused = project.run("cashflow", "--", "-300")
        assert refused.returncode == 2 and "--not-in-exchange-history" in refused.stderr, refused.stderr[-2000:]
        assert not (project.state / "cashflows.jsonl").exists()
        assert_ok(project.run("cashflow", "--not-in-exchange-history", "--note", "to a sub-account", "--", "-300"))
    assert [(r["amount_quote"], r["source"]) for r in read_jsonl(project.state / "cashflows.jsonl")[0]] == [
        ("-300", "manual")]

"""Issue 9 item 3, over real ccxt HTTP against FakeBinance: in a shared account (book.capital_quote) the bot's equity
is its own cash ledger + its coins, so its drawdown halt fires on its own loss, the owner's cash moving does not move
its baselines, and a re-run after a crash books every fill once. Before: all quote cash was the bot's equity."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.storage import read_json, write_json_atomic
from lib.core.timeframes import MS_PER_HOUR
from lib.execution.bot_ledger import fill_cash_quote
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import (
    FAKE_NOW_MS,
    KEYS,
    TELEGRAM,
    assert_consistent,
    assert_ok,
    config_text,
    journal,
    positions,
    price_frame,
    weights_on,
    with_risk,
    write_targets,
)

SHARED = "[book]\ncapital_quote = 1000\n"  # the owner's account holds far more USDT than the bot may use


def shared_setup(project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    """A testnet config whose bot may use 1,000 USDT of the account (as setup() does otherwise)."""
    project.write_config(config_text(telegram, fake=fake, extra=with_risk(SHARED, max_asset_weight_frac=1.0)))
    fake.ticker_clock = "wall"  # a testnet run's prices are stamped by the wall clock
    project.write_env(**TELEGRAM, **KEYS)


def test_the_bots_drawdown_halts_in_a_shared_account_whose_total_barely_moves(project: Project,
                                                                              telegram: FakeTelegram) -> None:
    """10,000 USDT account, the bot's 1,000: it buys 9 BTC at 100, BTC falls to 70. The bot is down 27 % (halt at
    25 %: flatten), the account only 2.5 % (measured on it, nothing would happen)."""
    frame = price_frame([100.0] * 10 + [70.0] * 5)
    with FakeBinance(now_ms=FAKE_NOW_MS - 5 * MS_PER_HOUR, candles={("BTC/USDT", "1h"): frame},
                     spot_balances={"USDT": 10_000}) as fake:
        shared_setup(project, telegram, fake)
        write_targets(project, {"BTC/USDT": 0.9}, exchange="binance")
        assert_ok(project.run("rebalance"))
        assert Decimal(fake.spot_balances["BTC"]) == Decimal(9)  # 0.9 of the bot's 1,000, not of the 10,000
        start = positions(project)
        assert start.equity_quote == pytest.approx(1000 - 0.9, abs=0.01)  # 900 fee 0.9 (the fake charges USDT)
        fake.set_now_ms(FAKE_NOW_MS)
        halted = project.run("rebalance")
        assert halted.returncode == 4 and "drawdown" in halted.stderr, halted.stderr[-2000:]
        assert (project.state / "halt.json").exists()
        assert_consistent(project, fake)
        assert Decimal(fake.spot_balances["BTC"]) == 0  # flattened
        account = fake.spot_balances["USDT"]
    assert 9_700 < account < 9_750  # the whole account lost ~2.7 %: what today's main measured
    halt = read_json(project.state / "halt.json")
    assert halt["high_water_mark_quote"] == pytest.approx(1000)  # the bot's capital when it started
    assert halt["equity_quote"] == pytest.approx(100 - 0.9 + 9 * 70, abs=0.01)


def test_the_owner_moving_his_own_cash_does_not_move_the_bots_baselines(project: Project,
                                                                        telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 5_000}) as fake:
        shared_setup(project, telegram, fake)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        before = positions(project)
        fake.spot_balances["USDT"] -= 3_000  # the owner takes 3,000 of his own out, records nothing
        assert_ok(project.run("rebalance"))  # measured on the account: a 60 % drawdown, flatten and halt
        fake.spot_balances["USDT"] += 10_000  # and puts 10,000 in: not the bot's profit either
        assert_ok(project.run("rebalance"))
        after = positions(project)
        assert_consistent(project, fake)
        assert len([o for o in fake.orders if o.accepted]) == 1  # the first buy only: nothing re-sized
    assert not (project.state / "halt.json").exists()
    assert after.high_water_mark_quote == pytest.approx(before.high_water_mark_quote, abs=0.5)
    assert after.day_start_equity_quote == pytest.approx(before.day_start_equity_quote)
    assert after.inception_equity_quote == pytest.approx(before.inception_equity_quote)
    assert after.equity_quote == pytest.approx(before.equity_quote, abs=0.5) and after.equity_quote < 1000
    assert after.cash_quote == pytest.approx(before.cash_quote) and after.account_cash_quote == pytest.approx(
        before.account_cash_quote + 7_000)
    assert abs(weights_on(project)["BTC/USDT"] - 0.3) < 0.01
    report = project.run("report", "--dry-run")  # the daily report's equity and P&L are the bot's too
    assert f"equity {after.equity_quote:,.2f} USDT" in report.stdout, report.stdout + report.stderr[-2000:]
    assert "equity 11," not in report.stdout


def test_a_rerun_after_a_crash_books_each_fill_once(project: Project, telegram: FakeTelegram) -> None:
    """Run 2 fills, then dies before positions.json (restored to run 1's); the re-run and one more run book its
    fills exactly once: the bot's cash = its capital - what the exchange took from the account's USDT."""
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 5_000}) as fake:
        shared_setup(project, telegram, fake)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        after_first = read_json(project.state / "positions.json")
        write_targets(project, {"BTC/USDT": 0.3, "ETH/USDT": 0.2, "SOL/USDT": 0.1}, exchange="binance")
        assert_ok(project.run("rebalance"))
        write_json_atomic(project.state / "positions.json", after_first)  # the crash: run 2's write never happened
        assert_ok(project.run("rebalance"))  # the re-run: run 2's client ids filled, nothing sent again
        assert_ok(project.run("rebalance"))
        events = assert_consistent(project, fake)
        spent = Decimal(5_000) - Decimal(fake.spot_balances["USDT"])
    fills = [e for e in events if e.event == "filled"]
    assert len(fills) == 3 and {e.symbol for e in fills} == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    book = positions(project)
    assert book.ledger is not None and book.ledger.start_quote == 1000
    assert book.ledger.cash_quote == Decimal(1000) + sum(fill_cash_quote(e) for e in fills)  # each fill once
    assert float(book.ledger.cash_quote) == pytest.approx(float(1000 - spent), abs=1e-6)  # = the exchange's view
    assert book.cash_quote == pytest.approx(float(1000 - spent), abs=1e-6)
    assert sorted(book.ledger.booked) == sorted(e.client_order_id for e in fills if e.client_order_id)
    assert len(journal(project)) == len(events)


def test_cashflow_gives_the_bot_capital_and_takes_back_at_most_its_cash(project: Project,
                                                                         telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 5_000}) as fake:
        shared_setup(project, telegram, fake)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        before = positions(project)
        assert before.ledger is not None and before.cash_quote == pytest.approx(700, abs=1)  # 1000 - ~300 of BTC
        too_much = project.run("cashflow", "--", "-800")  # more than the bot's own cash
        assert too_much.returncode == 1 and f"the bot holds {before.cash_quote:.2f} of its own cash" in too_much.stderr
        given = project.run("cashflow", "--note", "more for the bot", "500")  # from the owner's cash, nothing moved
        assert_ok(given)
        assert "capital given to the bot of 500" in given.stderr
        assert_ok(project.run("rebalance"))
        after = positions(project)
        assert_consistent(project, fake)
        spent = 5_000 - float(fake.spot_balances["USDT"])
    assert 449 < spent < 452  # the bigger capital was put to work: 0.3 of 1,500 in BTC
    assert after.cash_quote == pytest.approx(1_000 + 500 - spent, abs=1e-6)  # the exchange's view of the bot's cash
    assert after.high_water_mark_quote == pytest.approx(before.high_water_mark_quote + 500)
    assert after.inception_equity_quote == pytest.approx(before.inception_equity_quote + 500)
    assert after.ledger is not None and after.ledger.flows_quote == 500
    assert after.equity_quote == pytest.approx(1_499.5, abs=0.5)
    assert abs(weights_on(project)["BTC/USDT"] - 0.3) < 0.01


def test_the_bots_cash_missing_from_the_account_is_its_loss_and_alerted(project: Project,
                                                                       telegram: FakeTelegram) -> None:
    """The owner takes 1,500 of a 2,000 account (only 1,000 was his), records nothing: the bot's cash is not all
    there any more; its ledger drops to what is, a 50 % loss for the bot: flatten and halt, and a person is told."""
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 2_000}) as fake:
        shared_setup(project, telegram, fake)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        fake.spot_balances["USDT"] -= 1_500  # 199.7 left of the bot's 699.7
        halted = project.run("rebalance")
        assert halted.returncode == 4 and "drawdown 50.0" in halted.stderr, halted.stderr[-2000:]
        assert_consistent(project, fake)
        assert fake.spot_balances.get("BTC", 0) == 0  # the bot's coins were sold: the exit is never blocked
    texts = telegram.texts
    assert any("500.00 less quote cash than the bot's own cash ledger" in text for text in texts)
    assert any("drawdown" in text for text in texts)


def test_setting_a_capital_later_starts_the_bots_baselines_and_removing_it_needs_a_person(
        project: Project, telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 5_000}) as fake:
        project.write_config(config_text(telegram, fake=fake, extra=with_risk(max_asset_weight_frac=1.0)))
        fake.ticker_clock = "wall"
        project.write_env(**TELEGRAM, **KEYS)
        write_targets(project, {"BTC/USDT": 0.02}, exchange="binance")
        assert_ok(project.run("rebalance"))  # the whole account is the bot's: ~100 USDT of BTC
        whole = positions(project)
        assert whole.ledger is None and whole.high_water_mark_quote == pytest.approx(5_000)
        shared_setup(project, telegram, fake)  # now it may use 1,000 of it
        started = project.run("rebalance")
        assert_ok(started)
        assert "the bot's capital starts now" in started.stderr
        book = positions(project)
        assert book.ledger is not None and float(book.ledger.start_quote) == pytest.approx(1_000)
        assert book.equity_quote == pytest.approx(1_000, abs=0.5)  # its BTC is its own, the rest of 1,000 cash
        assert abs(weights_on(project)["BTC/USDT"] - 0.02) < 0.005  # now 0.02 of 1,000: most BTC sold
        assert book.high_water_mark_quote == pytest.approx(1_000, abs=0.5)
        assert book.inception_equity_quote == pytest.approx(1_000, abs=0.01) and book.inception_ms > whole.inception_ms
        fees = [e.fee_quote or 0.0 for e in journal(project) if e.event == "filled"]
        assert len(fees) == 2 and book.fees_paid_quote == pytest.approx(sum(fees))  # the fees so far are kept
        project.write_config(config_text(telegram, fake=fake, extra=with_risk(max_asset_weight_frac=1.0)))
        refused = project.run("rebalance")  # the setting removed: the bot's baselines would meet the account's
        assert refused.returncode == 1 and "--reset-high-water-mark" in refused.stderr
        assert_ok(project.run("rebalance", "--reset-high-water-mark"))
        assert positions(project).ledger is None and positions(project).high_water_mark_quote > 4_000


def test_the_owners_open_order_locking_cash_is_no_loss_of_the_bot(project: Project, telegram: FakeTelegram) -> None:
    """Free USDT below the bot's cash because a person's limit order locks some: the cash is still there (free +
    locked), so nothing is booked as a loss and nothing halts."""
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 2_000}) as fake:
        shared_setup(project, telegram, fake)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        before = positions(project)
        fake.spot_balances["USDT"] -= 1_500  # the owner's limit order locks 1,500: 199.7 free of 1,699.7
        fake.spot_locked["USDT"] = Decimal(1_500)
        locked = project.run("rebalance")
        assert_ok(locked)
        assert "of the bot's cash is locked by open orders it did not place" in locked.stderr
        after = positions(project)
    assert not (project.state / "halt.json").exists()
    assert after.cash_quote == pytest.approx(before.cash_quote) and after.ledger == before.ledger
    assert after.high_water_mark_quote == pytest.approx(before.high_water_mark_quote)

"""rebalance against FakeBinance (testnet, real ccxt): what the exchange holds is the book, all of it.

A coin whose market the exchange stopped trading (status BREAK, ccxt ``active: False``) or no longer lists at all
is still in the account: it must be valued (at its last stored close), flagged and never ordered, exactly as in
paper mode (tests/integration/test_rebalance_dead_symbol.py). Before: it vanished from the book, so its value read
as a loss: a 35 % "drawdown" flattened the healthy coins and halted the bot, and nobody was told about the coin.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from lib.core.storage import write_parquet_atomic
from lib.core.symbols import to_slug
from lib.core.timeframes import MS_PER_DAY
from lib.data.ohlcv import OHLCV_COLUMNS
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import FAKE_NOW_MS, Project
from tests.integration.test_rebalance import assert_consistent, assert_ok, positions, setup, write_targets


def store_close(project: Project, symbol: str, close: float) -> None:
    """The last daily candle compute_signals saw for ``symbol`` (data/ohlcv/binance/1d)."""
    candles = pd.DataFrame({"timestamp": [FAKE_NOW_MS - FAKE_NOW_MS % MS_PER_DAY - MS_PER_DAY], "open": [close],
                            "high": [close], "low": [close], "close": [close], "volume": [1.0]})[list(OHLCV_COLUMNS)]
    write_parquet_atomic(project.data / "ohlcv" / "binance" / "1d" / f"{to_slug(symbol)}.parquet", candles)


@pytest.mark.parametrize("how", ["stop_trading", "delist"])
def test_a_held_coin_whose_market_stopped_is_valued_flagged_and_no_false_drawdown(
        project: Project, telegram: FakeTelegram, how: str) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS) as fake:
        sol_price = fake.last_price("SOL/USDT")
        sol = (Decimal(400) / sol_price).quantize(Decimal("0.01"))  # ~40 % of a 1,000 USDT book
        fake.spot_balances.update({"USDT": Decimal(600), "SOL": sol})
        setup(project, telegram, fake=fake)
        store_close(project, "SOL/USDT", float(sol_price))
        write_targets(project, {"BTC/USDT": 0.2, "ETH/USDT": 0.2, "SOL/USDT": 0.35}, exchange="binance")
        assert_ok(project.run("rebalance"))
        before = positions(project)
        getattr(fake, how)("SOL/USDT")  # Binance: status BREAK, later gone from exchangeInfo
        write_targets(project, {"BTC/USDT": 0.2, "ETH/USDT": 0.2}, exchange="binance")
        run = project.run("rebalance")
        assert_ok(run)  # before: exit 4, a drawdown halt that sold BTC and ETH
        assert_consistent(project, fake)
        assert fake.spot_balances["BTC"] > 0 and fake.spot_balances["ETH"] > 0  # not flattened
        assert not (project.state / "halt.json").exists()
        assert all(order.params["symbol"] != "SOLUSDT" for order in fake.orders[1:] if order.accepted
                   and order.client_order_id not in {o.client_order_id for o in fake.orders[:3]})
        after = positions(project)
        assert after.amounts_base["SOL/USDT"] == float(fake.spot_balances["SOL"])  # still in the book
        assert after.equity_quote == pytest.approx(before.equity_quote, rel=0.01)
        assert set(after.unpriced) == {"SOL/USDT"}
    assert "SOL/USDT has no live price" in run.stderr
    assert any("SOL/USDT" in text and "no live price" in text for text in telegram.texts)


def test_coins_moved_outside_the_bot_are_alerted_not_taken_for_pnl_silently(project: Project,
                                                                             telegram: FakeTelegram) -> None:
    """positions.json says what BTC the last run left; the exchange now holds 20 % less and no fill of the bot
    explains it (a manual sale, a coin withdrawal): the exchange wins, and a person is told, with its value."""
    with FakeBinance(now_ms=FAKE_NOW_MS) as fake:
        fake.spot_balances.update({"USDT": Decimal(1000)})
        setup(project, telegram, fake=fake)
        write_targets(project, {"BTC/USDT": 0.2, "ETH/USDT": 0.2}, exchange="binance")
        assert_ok(project.run("rebalance"))
        assert not any("outside the bot" in text for text in telegram.texts)  # the bot's own fills explain it
        btc = fake.spot_balances["BTC"]
        left = (btc * Decimal("0.8")).quantize(Decimal("0.00001"))
        fake.spot_balances["BTC"] = left  # someone sold or withdrew a fifth (a 4 % move of the book)
        assert_ok(project.run("rebalance"))
        assert positions(project).amounts_base["BTC/USDT"] > float(left)  # the exchange wins: bought back to target
    [text] = [t for t in telegram.texts if "outside the bot" in t]
    assert f"BTC/USDT {float(btc):g} -> {float(left):g}" in text and "cashflow" in text


def test_a_full_book_still_trades_around_a_coin_the_exchange_stopped(project: Project, telegram: FakeTelegram) -> None:
    """The strategy invests the whole book in the coins it can trade (100 %) while the stopped coin, ~35 %, is kept
    as it is: buys are bound by the cash, the book stays unlevered. Before: every run halted (gross 1.35)."""
    with FakeBinance(now_ms=FAKE_NOW_MS) as fake:
        sol_price = fake.last_price("SOL/USDT")
        fake.spot_balances.update({"USDT": Decimal(600), "SOL": (Decimal(400) / sol_price).quantize(Decimal("0.01"))})
        setup(project, telegram, fake=fake)
        store_close(project, "SOL/USDT", float(sol_price))
        fake.stop_trading("SOL/USDT")
        write_targets(project, {"BTC/USDT": 0.35, "ETH/USDT": 0.35, "ADA/USDT": 0.3}, exchange="binance")
        run = project.run("rebalance")
        assert_ok(run)
        assert_consistent(project, fake)
        bought = {order.params["symbol"] for order in fake.orders if order.accepted}
        cash_left = fake.spot_balances["USDT"]
    assert bought == {"BTCUSDT", "ETHUSDT", "ADAUSDT"} and 0 <= cash_left < 20  # scaled to the cash, all spent
    assert positions(project).unpriced["SOL/USDT"].amount_base > 0

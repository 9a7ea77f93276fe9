"""Over real ccxt HTTP against FakeBinance: in a shared account a person's open sell order locks part of the bot's
BTC. The exit sells only the free part (no order the exchange refuses for insufficient balance, the run succeeds),
journals why the rest stays, alerts once, and keeps valuing the locked coins. Before: the whole holding was sold,
the exchange refused it (-2010) and the run failed every day."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.state import HaltRecord
from lib.core.storage import read_json
from lib.core.timeframes import MS_PER_HOUR
from lib.execution.orders import SKIP_LOCKED
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import (
    FAKE_NOW_MS,
    assert_ok,
    journal,
    positions,
    price_frame,
    setup,
    write_targets,
)


def test_an_exit_sells_only_the_coins_a_persons_open_order_does_not_lock(project: Project,
                                                                         telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1_000}) as fake:
        setup(project, telegram, fake=fake, risk={"max_asset_weight_frac": 1.0})
        write_targets(project, {"BTC/USDT": 0.5}, exchange="binance")
        assert_ok(project.run("rebalance"))
        bought = Decimal(fake.spot_balances["BTC"])
        assert bought > 0
        locked = (bought * Decimal("0.4")).quantize(Decimal("0.00001"))  # the person's limit sell locks 40 %
        fake.spot_balances["BTC"] -= locked
        fake.spot_locked["BTC"] = locked
        free = bought - locked
        sent_before = len(fake.orders)
        messages_before = len(telegram.messages)

        write_targets(project, {}, exchange="binance")  # the signal exits BTC
        exit_run = project.run("rebalance")
        assert_ok(exit_run)
        new_orders = fake.orders[sent_before:]
        assert [o.accepted for o in new_orders] == [True], [o.error_code for o in new_orders]  # nothing refused
        assert new_orders[0].params["side"] == "SELL" and Decimal(new_orders[0].params["quantity"]) == free
        assert Decimal(fake.spot_balances["BTC"]) == 0 and fake.spot_locked["BTC"] == locked  # the person's untouched
        skips = [e for e in journal(project) if e.event == "skipped" and e.reason == SKIP_LOCKED]
        assert len(skips) == 1 and skips[0].symbol == "BTC/USDT" and f"free {free}" in (skips[0].detail or "")
        alerts = [m.text or "" for m in telegram.wait_for_messages(messages_before + 1)[messages_before:]]
        assert sum("cannot fully exit BTC/USDT" in text for text in alerts) == 1, alerts
        book = positions(project)
        assert book.amounts_base["BTC/USDT"] == pytest.approx(float(locked))  # still owned, still valued
        assert book.equity_quote > float(fake.spot_balances["USDT"])  # the locked coins count in the equity

        sent_before = len(fake.orders)
        assert_ok(project.run("rebalance"))  # nothing free: nothing sent, nothing refused, the run succeeds
        assert fake.orders[sent_before:] == []


def test_a_drawdown_flatten_held_back_by_locked_coins_stays_incomplete_and_says_why(project: Project,
                                                                                   telegram: FakeTelegram) -> None:
    """BTC halves (drawdown halt): the flatten sells the free BTC only, the halt is not marked flattened (the next
    run retries), and the halt alert names the locked coin."""
    frame = price_frame([100.0] * 10 + [50.0] * 5)
    with FakeBinance(now_ms=FAKE_NOW_MS - 5 * MS_PER_HOUR, candles={("BTC/USDT", "1h"): frame},
                     spot_balances={"USDT": 1_000}) as fake:
        setup(project, telegram, fake=fake, risk={"max_asset_weight_frac": 1.0})
        write_targets(project, {"BTC/USDT": 0.6}, exchange="binance")
        assert_ok(project.run("rebalance"))
        bought = Decimal(fake.spot_balances["BTC"])
        locked = (bought / 2).quantize(Decimal("0.00001"))
        fake.spot_balances["BTC"] -= locked
        fake.spot_locked["BTC"] = locked
        sent_before = len(fake.orders)
        fake.set_now_ms(FAKE_NOW_MS)  # BTC halves: equity ~700 of the peak 1,000
        halted = project.run("rebalance")
        assert halted.returncode == 4 and "drawdown" in halted.stderr, halted.stderr[-2000:]
        assert [o.accepted for o in fake.orders[sent_before:]] == [True]  # the free part sold, nothing refused
        assert Decimal(fake.spot_balances["BTC"]) == 0 and fake.spot_locked["BTC"] == locked
        assert not HaltRecord.from_dict(read_json(project.state / "halt.json")).flattened
        assert "flatten INCOMPLETE" in halted.stderr and "cannot fully exit BTC/USDT" in halted.stderr
        texts = [m.text or "" for m in telegram.wait_for_messages(1)]
        assert any("cannot fully exit BTC/USDT" in text for text in texts), texts

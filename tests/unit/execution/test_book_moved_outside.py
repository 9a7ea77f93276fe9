"""lib.execution.book.moved_outside: a managed coin whose amount on the venue differs from what the last
positions.json and the bot's own fills since explain (net of commissions in the coin, or in a third managed coin
such as BNB) is named for the alert; amounts by hand."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from lib.core.venue import Holdings
from lib.execution.book import moved_outside
from lib.execution.journal import JournalEvent
from tests.unit.execution.test_rebalancing import NOW_MS, previous_positions

PRICES = {"BTC/USDT": 50_000.0, "ETH/USDT": 2_000.0, "BNB/USDT": 500.0}
MANAGED = frozenset(PRICES)
PREVIOUS = previous_positions(mode="testnet", venue="binance", paper=None, updated_ms=NOW_MS - 3_600_000,
                              amounts_base={"BTC/USDT": 0.01, "BNB/USDT": 1.0}, ignored_base={"ETH/USDT": 0.5})


def fill(symbol: str, side: str, amount: str, *, time_ms: int,
         fees: tuple[tuple[str, Decimal], ...] = ()) -> JournalEvent:
    return JournalEvent(event="filled", time_ms=time_ms, run_id="r", rebalance_id="x", mode="testnet", venue="binance",
                        symbol=symbol, client_order_id=f"cb-{symbol[:3]}-{time_ms}", requested_side=side,
                        requested_amount_base=Decimal(amount), filled_amount_base=Decimal(amount),
                        fees_paid=fees or None)


def test_nothing_moved_outside_when_the_bots_fills_explain_it() -> None:
    fills = [fill("BTC/USDT", "buy", "0.5", time_ms=PREVIOUS.updated_ms),  # the last run's: already in PREVIOUS
             fill("BTC/USDT", "buy", "0.002", time_ms=NOW_MS, fees=(("BTC", Decimal("0.000002")),)),  # a crashed run's
             fill("ETH/USDT", "sell", "0.1", time_ms=NOW_MS, fees=(("BNB", Decimal("0.0004")),))]
    now = Holdings(cash_quote=0.0, amounts_base={"BTC/USDT": 0.011998, "ETH/USDT": 0.4, "BNB/USDT": 0.9996})
    assert moved_outside(PREVIOUS, now, PRICES, fills, managed=MANAGED) == {}  # ETH: ignored before, managed now


@pytest.mark.parametrize(("amounts", "expected"), [
    ({"BTC/USDT": 0.008, "ETH/USDT": 0.5, "BNB/USDT": 1.0}, {"BTC/USDT": (0.01, 0.008)}),  # 100 quote gone
    ({"ETH/USDT": 0.5, "BNB/USDT": 1.0}, {"BTC/USDT": (0.01, 0.0)}),  # all of it
    ({"BTC/USDT": 0.01, "ETH/USDT": 0.5, "BNB/USDT": 1.00001}, {}),  # 0.005 quote: dust
])
def test_an_amount_no_fill_explains_is_named(amounts: dict[str, float], expected: dict) -> None:
    assert moved_outside(PREVIOUS, Holdings(cash_quote=0.0, amounts_base=amounts), PRICES, [],
                         managed=MANAGED) == expected


def test_a_first_run_has_nothing_to_compare() -> None:
    assert moved_outside(None, Holdings(cash_quote=0.0, amounts_base={"BTC/USDT": 1.0}), PRICES, [],
                         managed=MANAGED) == {}
    unmanaged = replace(PREVIOUS, amounts_base={"BTC/USDT": 0.01, "DOGE/USDT": 5.0}, ignored_base={})  # DOGE left
    assert moved_outside(unmanaged, Holdings(cash_quote=0.0, amounts_base={"BTC/USDT": 0.01}), PRICES, [],
                         managed=MANAGED) == {}

"""ccxt's precision code (decimal_to_precision) sets the calling thread's Decimal context: rounding ROUND_HALF_UP and
the Underflow trap. Our money arithmetic (collateral, transfer amounts and their idempotent ids) runs in that same
context, so every ccxt call goes through a copy of it (lib.execution.ccxt_client.isolated_decimal_context): a run
and its re-run after a crash compute the same amounts whether or not ccxt rounded something first. A real ccxt
Binance client with one hand-made market; no network."""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from decimal import Decimal

import ccxt
import pytest

from lib.execution.ccxt_client import call
from lib.execution.ccxt_venue import CcxtVenue

MARKET = {"id": "ETHUSDT", "symbol": "ETH/USDT", "base": "ETH", "quote": "USDT", "baseId": "ETH", "quoteId": "USDT",
          "type": "spot", "spot": True, "swap": False, "future": False, "option": False, "contract": False,
          "active": True, "taker": 0.001, "maker": 0.001,
          "precision": {"amount": 0.0001, "price": 0.01},
          "limits": {"amount": {"min": 0.0001, "max": 9000.0}, "cost": {"min": 5.0, "max": None},
                     "price": {"min": 0.01, "max": None}}}


@pytest.fixture
def client() -> Iterator[ccxt.binance]:
    exchange = ccxt.binance({"enableRateLimit": False})
    exchange.set_markets([MARKET])
    with decimal.localcontext(decimal.Context()):  # a fresh default context for this test, whatever ran before
        yield exchange


def context_state() -> tuple[str, bool]:
    context = decimal.getcontext()
    return context.rounding, bool(context.traps[decimal.Underflow])


def test_ccxt_alone_changes_the_threads_decimal_context(client: ccxt.binance) -> None:
    # the hazard this guards against: if ccxt stops doing this, the isolation below is no longer needed
    assert context_state() == (decimal.ROUND_HALF_EVEN, False)
    client.amount_to_precision("ETH/USDT", 0.12345)
    assert context_state() == (decimal.ROUND_HALF_UP, True)


def test_a_ccxt_call_through_the_client_wrapper_leaves_the_context_as_it_was(client: ccxt.binance) -> None:
    assert call(client, "amount_to_precision", lambda: client.amount_to_precision("ETH/USDT", 0.12345)) == "0.1234"
    assert context_state() == (decimal.ROUND_HALF_EVEN, False)
    # what it protects: a rounding that takes the context's mode gives what it gave before any ccxt call
    assert Decimal("2.5").quantize(Decimal(1)) == Decimal(2)  # half-even; ccxt's context would make it 3


def test_the_venues_lot_grid_check_leaves_the_context_as_it_was(client: ccxt.binance) -> None:
    venue = CcxtVenue(client, quote="USDT")
    venue._check_on_lot_grid("ETH/USDT", Decimal("0.1234"), "cb-test")  # on the grid: no error
    assert context_state() == (decimal.ROUND_HALF_EVEN, False)

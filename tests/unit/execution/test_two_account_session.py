"""RoutingBroker: perp symbols go to the futures account, everything else to spot; holdings are one book."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from lib.core.errors import OrderRejected
from lib.execution.paper import PaperBroker, PaperParams, PaperSnapshot
from lib.execution.two_account_session import RoutingBroker

PRICES = {"BTC/USDT": 20_000.0, "BTC/USDT:USDT": 20_000.0}
PARAMS = PaperParams(slippage_bps=0.0, fee_bps=10.0, max_leverage=3.0)


def accounts() -> tuple[PaperBroker, PaperBroker, RoutingBroker]:
    spot = PaperBroker(PaperSnapshot(cash_quote=D("700")), prices=PRICES, now_ms=1, params=PARAMS)
    futures = PaperBroker(PaperSnapshot(cash_quote=D("300")), prices=PRICES, now_ms=1, params=PARAMS)
    return spot, futures, RoutingBroker(spot, futures)


def test_each_leg_goes_to_its_account_and_the_holdings_are_one_book() -> None:
    spot, futures, broker = accounts()
    broker.create_market_order("BTC/USDT:USDT", "sell", D("0.015"), client_order_id="cb-perp")
    broker.create_market_order("BTC/USDT", "buy", D("0.015"), client_order_id="cb-spot")
    # each fill 300 notional, fee 0.3: spot 700 - 300 - 0.3 = 399.7; futures 300 - 0.3 = 299.7
    assert spot.fetch_holdings().cash_quote == pytest.approx(399.7)
    assert futures.fetch_holdings().cash_quote == pytest.approx(299.7)
    both = broker.fetch_holdings()
    assert both.amounts_base == {"BTC/USDT": 0.015, "BTC/USDT:USDT": -0.015}
    assert both.cash_quote == pytest.approx(699.4)
    assert broker.fetch_order_by_client_id("BTC/USDT:USDT", "cb-perp") is not None
    assert broker.fetch_order_by_client_id("BTC/USDT", "cb-perp") is None  # not in the spot account


def test_a_short_the_futures_wallet_cannot_margin_is_refused_there() -> None:
    _, _, broker = accounts()
    with pytest.raises(OrderRejected, match="over 3.0x"):  # 1200 short > 3 x ~300
        broker.create_market_order("BTC/USDT:USDT", "sell", D("0.06"), client_order_id="cb-big")

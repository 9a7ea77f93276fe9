"""lib.execution.ccxt_venue: an order reply with ``filled`` / ``average`` / ``cost`` left None (ccxt leaves what the
exchange did not say as None) is completed from the exchange's trade records of that order, never read as
"nothing filled" (which journaled a filled order as rejected, with no fee, and left the bot's cash ledger wrong).
Hand-computed expectations; the client is a stub of the few ccxt calls the venue makes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from lib.core.errors import DataError
from lib.execution.ccxt_markets import PRECISION_TICK_SIZE
from lib.execution.ccxt_venue import CcxtVenue

MARKET = {"symbol": "ETH/USDT", "base": "ETH", "quote": "USDT", "type": "spot", "spot": True, "active": True,
          "precision": {"amount": 0.0001, "price": 0.01}, "limits": {}, "taker": 0.001}
TRADES = [{"amount": 0.3, "price": 2000.0, "cost": 600.0, "fee": {"cost": 0.6, "currency": "USDT"}},
          {"amount": 0.2, "price": 2010.0, "cost": 402.0, "fee": {"cost": 0.0002, "currency": "ETH"}}]


class StubClient:
    """The ccxt calls CcxtVenue makes for one order, with a canned reply."""

    precisionMode = PRECISION_TICK_SIZE  # noqa: N815 - ccxt's attribute name

    def __init__(self, reply: dict[str, Any], trades: list[dict[str, Any]]) -> None:
        self.options: dict[str, Any] = {"defaultType": "spot"}
        self.has: dict[str, Any] = {}
        self.reply, self.trades, self.trade_requests = reply, trades, 0
        self.last_http_response: Any = None
        self.last_json_response: Any = None

    def load_markets(self) -> dict[str, Any]:
        return {"ETH/USDT": MARKET}

    def amount_to_precision(self, symbol: str, amount: float) -> str:
        return repr(amount)

    def create_order(self, *args: Any) -> dict[str, Any]:
        return dict(self.reply)

    def fetch_order(self, *args: Any) -> dict[str, Any]:
        return dict(self.reply)

    def fetch_my_trades(self, *args: Any) -> list[dict[str, Any]]:
        self.trade_requests += 1
        return self.trades


def reply(**fields: Any) -> dict[str, Any]:
    return {"id": "7", "symbol": "ETH/USDT", "side": "buy", "status": "closed", "amount": 0.5, "filled": 0.5,
            "average": 2004.0, "price": None, "cost": 1002.0, "timestamp": 1, "fee": None, "fees": [], **fields}


def place(client: StubClient) -> Any:
    return CcxtVenue(client).create_market_order("ETH/USDT", "buy", Decimal("0.5"), client_order_id="cb-1")


def test_a_closed_order_without_filled_takes_it_from_its_trades() -> None:
    result = place(StubClient(reply(filled=None, average=None, cost=None), TRADES))
    assert result.filled_amount_base == Decimal("0.5")  # 0.3 + 0.2; before: 0, journaled as rejected
    assert result.average_price == pytest.approx(2004.0)  # (600 + 402) / 0.5
    assert result.fee_quote == pytest.approx(0.6 + 0.0002 * 2010.0)
    assert dict(result.fees_paid) == {"ETH": Decimal("0.0002"), "USDT": Decimal("0.6")}


def test_a_fill_without_an_average_price_takes_it_from_its_cost_or_trades() -> None:
    from_cost = place(StubClient(reply(average=None, fee={"cost": 1.0, "currency": "USDT"}), TRADES))
    assert from_cost.average_price == pytest.approx(2004.0)  # cost 1002 / filled 0.5
    from_trades = place(StubClient(reply(average=None, cost=None), TRADES))
    assert from_trades.average_price == pytest.approx(2004.0)


def test_a_closed_order_without_filled_or_trades_is_not_read_as_nothing_filled() -> None:
    with pytest.raises(DataError, match="filled"):
        CcxtVenue(StubClient(reply(filled=None), [])).fetch_order_by_client_id("ETH/USDT", "cb-1")


def test_a_complete_reply_asks_for_no_trades() -> None:
    client = StubClient(reply(fee={"cost": 1.0, "currency": "USDT"}), TRADES)
    result = place(client)
    assert (result.filled_amount_base, result.average_price, result.fee_quote) == (Decimal("0.5"), 2004.0, 1.0)
    assert client.trade_requests == 0


def test_a_fee_in_the_coin_bought_is_converted_at_the_average_found_in_the_trades() -> None:
    result = place(StubClient(reply(average=None, cost=None, fee={"cost": 0.0005, "currency": "ETH"}), TRADES))
    assert result.fee_quote == pytest.approx(0.0005 * 2004.0)

"""lib.execution.ccxt_venue.CcxtVenue.fetch_holdings(unlisted=True): every coin the spot account holds is reported,
also one whose market the exchange stopped or delisted (it would otherwise vanish from the bot's book)."""

from __future__ import annotations

from typing import Any

from lib.execution.ccxt_venue import CcxtVenue
from tests.unit.execution.test_ccxt_order_result import MARKET, StubClient

BALANCE = {"USDT": {"free": 600.0, "total": 600.0}, "ETH": {"total": 0.5}, "SOL": {"total": 2.0},
           "total": {"USDT": 600.0, "ETH": 0.5, "SOL": 2.0, "ld.odd": 3.0, "DOGE": 0.0}}


class BalanceClient(StubClient):
    def __init__(self) -> None:
        super().__init__({}, [])

    def load_markets(self) -> dict[str, Any]:  # SOL/USDT is inactive (Binance status BREAK)
        return {"ETH/USDT": MARKET, "SOL/USDT": {**MARKET, "symbol": "SOL/USDT", "base": "SOL", "active": False}}

    def fetch_balance(self) -> dict[str, Any]:
        return BALANCE


def test_a_coin_without_a_live_market_is_still_held() -> None:
    venue = CcxtVenue(BalanceClient())
    assert venue.fetch_holdings().amounts_base == {"ETH/USDT": 0.5}  # what the other callers (carry) still get
    held = venue.fetch_holdings(unlisted=True)
    assert held.amounts_base == {"ETH/USDT": 0.5, "SOL/USDT": 2.0} and held.cash_quote == 600.0  # no odd code, no 0

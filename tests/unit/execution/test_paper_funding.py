"""lib/execution/paper_funding.py: paper perps pay and receive funding (issue 9, item 11), hand-computed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.errors import DataError
from lib.execution.paper import PaperSnapshot
from lib.execution.paper_funding import accrue_funding

D = Decimal
BOOK = PaperSnapshot(cash_quote=D("1000"), amounts_base={"BTC/USDT:USDT": D("0.5"), "ETH/USDT:USDT": D("-2"),
                                                        "SOL/USDT": D("3")},
                     entry_prices={"BTC/USDT:USDT": D("39000"), "ETH/USDT:USDT": D("2100")})
PRICES = {"BTC/USDT:USDT": 40_000.0, "ETH/USDT:USDT": 2_000.0, "SOL/USDT": 20.0}


def test_longs_pay_shorts_receive_every_settlement_since_the_last_run() -> None:
    rates = {"BTC/USDT:USDT": [(100, 0.5), (200, 0.0001), (300, -0.0002), (400, 0.5)],  # 100: settled before
             "ETH/USDT:USDT": [(200, 0.0003)], "SOL/USDT": [(200, 0.5)]}  # 400: after this run; spot: none
    settled, paid = accrue_funding(BOOK, rates=rates, prices=PRICES, since_ms=100, until_ms=300)
    # BTC long 0.5 x 40000 x (0.0001 - 0.0002) = -2; ETH short -2 x 2000 x 0.0003 = -1.2: the book receives 3.2
    assert paid == D("-3.2") and settled.cash_quote == D("1003.2")
    assert settled.amounts_base == BOOK.amounts_base and settled.entry_prices == BOOK.entry_prices


def test_no_settlement_no_change_and_a_missing_price_fails_closed() -> None:
    assert accrue_funding(BOOK, rates={}, prices=PRICES, since_ms=0, until_ms=10) == (BOOK, D(0))
    with pytest.raises(DataError, match="ETH/USDT:USDT"):
        accrue_funding(BOOK, rates={}, prices={"BTC/USDT:USDT": 1.0}, since_ms=0, until_ms=10)

"""lib.execution.ccxt_venue.fee_in_quote: every fee lands in the quote currency, hand-computed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.errors import DataError
from lib.execution.ccxt_venue import fee_in_quote, fees_by_currency


def bnb_price(currency: str) -> float | None:
    return {"BNB": 600.0}.get(currency)


@pytest.mark.parametrize(("fills", "expected"), [
    ([({"cost": 0.35, "currency": "USDT"}, 3500.0)], 0.35),                       # quote: as is
    ([({"cost": 0.0001, "currency": "ETH"}, 3500.0)], 0.35),                      # bought coin x fill price
    ([({"cost": 0.0005, "currency": "BNB"}, 3500.0)], 0.3),                       # BNB x BNB/USDT
    ([({"cost": 9000, "currency": "SHIB"}, 0.00001)], 0.09),                      # 9,000 SHIB is 0.09 USDT
    ([({"cost": 0.0001, "currency": "ETH"}, 3000.0), ({"cost": 0.0002, "currency": "ETH"}, 3100.0)], 0.92),
    ([({"cost": 0, "currency": "XYZ"}, None)], 0.0),                              # nothing to convert
    ([], 0.0),
])
def test_fee_in_quote(fills: list, expected: float) -> None:
    base = "SHIB" if fills and fills[0][0]["currency"] == "SHIB" else "ETH"
    assert fee_in_quote(fills, base=base, quote="USDT", price_of=bnb_price, what="t") == pytest.approx(expected)


@pytest.mark.parametrize("fills", [
    [({"cost": 0.1, "currency": "DOGE"}, 3500.0)],     # no DOGE price: never recorded as 0 or as USDT
    [({"cost": 0.0001, "currency": "ETH"}, None)],     # no fill price
    [({"cost": None, "currency": "ETH"}, 3500.0)],
    [({"cost": "nan", "currency": "USDT"}, 3500.0)],
    [({"cost": -1, "currency": "USDT"}, 3500.0)],
])
def test_unconvertible_fees_fail_closed(fills: list) -> None:
    with pytest.raises(DataError):
        fee_in_quote(fills, base="ETH", quote="USDT", price_of=bnb_price, what="t")


@pytest.mark.parametrize(("fees", "expected"), [
    ([{"cost": 0.0001, "currency": "ETH"}, {"cost": "0.0002", "currency": "ETH"}], (("ETH", Decimal("0.0003")),)),
    ([{"cost": 0.35, "currency": "USDT"}, {"cost": 0.0005, "currency": "BNB"}],
     (("BNB", Decimal("0.0005")), ("USDT", Decimal("0.35")))),  # one total per currency, nothing converted
    ([], ()),
])
def test_fees_by_currency(fees: list, expected: tuple) -> None:
    assert fees_by_currency(fees) == expected


@pytest.mark.parametrize("fee", [{"cost": 0.1}, {"cost": None, "currency": "ETH"}, {"cost": -1, "currency": "ETH"},
                                 {"cost": "nan", "currency": "ETH"}])
def test_fees_without_a_currency_or_cost_fail_closed(fee: dict) -> None:
    with pytest.raises(DataError):
        fees_by_currency([fee])

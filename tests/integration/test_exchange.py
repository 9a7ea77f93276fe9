"""lib.execution.ccxt_venue.CcxtVenue through the real ccxt HTTP path against the fake Binance server: domain errors,
retries, and order lookup by client id."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from lib.core.errors import DataError, ExchangeError, ExchangeUnavailable, OrderRejected
from lib.execution.ccxt_client import create_client
from lib.execution.ccxt_venue import CcxtVenue
from lib.ops.config import ExchangeSection, Secrets
from tests.fakes.exchange_server import FakeBinance

NOW_MS = 1_767_225_600_000
KEYS = Secrets(exchange_api_key="test-key", exchange_api_secret="test-secret")


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=NOW_MS) as server:
        yield server


def venue(fake: FakeBinance, *, exchange_id: str = "binance", market_type: str = "spot") -> CcxtVenue:
    section = ExchangeSection(id=exchange_id, market_type=market_type, mode="testnet",  # type: ignore[arg-type]
                              rest_base_url=fake.base_url, timeout_ms=1000, enable_rate_limit=False,
                              retry_base_delay_ms=10)
    return CcxtVenue(create_client(section, KEYS))


def test_markets_become_rules(fake: FakeBinance) -> None:
    rules = venue(fake).load_markets()["BTC/USDT"]
    assert rules.base == "BTC" and rules.quote == "USDT" and not rules.is_perpetual
    assert rules.amount_step > 0 and rules.min_notional_quote > 0
    perp = venue(fake, exchange_id="binanceusdm", market_type="swap").load_markets()["BTC/USDT:USDT"]
    assert perp.is_perpetual


def test_reads_are_retried_on_5xx_and_rate_limits(fake: FakeBinance) -> None:
    fake.fail_next("/api/v3/klines", status=500, times=1)
    fake.fail_next("/api/v3/klines", status=429, times=1, retry_after_s=1)
    rows = venue(fake).fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - 5 * 3_600_000, limit=10)
    assert len(rows) == 6
    assert fake.request_count("/api/v3/klines") == 3


def test_persistent_outage_is_exchange_unavailable(fake: FakeBinance) -> None:
    fake.fail_next("/api/v3/klines", status=503, times=None)
    with pytest.raises(ExchangeUnavailable, match="after 4 retries"):
        venue(fake).fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - 3_600_000, limit=10)
    assert fake.request_count("/api/v3/klines") == 5


def test_unknown_symbol_is_a_permanent_error(fake: FakeBinance) -> None:
    with pytest.raises(ExchangeError):
        venue(fake).fetch_ohlcv("NOPE/USDT", "1h", since_ms=NOW_MS - 3_600_000, limit=10)


def test_market_order_and_lookup_by_client_id(fake: FakeBinance) -> None:
    spot = venue(fake)
    result = spot.create_market_order("BTC/USDT", "buy", Decimal("0.01"), client_order_id="cb-test-1")
    assert result.status == "closed" and result.filled_amount_base == Decimal("0.01")
    assert result.average_price and result.average_price > 0
    found = spot.fetch_order_by_client_id("BTC/USDT", "cb-test-1")
    assert found is not None and found.exchange_order_id == result.exchange_order_id
    assert spot.fetch_order_by_client_id("BTC/USDT", "cb-never-sent") is None
    holdings = spot.fetch_holdings()
    assert holdings.amounts_base["BTC/USDT"] == pytest.approx(0.01)


@pytest.mark.parametrize(("exchange_id", "market_type", "symbol"),
                         [("binance", "spot", "BTC/USDT"), ("binanceusdm", "swap", "BTC/USDT:USDT")])
def test_duplicate_client_id_is_rejected_not_retried(fake: FakeBinance, exchange_id: str, market_type: str,
                                                     symbol: str) -> None:
    client = venue(fake, exchange_id=exchange_id, market_type=market_type)
    client.create_market_order(symbol, "buy", Decimal("0.01"), client_order_id="cb-dup")
    with pytest.raises(OrderRejected):
        client.create_market_order(symbol, "buy", Decimal("0.01"), client_order_id="cb-dup")
    assert sum(1 for order in fake.orders if order.client_order_id == "cb-dup" and order.accepted) == 1


def test_lost_order_response_is_ambiguous_and_then_found(fake: FakeBinance) -> None:
    spot = venue(fake)
    fake.lose_next_order_response(how="http_502")
    with pytest.raises(ExchangeUnavailable):
        spot.create_market_order("ETH/USDT", "buy", Decimal("0.1"), client_order_id="cb-lost-1")
    assert len([order for order in fake.orders if order.client_order_id == "cb-lost-1"]) == 1  # sent once only
    found = spot.fetch_order_by_client_id("ETH/USDT", "cb-lost-1")
    assert found is not None and found.filled_amount_base == Decimal("0.1")


def test_exchange_refusal_is_order_rejected(fake: FakeBinance) -> None:
    with pytest.raises(OrderRejected):
        venue(fake).create_market_order("BTC/USDT", "buy", Decimal("1000"), client_order_id="cb-too-big")


@pytest.mark.parametrize("how", ["invalid_json", "truncated"])
def test_unparseable_reply_is_retried_not_taken_for_no_data(fake: FakeBinance, how: str) -> None:
    fake.malform_next("/api/v3/klines", how=how, times=1)  # type: ignore[arg-type]
    rows = venue(fake).fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - 5 * 3_600_000, limit=10)
    assert len(rows) == 6
    assert fake.request_count("/api/v3/klines") == 2


def test_persistently_unparseable_replies_are_exchange_unavailable(fake: FakeBinance) -> None:
    fake.malform_next("/api/v3/klines", how="invalid_json", times=None)
    with pytest.raises(ExchangeUnavailable, match="unparseable"):
        venue(fake).fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - 3_600_000, limit=10)


def test_negative_spot_balance_is_refused(fake: FakeBinance) -> None:
    fake.spot_balances["ETH"] = Decimal("-1")
    with pytest.raises(DataError, match="negative spot balances"):
        venue(fake).fetch_holdings()

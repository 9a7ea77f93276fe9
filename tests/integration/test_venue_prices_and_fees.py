"""Issue 9 items 7 and 9 through real ccxt HTTP against FakeBinance: a price carries the exchange's own
ticker time (risk.max_price_age_ms can fire; no time fails closed), and fees are recorded in the quote
currency whatever currency the exchange charged them in, also for orders found by lookup and for perps.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.timeframes import MS_PER_HOUR
from lib.execution.ccxt_client import create_client
from lib.execution.ccxt_venue import CcxtVenue
from lib.ops.config import ExchangeSection, Secrets
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import FAKE_NOW_MS, SPOT, accepted_ids, assert_ok, journal, setup, write_targets

KEYS = Secrets(exchange_api_key="test-key", exchange_api_secret="test-secret")


def venue(fake: FakeBinance, *, market_type: str = "spot") -> CcxtVenue:
    section = ExchangeSection(id="binanceusdm" if market_type == "swap" else "binance",
                              market_type=market_type, mode="testnet",  # type: ignore[arg-type]
                              rest_base_url=fake.base_url, timeout_ms=2000, enable_rate_limit=False)
    return CcxtVenue(create_client(section, KEYS))


# --- item 7: the price's own time -------------------------------------------------------------------------
@pytest.mark.parametrize("market_type", ["spot", "swap"])
def test_price_quotes_carry_the_tickers_time(fake: FakeBinance, market_type: str) -> None:
    fake.ticker_time_lag_ms = 5 * 60_000
    symbol = "BTC/USDT:USDT" if market_type == "swap" else "BTC/USDT"
    quote = venue(fake, market_type=market_type).fetch_price_quotes([symbol])[symbol]
    assert quote.time_ms == FAKE_NOW_MS - 5 * 60_000 and quote.price == float(fake.last_price(symbol))
    fake.ticker_time_lag_ms = None
    assert venue(fake, market_type=market_type).fetch_price_quotes([symbol])[symbol].time_ms is None


@pytest.mark.parametrize("lag_ms", [3 * MS_PER_HOUR, None])  # older than risk.max_price_age_ms (2 h); no time
def test_a_stale_or_untimed_price_stops_the_rebalance(project: Project, telegram: FakeTelegram, fake: FakeBinance,
                                                      lag_ms: int | None) -> None:
    fake.set_now_ms(None)  # the wall clock: the run's clock and the exchange's agree
    setup(project, telegram, fake=fake)
    write_targets(project, SPOT, exchange="binance")
    fake.ticker_time_lag_ms = lag_ms
    refused = project.run("rebalance")
    assert refused.returncode != 0 and accepted_ids(fake) == []
    assert any(e.event == "risk_rejected" and "price" in e.detail for e in journal(project))
    fake.ticker_time_lag_ms = 60_000  # a minute old: fine
    assert_ok(project.run("rebalance"))
    assert len(accepted_ids(fake)) == 2


# --- item 9: fees in the quote currency -------------------------------------------------------------------
def fee_of(fake: FakeBinance, client_order_id: str) -> Decimal:
    """What the exchange charged, in the quote: its trade records (commission x price when in the base)."""
    order = next(o.order for o in fake.orders if o.client_order_id == client_order_id and o.accepted)
    assert order is not None
    market = "futures" if "avgPrice" in order else "spot"
    total = Decimal(0)
    for trade in fake._trades[market]:
        if trade["orderId"] == order["orderId"]:
            commission, price = Decimal(trade["commission"]), Decimal(trade["price"])
            total += commission if trade["commissionAsset"] == "USDT" else commission * price
    return total


@pytest.mark.parametrize("fee_asset", ["quote", "received"])
def test_spot_fee_in_the_coin_bought_is_converted_to_the_quote(fake: FakeBinance, fee_asset: str) -> None:
    fake.spot_fee_asset = fee_asset
    spot = venue(fake)
    bought = spot.create_market_order("ETH/USDT", "buy", Decimal("0.1"), client_order_id="cb-fee-buy")
    sold = spot.create_market_order("ETH/USDT", "sell", Decimal("0.05"), client_order_id="cb-fee-sell")
    price = fake.last_price("ETH/USDT")
    assert bought.fee_quote == pytest.approx(float(Decimal("0.1") * price * Decimal("0.001")), rel=1e-9)
    assert bought.fee_quote == pytest.approx(float(fee_of(fake, "cb-fee-buy")), rel=1e-9)
    assert sold.fee_quote == pytest.approx(float(fee_of(fake, "cb-fee-sell")), rel=1e-9)


@pytest.mark.parametrize("fee_asset", ["quote", "received"])
def test_an_order_found_by_lookup_takes_its_fee_from_the_trades(fake: FakeBinance, fee_asset: str) -> None:
    fake.spot_fee_asset = fee_asset
    spot = venue(fake)
    fake.lose_next_order_response(how="http_502")
    with pytest.raises(Exception):  # noqa: B017,PT011 - the reply is lost: ExchangeUnavailable
        spot.create_market_order("ETH/USDT", "buy", Decimal("0.1"), client_order_id="cb-lost-fee")
    found = spot.fetch_order_by_client_id("ETH/USDT", "cb-lost-fee")
    assert found is not None and found.filled_amount_base == Decimal("0.1")
    assert found.fee_quote > 0 and found.fee_quote == pytest.approx(float(fee_of(fake, "cb-lost-fee")), rel=1e-9)


def test_perp_fees_are_recorded(fake: FakeBinance) -> None:
    perps = venue(fake, market_type="swap")
    result = perps.create_market_order("BTC/USDT:USDT", "buy", Decimal("0.01"), client_order_id="cb-perp-fee")
    found = perps.fetch_order_by_client_id("BTC/USDT:USDT", "cb-perp-fee")
    expected = float(fee_of(fake, "cb-perp-fee"))
    assert expected > 0 and found is not None and found.fee_quote == pytest.approx(expected, rel=1e-9)
    assert result.status == "open" or result.fee_quote == pytest.approx(expected, rel=1e-9)


def test_rebalance_journals_the_true_fees(project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    fake.spot_fee_asset = "received"
    setup(project, telegram, fake=fake)
    write_targets(project, SPOT, exchange="binance")
    fake.lose_next_order_response(how="http_502")  # the first order is resolved by lookup
    assert_ok(project.run("rebalance"))
    filled = [e for e in journal(project) if e.event == "filled"]
    assert len(filled) == 2
    for event in filled:
        assert event.fee_quote == pytest.approx(float(fee_of(fake, str(event.client_order_id))), rel=1e-9)

"""Issue 9 item 11 (venue part): lot sizes follow the exchange's own ccxt precision mode and ccxt's
``amount_to_precision`` (an amount off the lot grid is never sent altered), and a hedge-mode futures account is
refused with a message that says what to do. Real ccxt; FakeBinance on loopback where a request is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import ccxt
import pytest

from lib.core.errors import ConfigError, OrderRejected
from lib.execution.ccxt_client import create_client
from lib.execution.ccxt_venue import CcxtVenue
from lib.ops.config import ExchangeSection, Secrets
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import FAKE_NOW_MS, accepted_ids, setup, write_targets

KEYS = Secrets(exchange_api_key="test-key", exchange_api_secret="test-secret")


def decimal_places_market() -> dict:
    """A spot market as ccxt describes it on a DECIMAL_PLACES exchange: precision 3 means a 0.001 lot."""
    return {"id": "ABCUSDT", "symbol": "ABC/USDT", "base": "ABC", "quote": "USDT", "baseId": "ABC",
            "quoteId": "USDT", "type": "spot", "spot": True, "swap": False, "active": True, "taker": 0.001,
            "maker": 0.001, "precision": {"amount": 3, "price": 2},
            "limits": {"amount": {"min": 0.001, "max": 1000}, "cost": {"min": 5}, "price": {}}}


def test_lot_sizes_follow_the_exchanges_precision_mode() -> None:
    client = ccxt.binance()
    client.precisionMode = ccxt.DECIMAL_PLACES
    client.set_markets([decimal_places_market()])  # loaded: no request is made
    rules = CcxtVenue(client).load_markets()["ABC/USDT"]
    assert rules.amount_step == Decimal("0.001") and rules.price_step == Decimal("0.01")
    assert client.amount_to_precision("ABC/USDT", 1.23456) == "1.234"  # ccxt agrees with the parsed step


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 100_000}, futures_wallet_quote=1000) as server:
        yield server


def venue(fake: FakeBinance, *, market_type: str = "spot") -> CcxtVenue:
    section = ExchangeSection(id="binanceusdm" if market_type == "swap" else "binance",
                              market_type=market_type, mode="testnet",  # type: ignore[arg-type]
                              rest_base_url=fake.base_url, timeout_ms=2000, enable_rate_limit=False)
    return CcxtVenue(create_client(section, KEYS))


def test_an_amount_off_the_lot_grid_is_refused_not_altered(fake: FakeBinance) -> None:
    spot = venue(fake)
    step = spot.load_markets()["ETH/USDT"].amount_step
    with pytest.raises(OrderRejected, match="lot grid"):
        spot.create_market_order("ETH/USDT", "buy", Decimal("0.1") + step / 2, client_order_id="cb-off-grid")
    assert fake.request_count("/api/v3/order", method="POST") == 0  # ccxt would have sent 0.1
    spot.create_market_order("ETH/USDT", "buy", Decimal("0.1") + step, client_order_id="cb-on-grid")
    assert len(accepted_ids(fake)) == 1


def test_a_hedge_mode_account_is_detected(fake: FakeBinance) -> None:
    perps = venue(fake, market_type="swap")
    perps.check_one_way_mode()
    fake.dual_side_position = True
    with pytest.raises(ConfigError, match="hedge mode.*one-way mode"):
        perps.check_one_way_mode()


def test_rebalance_refuses_a_hedge_mode_account(project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    fake.dual_side_position = True
    setup(project, telegram, fake=fake, exchange_id="binanceusdm", market_type="swap")
    write_targets(project, {"BTC/USDT:USDT": 0.3, "ETH/USDT:USDT": -0.3}, exchange="binanceusdm", market_type="swap")
    refused = project.run("rebalance")
    assert refused.returncode == 2 and "hedge mode" in refused.stderr
    assert accepted_ids(fake) == [] and fake.request_count("/fapi/v1/order", method="POST") == 0

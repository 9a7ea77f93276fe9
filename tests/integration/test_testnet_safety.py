"""Issue 9 item 1: testnet is a testnet. ccxt sandbox mode, no production host in testnet, and the key gate
(a key that can withdraw never trades, testnet included; live fails closed when the permissions are unknown).
Client construction in process (no request is made); rebalance as a subprocess through real ccxt against
FakeBinance on loopback.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import ccxt
import pytest

from lib.core.errors import ConfigError
from lib.execution.ccxt_client import create_client
from lib.execution.exchange_section import ExchangeSection
from lib.execution.venue_session import require_safe_key
from lib.ops.config import Secrets
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import SPOT, accepted_ids, assert_ok, setup, write_targets

KEYS = Secrets(exchange_api_key="k", exchange_api_secret="s")
PRODUCTION_HOSTS = {"api.binance.com", "fapi.binance.com", "dapi.binance.com", "eapi.binance.com",
                    "papi.binance.com", "api1.binance.com", "api2.binance.com", "api3.binance.com"}


def hosts(urls: Any) -> set[str]:
    if isinstance(urls, dict):
        return set().union(*(hosts(value) for value in urls.values()))
    return {urlsplit(urls).hostname or ""} if isinstance(urls, str) else set()


@pytest.mark.parametrize(("exchange_id", "market_type", "sandbox_host"),
                         [("binance", "spot", "testnet.binance.vision"),
                          ("binanceusdm", "swap", "testnet.binancefuture.com")])
def test_testnet_is_ccxt_sandbox_mode(exchange_id: str, market_type: str, sandbox_host: str) -> None:
    section = ExchangeSection(id=exchange_id, market_type=market_type, mode="testnet")  # type: ignore[arg-type]
    client = create_client(section, KEYS)
    assert client.isSandboxModeEnabled
    used = hosts(client.urls["api"])
    assert sandbox_host in used and not used & PRODUCTION_HOSTS
    live = create_client(ExchangeSection(id=exchange_id, market_type=market_type, mode="live"),  # type: ignore[arg-type]
                         KEYS)
    assert hosts(live.urls["api"]) & PRODUCTION_HOSTS  # the same config in live goes to production


@pytest.mark.parametrize("url", ["https://api.binance.com", "https://api1.binance.com", "http://10.0.0.5:8080",
                                 "https://binance-proxy.example.com"])
def test_testnet_refuses_a_rest_base_url_that_is_not_a_sandbox(url: str) -> None:
    with pytest.raises(ConfigError, match="not a sandbox host"):
        create_client(ExchangeSection(id="binance", mode="testnet", rest_base_url=url), KEYS)


def test_testnet_accepts_the_exchanges_own_sandbox_host_and_loopback() -> None:
    sandbox = create_client(ExchangeSection(id="binance", mode="testnet",
                                            rest_base_url="https://testnet.binance.vision"), KEYS)
    assert hosts(sandbox.urls["api"]) == {"testnet.binance.vision"}
    local = create_client(ExchangeSection(id="binance", mode="testnet", rest_base_url="http://127.0.0.1:9"), KEYS)
    assert hosts(local.urls["api"]) == {"127.0.0.1"} and "sapi" in local.urls["api"]  # the fake serves sapi


def test_testnet_refuses_an_exchange_without_a_sandbox() -> None:
    assert not ccxt.kraken().urls.get("test")
    with pytest.raises(ConfigError, match="has no sandbox"):
        create_client(ExchangeSection(id="kraken", mode="testnet"), KEYS)
    local = create_client(ExchangeSection(id="kraken", mode="testnet", rest_base_url="http://127.0.0.1:9"), KEYS)
    assert hosts(local.urls["api"]) == {"127.0.0.1"}


def test_live_fails_closed_when_the_exchange_cannot_report_key_permissions() -> None:
    client = create_client(ExchangeSection(id="kraken", mode="live"), KEYS)  # ccxt cannot ask kraken
    with pytest.raises(ConfigError, match="unsafe API key.*does not report key permissions"):
        require_safe_key(client, mode="live")
    require_safe_key(client, mode="testnet")  # sandbox: a warning only
    sandbox = create_client(ExchangeSection(id="binance", mode="testnet"), KEYS)  # testnet serves no /sapi
    require_safe_key(sandbox, mode="testnet")  # no request is made: unknown, not a crash


# --- rebalance in testnet against the fake on loopback -----------------------------------------------------


def test_testnet_refuses_a_key_that_can_withdraw(project: Project, telegram: FakeTelegram,
                                                 fake: FakeBinance) -> None:
    fake.api_restrictions["enableWithdrawals"] = True
    setup(project, telegram, fake=fake, mode="testnet")
    write_targets(project, SPOT, exchange="binance")
    refused = project.run("rebalance")
    assert refused.returncode == 2 and "CAN withdraw" in refused.stderr
    assert accepted_ids(fake) == []
    fake.api_restrictions["enableWithdrawals"] = False
    assert_ok(project.run("rebalance"))
    assert len(accepted_ids(fake)) == 2

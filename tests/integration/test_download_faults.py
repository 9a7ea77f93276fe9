"""Issue 9 item 12, read faults through real ccxt HTTP against FakeBinance: an empty 200 body is a transient
error (never "no more data"), Retry-After beyond the backoff cap is honoured and a ban stops the run's
requests, an outage does not make every series burn every attempt, one garbled exchangeInfo is retried, and
rebalance survives an empty reply to its price read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lib.core.errors import ExchangeUnavailable
from lib.core.timeframes import MS_PER_HOUR
from lib.data import fetcher
from lib.execution.ccxt_client import create_client
from lib.execution.ccxt_venue import CcxtVenue
from lib.ops.config import ExchangeSection, Secrets
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_fetch_prices import config_text as fetch_config
from tests.integration.test_fetch_prices import stored
from tests.integration.test_rebalance import FAKE_NOW_MS, SPOT, accepted_ids, assert_ok, setup, write_targets

KEYS = Secrets(exchange_api_key="test-key", exchange_api_secret="test-secret")
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "XRP/USDT"]


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=NOW_MS) as server:
        yield server


def venue(fake: FakeBinance, *, market_type: str = "spot") -> CcxtVenue:
    section = ExchangeSection(id="binanceusdm" if market_type == "swap" else "binance",
                              market_type=market_type, mode="testnet",  # type: ignore[arg-type]
                              rest_base_url=fake.base_url, timeout_ms=2000, enable_rate_limit=False,
                              retry_base_delay_ms=10)
    return CcxtVenue(create_client(section, KEYS))


# --- an empty 200 body ----------------------------------------------------------------------------------
def test_an_empty_klines_body_is_retried_not_taken_for_no_data(fake: FakeBinance) -> None:
    spot = venue(fake)
    spot.load_markets()
    fake.malform_next("/api/v3/klines", how="empty", times=1)
    rows = spot.fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - 5 * MS_PER_HOUR, limit=10)
    assert len(rows) == 6 and fake.request_count("/api/v3/klines") == 2


def test_persistently_empty_klines_are_exchange_unavailable(fake: FakeBinance) -> None:
    spot = venue(fake)
    spot.load_markets()
    fake.malform_next("/api/v3/klines", how="empty", times=None)
    with pytest.raises(ExchangeUnavailable, match="empty reply"):
        spot.fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - 5 * MS_PER_HOUR, limit=10)


def test_an_empty_page_mid_download_does_not_truncate_the_series(fake: FakeBinance) -> None:
    spot = venue(fake)
    spot.load_markets()
    start_ms = NOW_MS - 48 * MS_PER_HOUR
    fake.malform_next("/api/v3/klines", how="empty", times=1, match={"startTime": str(start_ms + 24 * MS_PER_HOUR)})
    update = fetcher.fetch_candle_update(spot, "BTC/USDT", "1h", stored=None, stored_gaps=None,
                                         backfill_start_ms=start_ms, now_ms=NOW_MS + 60_000, limit=24,
                                         max_jump_frac=0.5)
    assert len(update.candles) == 48 and update.new_gaps == []


def test_an_empty_funding_body_is_retried(fake: FakeBinance) -> None:
    perps = venue(fake, market_type="swap")
    perps.load_markets()
    fake.malform_next("/fapi/v1/fundingRate", how="empty", times=1)
    rates = perps.fetch_funding_history("BTC/USDT:USDT", since_ms=NOW_MS - 48 * MS_PER_HOUR, limit=100)
    assert len(rates) == 7 and fake.request_count("/fapi/v1/fundingRate") == 2  # 8-hourly, both ends


# --- Retry-After, bans, outages ---------------------------------------------------------------------------
def test_a_retry_after_beyond_the_bound_stops_the_runs_requests(fake: FakeBinance) -> None:
    spot = venue(fake)
    spot.load_markets()
    fake.fail_next("/api/v3/klines", status=429, retry_after_s=3600, times=1)
    with pytest.raises(ExchangeUnavailable, match="no requests for 3600 s"):
        spot.fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - MS_PER_HOUR, limit=10)
    with pytest.raises(ExchangeUnavailable, match="not sent"):
        spot.fetch_ohlcv("ETH/USDT", "1h", since_ms=NOW_MS - MS_PER_HOUR, limit=10)
    assert fake.request_count("/api/v3/klines") == 1  # no request while the exchange asked for none


def test_a_418_ban_without_retry_after_stops_the_runs_requests(fake: FakeBinance) -> None:
    spot = venue(fake)
    spot.load_markets()
    fake.fail_next("/api/v3/klines", status=418, times=1)
    for symbol in SYMBOLS:
        with pytest.raises(ExchangeUnavailable):
            spot.fetch_ohlcv(symbol, "1h", since_ms=NOW_MS - MS_PER_HOUR, limit=10)
    assert fake.request_count("/api/v3/klines") == 1  # every further request would extend the ban


def test_a_short_418_ban_is_waited_out_then_retried(fake: FakeBinance) -> None:
    spot = venue(fake)
    spot.load_markets()
    fake.fail_next("/api/v3/klines", status=418, retry_after_s=2, times=1)
    started = time.monotonic()
    assert len(spot.fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - MS_PER_HOUR, limit=10)) == 2
    assert time.monotonic() - started >= 2.0 and fake.request_count("/api/v3/klines") == 2


def test_an_outage_costs_a_few_requests_not_attempts_times_series(fake: FakeBinance) -> None:
    spot = venue(fake)
    spot.load_markets()
    fake.fail_next("/api/v3/klines", status=503, times=None)
    for symbol in SYMBOLS:
        with pytest.raises(ExchangeUnavailable):
            spot.fetch_ohlcv(symbol, "1h", since_ms=NOW_MS - MS_PER_HOUR, limit=10)
    assert fake.request_count("/api/v3/klines") == 5 + 5 + 1 + 1 + 1  # two series retried, then one probe each
    fake.clear_faults()
    assert len(spot.fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - MS_PER_HOUR, limit=10)) == 2  # recovered
    fake.fail_next("/api/v3/klines", status=500, times=1)
    assert len(spot.fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - MS_PER_HOUR, limit=10)) == 2  # closed again


@pytest.mark.parametrize("how", ["invalid_json", "truncated", "empty"])
def test_one_garbled_exchange_info_is_retried_not_bad_symbol(fake: FakeBinance, how: str) -> None:
    fake.malform_next("/api/v3/exchangeInfo", how=how, times=1)  # type: ignore[arg-type]
    rows = venue(fake).fetch_ohlcv("BTC/USDT", "1h", since_ms=NOW_MS - MS_PER_HOUR, limit=10)
    assert len(rows) == 2 and fake.request_count("/api/v3/exchangeInfo") == 2


# --- rebalance's price read --------------------------------------------------------------------------------


def test_rebalance_retries_an_empty_reply_to_its_price_read(project: Project, telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1000}) as fake:
        setup(project, telegram, fake=fake)
        write_targets(project, SPOT, exchange="binance")
        fake.malform_next("/api/v3/ticker/24hr", how="empty", times=1)
        assert_ok(project.run("rebalance"))
        assert len(accepted_ids(fake)) == 2 and fake.request_count("/api/v3/ticker/24hr") >= 2


# --- the local clock against the exchange's ---------------------------------------------------------------
def test_a_local_clock_ahead_of_the_exchange_never_stores_the_forming_candle(project: Project) -> None:
    exchange_ms = NOW_MS + 30 * 60_000  # the exchange: 00:30, its 00:00 hourly candle is forming
    with FakeBinance(now_ms=exchange_ms) as server:
        project.write_config(fetch_config(server.base_url, symbols=("BTC/USDT",), timeframes='["1h", "1d"]'))
        result = project.run("fetch_prices", "--as-of", str(exchange_ms + 50 * 60_000))  # our clock: 01:20
        assert result.returncode == 0, result.stderr[-2000:]
        assert "ahead of the exchange" in result.stderr
    candles = stored(project, "BTC/USDT", "1h")
    assert int(candles["timestamp"].iloc[-1]) == NOW_MS - MS_PER_HOUR  # 23:00: the forming 00:00 is not stored

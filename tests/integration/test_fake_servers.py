"""The fakes against the REAL clients: ccxt 4.5.90 (binance, binanceusdm) and requests (Telegram).

These tests pin down what production code will see through ccxt when the fake misbehaves on purpose,
including ccxt's surprises (malformed bodies come back as data, -2015 after a success is DDoSProtection).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Literal

import ccxt
import numpy as np
import pandas as pd
import pytest
import requests

from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.execution.simulated import SimulatedParams
from tests.fakes.exchange_server import BAD_CANDLE_KINDS, FakeBinance, point_ccxt_at
from tests.fakes.telegram_server import FakeTelegram

NOW_MS = 1_704_067_200_000 + 13 * MS_PER_HOUR + 1_234_567  # 2024-01-01 13:20:34.567 UTC
PARAMS = SimulatedParams(genesis_ms=1_672_531_200_000)  # 2023-01-01: a short history keeps tests fast
SPOT_OPTIONS = {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "fetchCurrencies": False}
USDM_OPTIONS = {"fetchMargins": False, "fetchCurrencies": False}
KLINES = "/api/v3/klines"


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=NOW_MS, params=PARAMS) as server:
        yield server


def make_client(fake: FakeBinance, *, futures: bool = False, api_key: str = "test-key",
                map_errors_by_path: bool = True) -> ccxt.Exchange:
    exchange_class = ccxt.binanceusdm if futures else ccxt.binance
    options = dict(USDM_OPTIONS if futures else SPOT_OPTIONS)
    client = exchange_class({"enableRateLimit": False, "timeout": 1000, "apiKey": api_key,
                             "secret": "test-secret", "options": options})
    return point_ccxt_at(client, fake.base_url, map_errors_by_path=map_errors_by_path)


@pytest.fixture
def spot(fake: FakeBinance) -> ccxt.Exchange:
    client = make_client(fake)
    client.load_markets()
    return client


@pytest.fixture
def usdm(fake: FakeBinance) -> ccxt.Exchange:
    client = make_client(fake, futures=True)
    client.load_markets()
    return client


# -- markets and data ----------------------------------------------------------------------------------
@pytest.mark.parametrize("futures, path", [(False, "/api/v3/exchangeInfo"), (True, "/fapi/v1/exchangeInfo")])
def test_load_markets_calls_exchange_info_only(fake: FakeBinance, futures: bool, path: str) -> None:
    markets = make_client(fake, futures=futures).load_markets()
    assert [request.path for request in fake.requests()] == [path]
    symbol = "BTC/USDT:USDT" if futures else "BTC/USDT"
    rules = fake.market().market_rules(symbol)
    market = markets[symbol]
    assert len(markets) == len(fake.listed_symbols()) and market["active"] and market["swap"] == futures
    assert market["precision"]["amount"] == float(rules.amount_step)
    assert market["precision"]["price"] == float(rules.price_step)
    assert market["limits"]["cost"]["min"] == float(rules.min_notional_quote)


def test_markets_are_point_in_time() -> None:
    before_sol_ms = 1_597_125_600_000 - MS_PER_DAY  # SOL lists 2020-08-11 06:00
    with FakeBinance(now_ms=before_sol_ms) as early:
        client = make_client(early)
        assert "SOL/USDT" not in client.load_markets() and "BTC/USDT" in client.markets
        with pytest.raises(ccxt.BadSymbol):
            client.publicGetKlines({"symbol": "SOLUSDT", "interval": "1h"})


def test_fetch_ohlcv_pages_with_since_and_limit(fake: FakeBinance, spot: ccxt.Exchange) -> None:
    since_ms, pages, rows = NOW_MS - 1000 * MS_PER_HOUR, 0, []
    while True:
        page = spot.fetch_ohlcv("ETH/USDT", "1h", since=since_ms, limit=300)
        pages += 1
        if not page:
            break
        rows += page
        since_ms = page[-1][0] + MS_PER_HOUR
    expected = fake.market().candles("ETH/USDT", "1h", NOW_MS - 1000 * MS_PER_HOUR, NOW_MS + 1)
    np.testing.assert_array_equal(np.array(rows), expected)  # exact: the wire format round-trips floats
    assert rows[-1][0] <= NOW_MS < rows[-1][0] + MS_PER_HOUR  # the forming candle is served
    assert fake.request_count(KLINES, symbol="ETHUSDT", interval="1h") == pages == 5


def test_no_op_rerun_costs_one_request_per_series(fake: FakeBinance, spot: ccxt.Exchange) -> None:
    last_closed_ms = NOW_MS // MS_PER_HOUR * MS_PER_HOUR - MS_PER_HOUR
    page = spot.fetch_ohlcv("BTC/USDT", "1h", since=last_closed_ms + MS_PER_HOUR, limit=1000)
    assert [row[0] for row in page] == [last_closed_ms + MS_PER_HOUR]  # only the forming candle
    assert fake.request_count(KLINES) == 1


def test_raw_klines_follow_binance_rules(fake: FakeBinance, spot: ccxt.Exchange, usdm: ccxt.Exchange) -> None:
    latest = spot.publicGetKlines({"symbol": "BTCUSDT", "interval": "1h"})
    assert len(latest) == 500 and latest[-1][0] <= NOW_MS < latest[-1][0] + MS_PER_HOUR  # default limit
    assert len(latest[0]) == 12 and latest[0][6] == latest[0][0] + MS_PER_HOUR - 1
    end_ms = NOW_MS - 10 * MS_PER_HOUR
    before_end = spot.publicGetKlines({"symbol": "BTCUSDT", "interval": "4h", "endTime": end_ms, "limit": 3})
    last_open_ms = end_ms // (4 * MS_PER_HOUR) * 4 * MS_PER_HOUR
    assert [row[0] for row in before_end] == [last_open_ms - k * 4 * MS_PER_HOUR for k in (2, 1, 0)]
    future = {"symbol": "BTCUSDT", "interval": "1h", "startTime": NOW_MS + MS_PER_HOUR}
    assert spot.publicGetKlines(future) == []
    assert len(usdm.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1h", "limit": 1500})) == 1500
    with pytest.raises(ccxt.BadRequest, match="-1130"):
        spot.publicGetKlines({"symbol": "BTCUSDT", "interval": "1h", "limit": 1001})
    with pytest.raises(ccxt.BadRequest, match="-1120"):
        spot.publicGetKlines({"symbol": "BTCUSDT", "interval": "7h"})


def test_funding_rate_history(fake: FakeBinance, usdm: ccxt.Exchange) -> None:
    since_ms = NOW_MS - 5 * MS_PER_DAY
    history = usdm.fetch_funding_rate_history("BTC/USDT:USDT", since=since_ms, limit=7)
    expected = fake.market().funding_rates("BTC/USDT:USDT", since_ms, NOW_MS + 1)[:7]
    assert [(entry["timestamp"], entry["fundingRate"]) for entry in history] == [
        (int(time_ms), float(rate)) for time_ms, rate in expected]
    assert all(entry["timestamp"] % (8 * MS_PER_HOUR) == 0 for entry in history)
    assert usdm.fetch_funding_rate("BTC/USDT:USDT")["fundingRate"] == float(
        fake.market().funding_rates("BTC/USDT:USDT", 0, NOW_MS + 1)[-1, 1])


def test_tickers_are_last_prices(fake: FakeBinance, spot: ccxt.Exchange) -> None:
    tickers = spot.fetch_tickers(["BTC/USDT", "SOL/USDT"])
    assert {symbol: ticker["last"] for symbol, ticker in tickers.items()} == {
        symbol: fake.market().price_at(symbol) for symbol in ("BTC/USDT", "SOL/USDT")}
    assert spot.fetch_time() == NOW_MS


# -- accounts and orders -------------------------------------------------------------------------------
def test_spot_market_order_lifecycle(fake: FakeBinance, spot: ccxt.Exchange) -> None:
    assert spot.fetch_balance()["USDT"]["free"] == 10_000.0
    order = spot.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "cb-20240101-btc-1"})
    price = fake.market().price_at("BTC/USDT")
    assert (order["status"], order["clientOrderId"], order["filled"], order["average"]) == (
        "closed", "cb-20240101-btc-1", 0.01, price)
    assert order["fee"] == {"currency": "USDT", "cost": pytest.approx(0.01 * price * 0.001)}
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        spot.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "cb-20240101-btc-1"})
    found = spot.fetch_order(None, "BTC/USDT", {"origClientOrderId": "cb-20240101-btc-1"})
    assert (found["id"], found["status"], found["filled"]) == (order["id"], "closed", 0.01)
    with pytest.raises(ccxt.OrderNotFound):
        spot.fetch_order(None, "BTC/USDT", {"origClientOrderId": "never-sent"})
    balance = spot.fetch_balance()
    assert balance["BTC"]["total"] == 0.01
    assert balance["USDT"]["free"] == pytest.approx(10_000 - 0.01 * price * 1.001)
    assert [(o.client_order_id, o.accepted, o.error_code) for o in fake.orders] == [
        ("cb-20240101-btc-1", True, None), ("cb-20240101-btc-1", False, -2010)]
    assert fake.orders[0].params["newClientOrderId"] == "cb-20240101-btc-1"


def test_spot_order_rejections(fake: FakeBinance, spot: ccxt.Exchange) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        spot.create_order("BTC/USDT", "market", "buy", 1.0, None, {"clientOrderId": "too-big"})
    with pytest.raises(ccxt.InsufficientFunds):
        spot.create_order("ETH/USDT", "market", "sell", 0.1, None, {"clientOrderId": "no-eth"})
    with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):  # not InvalidOrder: ccxt maps -1013 to BadRequest
        spot.create_order("BTC/USDT", "market", "buy", 0.00001, None, {"clientOrderId": "dust"})
    assert [o.accepted for o in fake.orders] == [False, False, False]


def test_reused_client_id_is_accepted_when_not_strict() -> None:
    with FakeBinance(now_ms=NOW_MS, params=PARAMS, strict_client_ids=False) as lenient:
        client = make_client(lenient)
        first, second = (client.create_order("ETH/USDT", "market", "buy", 0.01, None,
                                             {"clientOrderId": "same"}) for _ in range(2))
        assert first["id"] != second["id"]


def test_futures_orders_positions_and_settings(fake: FakeBinance, usdm: ccxt.Exchange) -> None:
    assert usdm.set_leverage(3, "BTC/USDT:USDT")["leverage"] == 3
    assert usdm.set_margin_mode("isolated", "BTC/USDT:USDT")["code"] == 200
    order = usdm.create_order("BTC/USDT:USDT", "market", "sell", 0.02, None, {"clientOrderId": "perp-1"})
    assert (order["status"], order["filled"], order["reduceOnly"]) == ("closed", 0.02, False)
    [position] = usdm.fetch_positions()
    price = fake.market().price_at("BTC/USDT")
    assert (position["symbol"], position["side"], position["contracts"], position["entryPrice"]) == (
        "BTC/USDT:USDT", "short", 0.02, price)
    with pytest.raises(ccxt.InvalidOrder, match="-2022"):  # it would flip the position
        usdm.create_order("BTC/USDT:USDT", "market", "buy", 0.03, None,
                          {"clientOrderId": "r1", "reduceOnly": True})
    usdm.create_order("BTC/USDT:USDT", "market", "buy", 0.02, None,
                      {"clientOrderId": "r2", "reduceOnly": True})
    assert usdm.fetch_positions() == []
    assert usdm.fetch_balance()["USDT"]["total"] == pytest.approx(10_000 - 2 * 0.02 * price * 0.0005)
    assert usdm.fetch_order(None, "BTC/USDT:USDT", {"origClientOrderId": "perp-1"})["status"] == "closed"
    with pytest.raises(ccxt.InvalidOrder, match="-4116"):
        usdm.create_order("BTC/USDT:USDT", "market", "sell", 0.02, None, {"clientOrderId": "perp-1"})
    with pytest.raises(ccxt.InsufficientFunds, match="-2019"):
        usdm.create_order("BTC/USDT:USDT", "market", "buy", 1.0, None, {"clientOrderId": "huge"})
    with pytest.raises(ccxt.MarginModeAlreadySet):
        usdm.set_margin_mode("cross", "ETH/USDT:USDT", {"throwMarginModeAlreadySet": True})


def test_usdm_error_classes_need_path_mapping_on_loopback(fake: FakeBinance) -> None:
    plain = make_client(fake, futures=True, map_errors_by_path=False)
    plain.create_order("ETH/USDT:USDT", "market", "buy", 0.01, None, {"clientOrderId": "dup"})
    with pytest.raises(ccxt.ExchangeError) as caught:
        plain.create_order("ETH/USDT:USDT", "market", "buy", 0.01, None, {"clientOrderId": "dup"})
    assert type(caught.value) is ccxt.ExchangeError  # not InvalidOrder: ccxt picks tables by hostname


def test_funding_is_settled_on_open_positions(fake: FakeBinance, usdm: ccxt.Exchange) -> None:
    usdm.create_order("ETH/USDT:USDT", "market", "buy", 0.5, None, {"clientOrderId": "long-eth"})
    wallet_before = Decimal(usdm.fetch_balance()["info"]["totalWalletBalance"])
    settlement_ms = (NOW_MS // (8 * MS_PER_HOUR) + 1) * 8 * MS_PER_HOUR
    fake.set_now_ms(settlement_ms + 1)
    rate = Decimal(str(fake.market().funding_rates("ETH/USDT:USDT", settlement_ms, settlement_ms + 1)[0, 1]))
    price = Decimal(str(fake.market().price_at("ETH/USDT")))
    wallet_after = Decimal(usdm.fetch_balance()["info"]["totalWalletBalance"])
    assert wallet_after == wallet_before - Decimal("0.5") * price * rate


def test_private_endpoints_need_an_api_key(fake: FakeBinance) -> None:
    reply = requests.get(f"{fake.base_url}/api/v3/account", params={"signature": "x"}, timeout=5)
    assert reply.status_code == 401 and reply.json()["code"] == -2015
    fake.api_keys = {"good-key"}
    with pytest.raises(ccxt.AuthenticationError):
        make_client(fake, api_key="bad-key").fetch_balance()


def test_auth_error_after_a_success_becomes_ddos_protection(fake: FakeBinance, spot: ccxt.Exchange) -> None:
    spot.fetch_balance()  # ccxt remembers this success ...
    fake.api_keys = {"another-key"}
    with pytest.raises(ccxt.DDoSProtection):  # ... and then reads -2015 as a temporary ban (a NetworkError!)
        spot.fetch_balance()


def test_api_restrictions_are_configurable() -> None:
    with FakeBinance(now_ms=NOW_MS, params=PARAMS, api_restrictions={"enableWithdrawals": True}) as risky:
        restrictions = make_client(risky).sapiGetAccountApiRestrictions()
        assert restrictions["enableWithdrawals"] is True and restrictions["enableReading"] is True


# -- faults --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("inject, expected", [
    (lambda fake: fake.fail_next(KLINES, status=429, retry_after_s=7), ccxt.DDoSProtection),
    (lambda fake: fake.fail_next(KLINES, status=418, retry_after_s=60), ccxt.DDoSProtection),
    (lambda fake: fake.fail_next(KLINES, status=500), ccxt.OperationFailed),
    (lambda fake: fake.fail_next(KLINES, status=502), ccxt.ExchangeNotAvailable),
    (lambda fake: fake.fail_next(KLINES, status=503), ccxt.ExchangeNotAvailable),
    (lambda fake: fake.delay_next(KLINES, seconds=1.5), ccxt.RequestTimeout),
    (lambda fake: fake.disconnect_next(KLINES), ccxt.NetworkError),
])
def test_transport_faults_raise_ccxt_classes_once(fake: FakeBinance, spot: ccxt.Exchange, inject,
                                                  expected: type) -> None:
    inject(fake)
    with pytest.raises(expected) as caught:
        spot.fetch_ohlcv("BTC/USDT", "1h", since=NOW_MS - 5 * MS_PER_HOUR, limit=5)
    # ccxt.NetworkError is what production retries; a plain HTTP 500 is not one
    assert isinstance(caught.value, ccxt.NetworkError) == (expected is not ccxt.OperationFailed)
    assert len(spot.fetch_ohlcv("BTC/USDT", "1h", since=NOW_MS - 5 * MS_PER_HOUR, limit=5)) == 5  # consumed
    assert fake.pending_faults() == 0


def test_retry_after_header_reaches_the_client(fake: FakeBinance, spot: ccxt.Exchange) -> None:
    fake.fail_next(KLINES, status=429, retry_after_s=7, times=2, match={"symbol": "ETHUSDT"})
    assert spot.fetch_ohlcv("BTC/USDT", "1h", limit=2)  # another symbol is not affected
    for _ in range(2):
        with pytest.raises(ccxt.DDoSProtection):
            spot.fetch_ohlcv("ETH/USDT", "1h", limit=2)
        assert spot.last_response_headers["Retry-After"] == "7"
    assert spot.fetch_ohlcv("ETH/USDT", "1h", limit=2)


@pytest.mark.parametrize("how", ["invalid_json", "truncated"])
def test_malformed_bodies_come_back_as_data_not_errors(fake: FakeBinance, spot: ccxt.Exchange,
                                                       how: Literal["invalid_json", "truncated"]) -> None:
    fake.malform_next(KLINES, how=how, times=2)
    since_ms = NOW_MS - 5 * MS_PER_HOUR
    assert spot.fetch_ohlcv("BTC/USDT", "1h", since=since_ms, limit=5) == []  # reads as "no new candles"
    garbage = spot.fetch_ohlcv("BTC/USDT", "1h", limit=5)  # without since: rows made of the text's characters
    assert garbage and all(None in row for row in garbage)
    fake.malform_next("/api/v3/order", how=how)
    order = spot.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": f"malformed-{how}"})
    assert order["id"] is None and order["status"] is None  # ... while the order was executed
    assert fake.orders[-1].accepted


@pytest.mark.parametrize("kind", BAD_CANDLE_KINDS)
def test_bad_candles_reach_the_caller(fake: FakeBinance, spot: ccxt.Exchange, kind: str) -> None:
    at_ms = (NOW_MS - 3 * MS_PER_HOUR) // MS_PER_HOUR * MS_PER_HOUR
    clean = spot.fetch_ohlcv("BTC/USDT", "1h", since=NOW_MS - 6 * MS_PER_HOUR, limit=5)
    fake.corrupt_next_candles(kind, symbol="BTC/USDT", at_ms=at_ms)
    bad = spot.fetch_ohlcv("BTC/USDT", "1h", since=NOW_MS - 6 * MS_PER_HOUR, limit=5)
    i = [row[0] for row in clean].index(at_ms)
    if kind == "negative_price":
        assert bad[i][3] == -clean[i][3]
    elif kind == "high_below_low":
        assert bad[i][2] < bad[i][3]
    elif kind == "nan_string":
        assert np.isnan(bad[i][4])
    elif kind == "duplicate_row":
        assert bad[i] == bad[i + 1] and len(bad) == 5  # ccxt still cuts to the limit
    elif kind == "out_of_order":
        assert bad == clean  # ccxt sorts candles by time, hiding the disorder
    elif kind == "absurd_jump":
        assert bad[i][4] == pytest.approx(100 * clean[i][4])
    assert spot.fetch_ohlcv("BTC/USDT", "1h", since=NOW_MS - 6 * MS_PER_HOUR, limit=5) == clean  # transient


def test_out_of_order_is_visible_on_the_wire(fake: FakeBinance, spot: ccxt.Exchange) -> None:
    fake.corrupt_next_candles("out_of_order", symbol="BTC/USDT")
    raw = spot.publicGetKlines({"symbol": "BTCUSDT", "interval": "1h", "limit": 4})
    times = [row[0] for row in raw]
    assert times != sorted(times)


def test_permanent_gap(fake: FakeBinance, spot: ccxt.Exchange) -> None:
    gap_start_ms = NOW_MS // MS_PER_HOUR * MS_PER_HOUR - 20 * MS_PER_HOUR
    fake.add_gap("BTC/USDT", gap_start_ms, gap_start_ms + 3 * MS_PER_HOUR, timeframe="1h")
    for _ in range(2):  # a re-fetch does not fill it
        rows = spot.fetch_ohlcv("BTC/USDT", "1h", since=gap_start_ms - 2 * MS_PER_HOUR, limit=5)
        assert [row[0] for row in rows] == [gap_start_ms + k * MS_PER_HOUR for k in (-2, -1, 3, 4, 5)]
    inside = spot.fetch_ohlcv("BTC/USDT", "1h", since=gap_start_ms, limit=1)
    assert inside[0][0] == gap_start_ms + 3 * MS_PER_HOUR
    assert len(spot.fetch_ohlcv("BTC/USDT", "4h", since=gap_start_ms - 8 * MS_PER_HOUR, limit=4)) == 4


@pytest.mark.parametrize("how, expected", [
    ("http_500", ccxt.OperationFailed), ("http_502", ccxt.ExchangeNotAvailable),
    ("http_503", ccxt.ExchangeNotAvailable), ("disconnect", ccxt.NetworkError),
    ("timeout", ccxt.RequestTimeout),
])
@pytest.mark.parametrize("futures", [False, True])
def test_lost_order_response_still_executes(fake: FakeBinance, how: str, expected: type,
                                            futures: bool) -> None:
    client = make_client(fake, futures=futures)
    symbol = "ETH/USDT:USDT" if futures else "ETH/USDT"
    fake.lose_next_order_response(futures=futures, how=how, seconds=1.5)
    with pytest.raises(expected):
        client.create_order(symbol, "market", "buy", 0.01, None, {"clientOrderId": "lost-1"})
    found = client.fetch_order(None, symbol, {"origClientOrderId": "lost-1"})
    assert (found["status"], found["filled"]) == ("closed", 0.01)
    assert [(o.client_order_id, o.accepted) for o in fake.orders] == [("lost-1", True)]


# -- injected real candles -----------------------------------------------------------------------------
@pytest.mark.realdata
def test_serves_injected_real_candles(shared_data_dir: Path) -> None:
    hourly = pd.read_parquet(shared_data_dir / "market" / "1h" / "BTC-USDT.parquet")
    daily = pd.read_parquet(shared_data_dir / "market" / "1d" / "BTC-USDT.parquet")
    funding = pd.read_parquet(shared_data_dir / "funding" / "BTC-USDT.parquet")
    now_ms = 1_688_169_600_000 + 5 * MS_PER_HOUR  # 2023-07-01 05:00 UTC
    with FakeBinance(now_ms=now_ms, candles={("BTC/USDT", "1h"): hourly},
                     funding={"BTC/USDT": funding}) as fake:
        spot, usdm = make_client(fake), make_client(fake, futures=True)
        since_ms = now_ms - 30 * MS_PER_DAY
        served = spot.fetch_ohlcv("BTC/USDT", "1h", since=since_ms, limit=1000)
        expected = hourly[(hourly["timestamp"] >= since_ms) & (hourly["timestamp"] <= now_ms)].head(1000)
        np.testing.assert_array_equal(np.array(served), expected.to_numpy(dtype=float))
        days = spot.fetch_ohlcv("BTC/USDT", "1d", since=since_ms, limit=20)  # aggregated from the hourly file
        real_days = daily.set_index("timestamp").loc[[row[0] for row in days]]
        np.testing.assert_array_equal(np.array(days)[:, 1:5],
                                      real_days[["open", "high", "low", "close"]].to_numpy())
        rates = usdm.fetch_funding_rate_history("BTC/USDT:USDT", since=since_ms, limit=5)
        real_rates = funding[funding["timestamp"] >= since_ms].head(5)
        assert [(r["timestamp"], r["fundingRate"]) for r in rates] == list(
            real_rates.itertuples(index=False, name=None))
        last_close = float(hourly[hourly["timestamp"] <= now_ms]["close"].iloc[-1])
        assert usdm.fetch_ticker("BTC/USDT:USDT")["last"] == last_close


def test_manual_entry_point_prints_its_url() -> None:
    with subprocess.Popen([sys.executable, "-m", "tests.fakes.exchange_server", "--port", "0",
                           "--now-ms", str(NOW_MS)], stdout=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parents[2]) as process:
        try:
            url = (process.stdout.readline() if process.stdout else "").split()[3]
            assert requests.get(f"{url}/api/v3/time", timeout=5).json() == {"serverTime": NOW_MS}
        finally:
            process.terminate()


# -- telegram --------------------------------------------------------------------------------------------


def test_telegram_records_message_and_photo(telegram: FakeTelegram) -> None:
    message = {"chat_id": -100123, "text": "equity 10 000 USDT ✅", "parse_mode": "HTML"}
    reply = requests.post(f"{telegram.base_url}/bot123:ABC/sendMessage", json=message, timeout=5)
    assert reply.status_code == 200 and reply.json()["ok"] is True
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8 + b"\r\n--\r\n"
    reply = requests.post(f"{telegram.base_url}/bot123:ABC/sendPhoto",
                          data={"chat_id": "-100123", "caption": "chart"},
                          files={"photo": ("chart.png", png, "image/png")}, timeout=5)
    assert reply.json()["result"]["photo"][0]["file_size"] == len(png)
    text, photo = telegram.messages
    assert (text.method, text.token, text.chat_id, text.text, text.fields["parse_mode"]) == (
        "sendMessage", "123:ABC", "-100123", "equity 10 000 USDT ✅", "HTML")
    assert (photo.photo, photo.photo_filename, photo.photo_content_type, photo.text) == (
        png, "chart.png", "image/png", "chart")
    assert telegram.photos == [photo] and telegram.texts == ["equity 10 000 USDT ✅", "chart"]


def test_telegram_form_encoded_message(telegram: FakeTelegram) -> None:
    requests.post(f"{telegram.base_url}/botT/sendMessage", data={"chat_id": "7", "text": "a&b=c"}, timeout=5)
    assert telegram.texts == ["a&b=c"]


def test_telegram_rate_limit_and_auth_errors(telegram: FakeTelegram) -> None:
    telegram.fail_next(429, retry_after_s=2)
    reply = requests.post(f"{telegram.base_url}/botT/sendMessage", json={"chat_id": 1, "text": "x"},
                          timeout=5)
    assert reply.status_code == 429 and reply.json()["parameters"]["retry_after"] == 2
    assert reply.headers["Retry-After"] == "2"
    telegram.fail_next(401, method="sendPhoto")
    ok = requests.post(f"{telegram.base_url}/botT/sendMessage", json={"chat_id": 1, "text": "y"}, timeout=5)
    denied = requests.post(f"{telegram.base_url}/botT/sendPhoto", data={"chat_id": "1"},
                           files={"photo": ("a.png", b"1", "image/png")}, timeout=5)
    assert (ok.status_code, denied.status_code, denied.json()["description"]) == (200, 401, "Unauthorized")
    assert telegram.texts == ["y"] and telegram.request_count() == 3


def test_telegram_rejects_unknown_tokens() -> None:
    with FakeTelegram(valid_tokens={"good"}) as telegram:
        message = {"chat_id": 1, "text": "x"}
        bad = requests.post(f"{telegram.base_url}/botbad/sendMessage", json=message, timeout=5)
        good = requests.post(f"{telegram.base_url}/botgood/sendMessage", json=message, timeout=5)
        assert (bad.status_code, good.status_code) == (401, 200) and len(telegram.messages) == 1

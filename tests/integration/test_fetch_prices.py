"""fetch_prices as a subprocess against the fake Binance server (real ccxt HTTP path) and the simulated exchange."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.core.storage import exclusive_lock, read_parquet
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.data.ohlcv import KNOWN_GAP_COLUMNS, OHLCV_COLUMNS
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project

NOW_MS = 1_767_225_600_000 + 30 * 60_000  # 2026-01-01T00:30Z: the 00:00 hourly candle is still forming
BACKFILL = "2025-12-20"
BACKFILL_MS = 1_766_188_800_000
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def config_text(fake_url: str, *, telegram_url: str = "http://127.0.0.1:9", exchange_id: str = "binance",
                market_type: str = "spot", symbols: tuple[str, ...] = SYMBOLS, timeframes: str = '["1h", "1d"]',
                backfill: str = BACKFILL, extra: str = "") -> str:
    symbol_list = ", ".join(f'"{s}"' for s in symbols)
    strategy = '[strategy]\nname = "perp_market_neutral"\n' if market_type == "swap" else ""
    return f"""
[exchange]
id = "{exchange_id}"
market_type = "{market_type}"
rest_base_url = "{fake_url}"
enable_rate_limit = false
retry_base_delay_ms = 1  # backoff without the real waits
timeout_ms = 1000
[data]
symbols = [{symbol_list}]
timeframes = {timeframes}
backfill_start = "{backfill}"
fetch_limit = 100
[alerts]
telegram_base_url = "{telegram_url}"
{strategy}{extra}
"""


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=NOW_MS) as server:
        yield server


@pytest.fixture
def binance_project(project: Project, fake: FakeBinance, telegram: FakeTelegram) -> Project:
    project.write_config(config_text(fake.base_url, telegram_url=telegram.base_url))
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:test-token", COINBOT_TELEGRAM_CHAT_ID="42")
    return project


def stored(project: Project, symbol: str, timeframe: str, venue: str = "binance") -> pd.DataFrame:
    slug = symbol.split(":")[0].replace("/", "-")
    frame = read_parquet(project.data / "ohlcv" / venue / timeframe / f"{slug}.parquet", columns=OHLCV_COLUMNS)
    assert frame is not None, f"no file for {symbol} {timeframe}"
    return frame


def expected(fake: FakeBinance, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> pd.DataFrame:
    """The fake's own candles, closed ones only, as the stored frame should hold them."""
    rows = fake.candle_rows(symbol, timeframe, start_ms, end_ms + 1)  # the fake takes [start, end)
    frame = pd.DataFrame(np.asarray(rows, dtype="float64")[:, :6], columns=list(OHLCV_COLUMNS))
    frame["timestamp"] = frame["timestamp"].astype("int64")
    return frame


def fetch(project: Project, fake: FakeBinance, *args: str) -> subprocess.CompletedProcess[str]:
    """Run fetch_prices with the script's clock set to the fake exchange's clock."""
    return project.run("fetch_prices", "--as-of", str(fake.now_ms), *args)


def assert_ok(result: object) -> None:
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]


def test_backfill_stores_exactly_the_closed_candles(binance_project: Project, fake: FakeBinance) -> None:
    assert_ok(fetch(binance_project, fake))
    last_closed_hour = NOW_MS - NOW_MS % MS_PER_HOUR - MS_PER_HOUR
    for symbol in SYMBOLS:
        hourly = stored(binance_project, symbol, "1h")
        assert hourly["timestamp"].iloc[0] == BACKFILL_MS
        assert hourly["timestamp"].iloc[-1] == last_closed_hour  # the forming 00:00 candle was dropped
        assert len(hourly) == (last_closed_hour - BACKFILL_MS) // MS_PER_HOUR + 1
        pd.testing.assert_frame_equal(hourly, expected(fake, symbol, "1h", BACKFILL_MS, last_closed_hour))
        daily = stored(binance_project, symbol, "1d")
        assert daily["timestamp"].iloc[-1] == NOW_MS - NOW_MS % MS_PER_DAY - MS_PER_DAY
    # paging used an explicit startTime on every request
    assert all("startTime" in request.params for request in fake.requests("/api/v3/klines"))
    records = binance_project.runs()
    assert [r["event"] for r in records] == ["start", "finish"] and records[-1]["status"] == "ok"


def test_rerun_with_nothing_new_asks_the_exchange_nothing_and_rewrites_nothing(
    binance_project: Project, fake: FakeBinance
) -> None:
    assert_ok(fetch(binance_project, fake))
    files = sorted((binance_project.data / "ohlcv").rglob("*.parquet"))
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files}
    fake.reset_requests()
    result = fetch(binance_project, fake)
    assert_ok(result)
    assert "0 series updated, 4 unchanged" in result.stderr
    assert fake.requests("/api/v3/klines") == []  # "nothing new" is read from the files' footers (issue 12)
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files} == before


def test_incremental_run_fetches_only_new_candles(binance_project: Project, fake: FakeBinance) -> None:
    assert_ok(fetch(binance_project, fake))
    old = stored(binance_project, "BTC/USDT", "1h")
    fake.advance_ms(5 * MS_PER_HOUR)
    fake.reset_requests()
    assert_ok(fetch(binance_project, fake, "--symbols", "BTC/USDT"))
    new = stored(binance_project, "BTC/USDT", "1h")
    assert len(new) == len(old) + 5
    pd.testing.assert_frame_equal(new.iloc[: len(old)], old)
    starts = [int(r.params["startTime"]) for r in fake.requests("/api/v3/klines") if r.params.get("interval") == "1h"]
    assert starts == [int(old["timestamp"].iloc[-1]) + MS_PER_HOUR]


def test_exchange_gap_is_recorded_once_and_not_rerequested(binance_project: Project, fake: FakeBinance) -> None:
    gap_start = BACKFILL_MS + 50 * MS_PER_HOUR
    fake.add_gap("BTC/USDT", gap_start, gap_start + 3 * MS_PER_HOUR, timeframe="1h")
    result = fetch(binance_project, fake)
    assert_ok(result)
    assert "known gap" in result.stderr
    hourly = stored(binance_project, "BTC/USDT", "1h")
    assert not set(range(gap_start, gap_start + 3 * MS_PER_HOUR, MS_PER_HOUR)) & set(hourly["timestamp"])
    gaps = read_parquet(binance_project.data / "ohlcv/binance/1h/BTC-USDT.gaps.parquet", columns=KNOWN_GAP_COLUMNS)
    assert gaps is not None and gaps.values.tolist() == [[gap_start, gap_start + 2 * MS_PER_HOUR]]
    fake.reset_requests()
    assert_ok(fetch(binance_project, fake))
    assert fake.requests("/api/v3/klines") == []  # the known gap is not asked for again (nor anything else)


def test_transient_bad_candle_is_refetched(binance_project: Project, fake: FakeBinance) -> None:
    fake.corrupt_next_candles("high_below_low", symbol="ETH/USDT", times=1)
    result = fetch(binance_project, fake, "--symbols", "ETH/USDT")
    assert_ok(result)
    assert "re-fetching once" in result.stderr
    last_closed_hour = NOW_MS - NOW_MS % MS_PER_HOUR - MS_PER_HOUR
    pd.testing.assert_frame_equal(stored(binance_project, "ETH/USDT", "1h"),
                                  expected(fake, "ETH/USDT", "1h", BACKFILL_MS, last_closed_hour))


def test_out_of_order_rows_are_put_in_order(binance_project: Project, fake: FakeBinance) -> None:
    fake.corrupt_next_candles("out_of_order", symbol="ETH/USDT", times=None)
    assert_ok(fetch(binance_project, fake, "--symbols", "ETH/USDT"))  # ccxt sorts rows by time
    last_closed_hour = NOW_MS - NOW_MS % MS_PER_HOUR - MS_PER_HOUR
    pd.testing.assert_frame_equal(stored(binance_project, "ETH/USDT", "1h"),
                                  expected(fake, "ETH/USDT", "1h", BACKFILL_MS, last_closed_hour))


@pytest.mark.parametrize("kind", ["negative_price", "high_below_low", "nan_string", "duplicate_row"])
def test_persistent_bad_candles_never_overwrite_good_data(
    binance_project: Project, fake: FakeBinance, telegram: FakeTelegram, kind: str
) -> None:
    assert_ok(fetch(binance_project, fake))
    eth_path = binance_project.data / "ohlcv/binance/1h/ETH-USDT.parquet"
    eth_before = eth_path.read_bytes()
    btc_before = stored(binance_project, "BTC/USDT", "1h")
    fake.advance_ms(30 * MS_PER_HOUR)
    fake.corrupt_next_candles(kind, symbol="ETH/USDT", times=None)
    result = fetch(binance_project, fake)
    assert result.returncode == 5  # partial: ETH failed, BTC was fetched; the daily chain goes on
    assert eth_path.read_bytes() == eth_before  # bad data never replaced good data
    assert len(stored(binance_project, "BTC/USDT", "1h")) == len(btc_before) + 30  # the others progressed
    alert = telegram.wait_for_messages(1)[0].text or ""
    assert "cannot fetch 1 symbol(s)" in alert and "ETH/USDT: 1h: DataError" in alert
    assert binance_project.runs()[-1]["status"] == "partial"


def test_persisting_jump_is_kept_but_reported(binance_project: Project, fake: FakeBinance) -> None:
    fake.corrupt_next_candles("absurd_jump", symbol="BTC/USDT", times=None)
    result = fetch(binance_project, fake, "--symbols", "BTC/USDT")
    assert_ok(result)
    assert "price jump kept after re-fetch" in result.stderr


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, 1), (500, None), (502, None), (503, None)]
)
def test_transient_http_errors_are_retried(binance_project: Project, fake: FakeBinance, status: int,
                                           retry_after: int | None) -> None:
    fake.fail_next("/api/v3/klines", status=status, times=2, retry_after_s=retry_after)
    result = fetch(binance_project, fake, "--symbols", "BTC/USDT")
    assert_ok(result)
    assert result.stderr.count("retry ") == 2
    assert fake.pending_faults() == 0
    assert len(stored(binance_project, "BTC/USDT", "1h")) > 0


def test_a_418_ban_stops_the_runs_requests(binance_project: Project, fake: FakeBinance) -> None:
    fake.fail_next("/api/v3/klines", status=418, times=1)  # banned: every further request extends the ban
    result = fetch(binance_project, fake, "--symbols", "BTC/USDT", "ETH/USDT")
    assert result.returncode == 1 and "no requests for" in result.stderr
    assert fake.request_count("/api/v3/klines") == 1


def test_timeouts_and_malformed_bodies_are_retried(binance_project: Project, fake: FakeBinance) -> None:
    fake.delay_next("/api/v3/klines", seconds=2.0, times=1)  # client timeout is 1 s
    fake.malform_next("/api/v3/klines", how="truncated", times=1)
    result = fetch(binance_project, fake, "--symbols", "BTC/USDT")
    assert_ok(result)
    assert "RequestTimeout" in result.stderr


def test_persistent_outage_fails_alerts_and_exits_nonzero(
    binance_project: Project, fake: FakeBinance, telegram: FakeTelegram
) -> None:
    fake.fail_next("/api/v3/klines", status=503, times=None)
    result = fetch(binance_project, fake, "--symbols", "BTC/USDT")
    assert result.returncode == 1
    assert "ExchangeUnavailable" in result.stderr
    texts = [m.text or "" for m in telegram.wait_for_messages(1)]
    assert len(texts) == 1 and "ExchangeUnavailable" in texts[0] and "log:" in texts[0]
    assert "test-token" not in result.stderr and all("test-token" not in text for text in texts)
    assert not (binance_project.data / "ohlcv/binance/1h/BTC-USDT.parquet").exists()


def test_overlapping_run_is_refused_cleanly(binance_project: Project, fake: FakeBinance) -> None:
    with exclusive_lock(binance_project.state / "locks" / "fetch_prices.lock"):
        result = fetch(binance_project, fake)
    assert result.returncode == 3
    assert "another fetch_prices run holds" in result.stderr
    assert not fake.requests("/api/v3/klines")


def test_sigkill_mid_run_leaves_readable_files_and_rerun_completes(
    binance_project: Project, fake: FakeBinance
) -> None:
    fake.delay_next("/api/v3/klines", seconds=0.3, times=None)
    process = binance_project.start("fetch_prices", "--as-of", str(fake.now_ms))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((binance_project.data / "ohlcv").rglob("*.parquet")):
        time.sleep(0.05)
    time.sleep(0.4)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)
    for path in (binance_project.data / "ohlcv").rglob("*.parquet"):
        assert read_parquet(path, columns=OHLCV_COLUMNS) is not None  # every file is whole
    fake.clear_faults()
    assert_ok(fetch(binance_project, fake))
    last_closed_hour = NOW_MS - NOW_MS % MS_PER_HOUR - MS_PER_HOUR
    for symbol in SYMBOLS:
        pd.testing.assert_frame_equal(stored(binance_project, symbol, "1h"),
                                      expected(fake, symbol, "1h", BACKFILL_MS, last_closed_hour))
    assert not list(binance_project.data.rglob("*.tmp"))


def test_perpetual_candles_and_funding(project: Project, fake: FakeBinance) -> None:
    project.write_config(config_text(fake.base_url, exchange_id="binanceusdm", market_type="swap",
                                     timeframes='["1d"]'))
    result = fetch(project, fake)
    assert_ok(result)
    daily = stored(project, "BTC/USDT:USDT", "1d", venue="binanceusdm_swap")
    assert len(daily) == 12
    funding = read_parquet(project.data / "funding/binanceusdm_swap/BTC-USDT.parquet", columns=("timestamp", "rate"))
    assert funding is not None and len(funding) == 12 * 3 + 1  # every 8 h from the backfill start up to now
    assert (funding["timestamp"] % (8 * MS_PER_HOUR) == 0).all()
    assert fake.requests("/fapi/v1/fundingRate")


def test_simulated_exchange_backfill_and_noop(project: Project) -> None:
    project.write_config('[data]\nsymbols = ["BTC/USDT", "ETH/USDT"]\ntimeframes = ["1d"]\n'
                         'backfill_start = "2025-01-01"\n')
    assert_ok(project.run("fetch_prices", "--as-of", "2026-01-01T00:30:00Z"))
    path = project.data / "ohlcv/simulated/1d/BTC-USDT.parquet"
    frame = read_parquet(path, columns=OHLCV_COLUMNS)
    assert frame is not None and len(frame) == 365
    mtime = path.stat().st_mtime_ns
    assert_ok(project.run("fetch_prices", "--as-of", "2026-01-01T01:30:00Z"))
    assert path.stat().st_mtime_ns == mtime


def test_real_candles_round_trip_exactly(project: Project, shared_data_dir: Path) -> None:
    source = {symbol: pd.read_parquet(shared_data_dir / "market/1d" / f"{symbol.replace('/', '-')}.parquet")
              for symbol in ("BTC/USDT", "SOL/USDT")}
    served = {(symbol, "1d"): frame for symbol, frame in source.items()}
    with FakeBinance(now_ms=1_704_067_200_000 + MS_PER_HOUR, candles=served) as server:
        project.write_config(config_text(server.base_url, symbols=tuple(source), timeframes='["1d"]',
                                         backfill="2017-01-01").replace("fetch_limit = 100", "fetch_limit = 1000"))
        assert_ok(fetch(project, server))
    for symbol, frame in source.items():
        pd.testing.assert_frame_equal(stored(project, symbol, "1d"), frame.reset_index(drop=True)[list(OHLCV_COLUMNS)])

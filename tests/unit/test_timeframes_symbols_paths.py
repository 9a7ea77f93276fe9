from __future__ import annotations

from pathlib import Path

import pytest

from lib.core.errors import ConfigError
from lib.core.paths import ProjectPaths, venue_dir_name
from lib.core.symbols import from_slug, is_perpetual, is_stablecoin, split_symbol, to_perpetual, to_slug, to_spot
from lib.core.timeframes import floor_ms, format_ms, is_on_grid, last_closed_open_ms, periods_per_year, timeframe_ms


@pytest.mark.parametrize(
    ("timeframe", "expected_ms"),
    [("1m", 60_000), ("15m", 900_000), ("1h", 3_600_000), ("4h", 14_400_000), ("1d", 86_400_000)],
)
def test_timeframe_ms(timeframe: str, expected_ms: int) -> None:
    assert timeframe_ms(timeframe) == expected_ms


@pytest.mark.parametrize("bad", ["", "h", "1w", "1M", "0h", "-1h", "1.5h", "1y", "hh"])
def test_timeframe_rejects_bad(bad: str) -> None:
    with pytest.raises(ConfigError):
        timeframe_ms(bad)


def test_periods_per_year_uses_365_day_calendar() -> None:
    assert periods_per_year("1d") == 365
    assert periods_per_year("4h") == 2190
    assert periods_per_year("1h") == 8760


def test_last_closed_candle() -> None:
    hour = 3_600_000
    assert last_closed_open_ms(2 * hour + 5, "1h") == hour
    assert last_closed_open_ms(2 * hour, "1h") == hour  # the 02:00 candle has just opened
    assert floor_ms(2 * hour + 5, "1h") == 2 * hour
    assert is_on_grid(2 * hour, "1h") and not is_on_grid(2 * hour + 1, "1h")


def test_symbols_round_trip() -> None:
    assert split_symbol("BTC/USDT:USDT") == ("BTC", "USDT")
    assert to_slug("BTC/USDT") == to_slug("BTC/USDT:USDT") == "BTC-USDT"
    assert from_slug("BTC-USDT") == "BTC/USDT"
    assert from_slug("BTC-USDT", perpetual=True) == "BTC/USDT:USDT"
    assert to_perpetual("ETH/USDT") == "ETH/USDT:USDT" and to_spot("ETH/USDT:USDT") == "ETH/USDT"
    assert is_perpetual("ETH/USDT:USDT") and not is_perpetual("ETH/USDT")
    assert is_stablecoin("USDC/USDT") and not is_stablecoin("BTC/USDT")


@pytest.mark.parametrize("bad", ["BTCUSDT", "btc/usdt", "BTC/", "/USDT", "BTC/USDT/X", "../etc/passwd", ""])
def test_invalid_symbols(bad: str) -> None:
    with pytest.raises(ConfigError):
        split_symbol(bad)


def test_paths_layout() -> None:
    paths = ProjectPaths(Path("d"), Path("s"), venue_dir_name("binanceusdm", "swap"))
    assert paths.ohlcv("1h", "BTC/USDT:USDT") == Path("d/ohlcv/binanceusdm_swap/1h/BTC-USDT.parquet")
    assert paths.funding("BTC/USDT:USDT") == Path("d/funding/binanceusdm_swap/BTC-USDT.parquet")
    assert paths.lock("fetch_prices") == Path("s/locks/fetch_prices.lock")
    assert venue_dir_name("binance", "spot") == "binance"
    with pytest.raises(ValueError):
        paths.backtest_dir("../x")


def test_format_ms_shows_utc_minutes_and_survives_garbage() -> None:
    assert format_ms(1_577_836_800_000) == "2020-01-01T00:00Z"
    assert format_ms(10**18) == "1000000000000000000ms"
    assert format_ms(1_577_836_861_000, seconds=True) == "2020-01-01T00:01:01Z"

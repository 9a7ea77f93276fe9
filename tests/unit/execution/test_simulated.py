"""lib/execution/simulated.py: determinism across ranges and orders, candle shape, point in time, funding."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from lib.core.errors import ConfigError, DataError
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.execution.simulated import (
    BLOCK_HOURS,
    FUNDING_INTERVAL_MS,
    SimulatedMarket,
    SimulatedParams,
    asset_spec,
)
from lib.execution.simulated_params import DEFAULT_SYMBOLS

PARAMS = SimulatedParams()
NOW_MS = 1_704_067_200_000 + 13 * MS_PER_HOUR + 1_234_567  # 2024-01-01 13:20:34.567 UTC
GENESIS_MS = PARAMS.genesis_ms
SOL_LISTING_MS = 1_597_125_600_000  # 2020-08-11T06:00Z


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(PARAMS, now_ms=NOW_MS)


LISTED_AT_NOW = tuple(s for s in DEFAULT_SYMBOLS if asset_spec(s.split("/")[0]).listing_ms <= NOW_MS)
"""POL/USDT (MATIC's successor) lists on 2024-09-13, after NOW_MS."""


def test_default_universe_has_26_distinct_non_stable_symbols() -> None:
    assert len(DEFAULT_SYMBOLS) == 26 and len(set(DEFAULT_SYMBOLS)) == 26 and len(LISTED_AT_NOW) == 25
    assert "BTC/USDT" in DEFAULT_SYMBOLS
    assert not any(symbol.startswith(("USDC", "BUSD", "DAI")) for symbol in DEFAULT_SYMBOLS)


def test_candle_is_identical_whatever_range_order_or_now() -> None:
    early = SimulatedMarket(PARAMS, now_ms=NOW_MS)  # generates only the blocks it needs, early first
    start_ms = GENESIS_MS + (BLOCK_HOURS - 50) * MS_PER_HOUR  # spans a block boundary
    early_rows = early.candles("ETH/USDT", "1h", start_ms, start_ms + 100 * MS_PER_HOUR)
    late = SimulatedMarket(PARAMS, now_ms=NOW_MS + 90 * MS_PER_DAY)
    late.candles("ETH/USDT", "1h", NOW_MS, NOW_MS + MS_PER_DAY)  # a long path first
    wide = late.candles("ETH/USDT", "1h", start_ms - 500 * MS_PER_HOUR, start_ms + 700 * MS_PER_HOUR)
    overlap = wide[(wide[:, 0] >= start_ms) & (wide[:, 0] < start_ms + 100 * MS_PER_HOUR)]
    assert len(early_rows) == 100
    np.testing.assert_array_equal(early_rows, overlap)


def test_paged_fetch_equals_one_big_request(market: SimulatedMarket) -> None:
    since_ms, pages = NOW_MS - 40 * MS_PER_DAY, []
    while True:
        page = market.fetch_ohlcv("BTC/USDT", "4h", since_ms=since_ms, limit=37)
        if not page:
            break
        pages.extend(page)
        since_ms = int(page[-1][0]) + 4 * MS_PER_HOUR
    whole = market.candles("BTC/USDT", "4h", NOW_MS - 40 * MS_PER_DAY, NOW_MS + 1)
    np.testing.assert_array_equal(np.array(pages), whole)


@pytest.mark.parametrize("timeframe, hours", [("4h", 4), ("1d", 24)])
def test_coarse_candles_are_aggregated_hourly_candles(market: SimulatedMarket, timeframe: str,
                                                      hours: int) -> None:
    start_ms = NOW_MS // MS_PER_DAY * MS_PER_DAY - 20 * MS_PER_DAY
    coarse = market.candles("SOL/USDT", timeframe, start_ms, NOW_MS - 2 * MS_PER_DAY)
    hourly = market.candles("SOL/USDT", "1h", start_ms, start_ms + len(coarse) * hours * MS_PER_HOUR)
    grouped = hourly.reshape(len(coarse), hours, 6)
    np.testing.assert_array_equal(coarse[:, 0], grouped[:, 0, 0])
    np.testing.assert_array_equal(coarse[:, 1], grouped[:, 0, 1])
    np.testing.assert_array_equal(coarse[:, 2], grouped[:, :, 2].max(axis=1))
    np.testing.assert_array_equal(coarse[:, 3], grouped[:, :, 3].min(axis=1))
    np.testing.assert_array_equal(coarse[:, 4], grouped[:, -1, 4])
    np.testing.assert_allclose(coarse[:, 5], grouped[:, :, 5].sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("symbol", LISTED_AT_NOW)
def test_ohlcv_shape_is_consistent_over_the_whole_history(market: SimulatedMarket, symbol: str) -> None:
    rows = market.candles(symbol, "1h", 0, NOW_MS + 1)
    timestamps, open_, high, low, close, volume = rows.T
    assert np.isfinite(rows).all()
    assert (np.diff(timestamps) == MS_PER_HOUR).all() and (timestamps % MS_PER_HOUR == 0).all()
    assert (high >= np.maximum(open_, close)).all() and (low <= np.minimum(open_, close)).all()
    assert (low > 0).all() and (volume > 0).all()
    np.testing.assert_array_equal(open_[1:], close[:-1])  # continuous trading: open = previous close
    step = float(market.market_rules(symbol).price_step)
    assert np.allclose(close / step, np.round(close / step), atol=1e-6)  # prices on the tick grid
    spec = asset_spec(symbol.split("/")[0])
    assert spec.anchor_price_quote / 20 < np.median(close) < spec.anchor_price_quote * 20


def test_nothing_after_now_and_the_forming_candle_is_partial(market: SimulatedMarket) -> None:
    rows = market.candles("BTC/USDT", "1d", NOW_MS - 5 * MS_PER_DAY, NOW_MS + 30 * MS_PER_DAY)
    assert rows[-1, 0] <= NOW_MS < rows[-1, 0] + MS_PER_DAY  # the forming candle is returned
    later = market.with_now(NOW_MS + 2 * MS_PER_DAY).candles("BTC/USDT", "1d", rows[-1, 0], rows[-1, 0] + 1)
    assert later[0, 5] > rows[-1, 5] and later[0, 1] == rows[-1, 1]  # the day completes later
    np.testing.assert_array_equal(rows[:-1], market.with_now(NOW_MS + MS_PER_DAY).candles(
        "BTC/USDT", "1d", NOW_MS - 5 * MS_PER_DAY, rows[-1, 0]))  # closed candles do not move
    _, open_, high, low, close, volume = rows[-1]
    assert high >= max(open_, close) and low <= min(open_, close) and volume > 0
    assert market.candles("BTC/USDT", "1h", NOW_MS + MS_PER_HOUR, NOW_MS + MS_PER_DAY).shape == (0, 6)


def test_forming_candle_is_deterministic_given_now() -> None:
    span = (NOW_MS - MS_PER_HOUR, NOW_MS + 1)
    first = SimulatedMarket(PARAMS, now_ms=NOW_MS).candles("XRP/USDT", "1h", *span)
    second = SimulatedMarket(PARAMS, now_ms=NOW_MS).candles("XRP/USDT", "1h", *span)
    np.testing.assert_array_equal(first, second)


def test_last_price_is_the_forming_close_and_continuous_at_the_hour(market: SimulatedMarket) -> None:
    forming = market.candles("ETH/USDT", "1h", NOW_MS - MS_PER_HOUR, NOW_MS + 1)[-1]
    assert market.fetch_last_prices(["ETH/USDT"]) == {"ETH/USDT": forming[4]}
    hour_ms = NOW_MS // MS_PER_HOUR * MS_PER_HOUR
    previous_close = market.candles("ETH/USDT", "1h", hour_ms - MS_PER_HOUR, hour_ms)[-1, 4]
    assert market.with_now(hour_ms).fetch_last_prices(["ETH/USDT:USDT"])["ETH/USDT:USDT"] == previous_close


def test_assets_are_positively_correlated(market: SimulatedMarket) -> None:
    closes = np.array([market.candles(s, "1d", NOW_MS - 1000 * MS_PER_DAY, NOW_MS)[:, 4] for s in
                       ("BTC/USDT", "ETH/USDT", "XRP/USDT", "LTC/USDT", "EOS/USDT", "TRX/USDT")])
    correlation = np.corrcoef(np.diff(np.log(closes), axis=1))
    assert correlation[0, 1] > 0.6
    assert (correlation[np.triu_indices(len(closes), 1)] > 0.2).all()


def test_volume_rises_with_absolute_return_and_volatility_clusters(market: SimulatedMarket) -> None:
    rows = market.candles("BNB/USDT", "1h", NOW_MS - 700 * MS_PER_DAY, NOW_MS - MS_PER_DAY)
    absolute_return = np.abs(np.log(rows[:, 4] / rows[:, 1]))
    volume_quote = rows[:, 5] * rows[:, 4]
    assert np.corrcoef(absolute_return, np.log(volume_quote))[0, 1] > 0.2
    daily_vol = absolute_return.reshape(-1, 24).mean(axis=1)
    assert np.corrcoef(daily_vol[:-1], daily_vol[1:])[0, 1] > 0.2  # regimes: calm and volatile stretches


def test_late_listing_is_point_in_time() -> None:
    before = SimulatedMarket(PARAMS, now_ms=SOL_LISTING_MS - 1)
    after = SimulatedMarket(PARAMS, now_ms=SOL_LISTING_MS + 3 * MS_PER_DAY)
    assert "SOL/USDT" not in before.load_markets() and "BTC/USDT" in before.load_markets()
    assert "SOL/USDT" in after.load_markets()
    assert before.candles("SOL/USDT", "1h", 0, SOL_LISTING_MS).shape == (0, 6)
    with pytest.raises(DataError, match="not listed"):
        before.fetch_last_prices(["SOL/USDT"])
    hourly = after.candles("SOL/USDT", "1h", 0, SOL_LISTING_MS + MS_PER_DAY)
    assert hourly[0, 0] == SOL_LISTING_MS
    daily = after.candles("SOL/USDT", "1d", 0, SOL_LISTING_MS + MS_PER_DAY)
    assert daily[0, 0] == SOL_LISTING_MS // MS_PER_DAY * MS_PER_DAY  # grid-aligned, partial first day
    assert daily[0, 1] == hourly[0, 1]
    assert after.fetch_ohlcv("SOL/USDT", "1d", since_ms=0, limit=2)[0][0] == daily[0, 0]


def test_swap_market_type_lists_perpetuals(market: SimulatedMarket) -> None:
    perps = SimulatedMarket(PARAMS, now_ms=NOW_MS, market_type="swap").load_markets()
    assert set(perps) == {f"{s}:USDT" for s in LISTED_AT_NOW}
    assert all(rule.is_perpetual for rule in perps.values())
    np.testing.assert_array_equal(market.candles("BTC/USDT:USDT", "1h", NOW_MS - MS_PER_DAY, NOW_MS),
                                  market.candles("BTC/USDT", "1h", NOW_MS - MS_PER_DAY, NOW_MS))


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", "SOL/USDT:USDT", "DOGE/USDT",
                                    "SHIB/USDT", "SHIB/USDT:USDT", "XRP/USDT"])
def test_market_rules_are_binance_like(market: SimulatedMarket, symbol: str) -> None:
    rules = market.market_rules(symbol)
    price = Decimal(str(market.fetch_last_prices([symbol])[symbol]))
    assert rules.is_perpetual == symbol.endswith(":USDT") and rules.quote == "USDT"
    assert Decimal(5) <= rules.min_notional_quote <= Decimal(10)
    assert Decimal("1e-8") <= rules.price_step <= price / 1000
    assert rules.amount_step * price <= 10 * rules.min_notional_quote  # small accounts can size orders
    assert rules.max_amount_base is not None and rules.max_amount_base > rules.amount_step * 1000
    assert rules.min_amount_base == rules.amount_step


def test_known_steps() -> None:
    rules = SimulatedMarket(PARAMS, now_ms=NOW_MS).market_rules
    assert (rules("BTC/USDT").amount_step, rules("BTC/USDT").price_step) == (Decimal("1e-5"), Decimal("0.1"))
    assert rules("BTC/USDT:USDT").amount_step == Decimal("0.001")
    assert rules("ETH/USDT").price_step == Decimal("0.01")


def test_funding_is_on_the_8h_grid_after_listing_and_follows_the_trend(market: SimulatedMarket) -> None:
    rows = market.funding_rates("SOL/USDT:USDT", 0, NOW_MS + 10 * MS_PER_DAY)
    times, rates = rows[:, 0].astype(np.int64), rows[:, 1]
    assert (times % FUNDING_INTERVAL_MS == 0).all() and (np.diff(times) == FUNDING_INTERVAL_MS).all()
    assert times[0] == 1_597_132_800_000 and times[-1] <= NOW_MS  # first settlement after the 06:00 listing
    assert (np.abs(rates) <= asset_spec("SOL").funding_cap_frac).all()
    assert 0 < np.median(rates) < 0.0005
    closes = market.candles("SOL/USDT", "1h", 0, NOW_MS)
    close_at = dict(zip(closes[:, 0] + MS_PER_HOUR, closes[:, 4], strict=True))
    usable = [i for i, t in enumerate(times) if t - 72 * MS_PER_HOUR in close_at]
    trailing = [np.log(close_at[times[i]] / close_at[times[i] - 72 * MS_PER_HOUR]) for i in usable]
    assert np.corrcoef(trailing, rates[usable])[0, 1] > 0.5


def test_funding_history_paging_and_btc_cap(market: SimulatedMarket) -> None:
    since_ms = NOW_MS - 30 * MS_PER_DAY
    page = market.fetch_funding_history("BTC/USDT:USDT", since_ms=since_ms, limit=10)
    assert len(page) == 10 and page[0][0] >= since_ms and page[0][0] - since_ms < FUNDING_INTERVAL_MS
    assert [t for t, _ in page] == [page[0][0] + k * FUNDING_INTERVAL_MS for k in range(10)]
    rates = market.funding_rates("BTC/USDT:USDT", 0, NOW_MS)[:, 1]
    assert np.abs(rates).max() <= 0.003


def test_seed_changes_the_market() -> None:
    other = SimulatedMarket(SimulatedParams(seed=8), now_ms=NOW_MS)
    base = SimulatedMarket(PARAMS, now_ms=NOW_MS)
    span = (NOW_MS - 10 * MS_PER_DAY, NOW_MS - MS_PER_DAY)
    assert not np.array_equal(other.candles("BTC/USDT", "1h", *span), base.candles("BTC/USDT", "1h", *span))


def test_unknown_symbol_gets_a_derived_spec_when_configured() -> None:
    params = SimulatedParams(symbols=("BTC/USDT", "PEPE2/USDT"))
    rows = SimulatedMarket(params, now_ms=NOW_MS).candles("PEPE2/USDT", "1d", NOW_MS - 5 * MS_PER_DAY, NOW_MS)
    assert len(rows) == 5 and (rows[:, 1:] > 0).all()


@pytest.mark.parametrize("call, message", [
    (lambda m: m.candles("BTC/USDT", "15m", 0, NOW_MS), "whole-hour"),
    (lambda m: m.candles("NOPE/USDT", "1h", 0, NOW_MS), "no symbol"),
    (lambda m: m.fetch_last_prices(["BTC/EUR"]), "no symbol"),
])
def test_bad_requests(market: SimulatedMarket, call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(market)


@pytest.mark.parametrize("kwargs, key", [
    ({"seed": -1}, "simulated.seed"),
    ({"symbols": ()}, "simulated.symbols"),
    ({"symbols": ("BTC/USDT", "BTC/USDT")}, "simulated.symbols"),
    ({"symbols": ("BTC/USDT:USDT",)}, "simulated.symbols"),
    ({"symbols": ("USDC/USDT",)}, "simulated.symbols"),
    ({"symbols": ("ETH/BTC",)}, "simulated.symbols"),
    ({"genesis_ms": GENESIS_MS + MS_PER_HOUR}, "simulated.genesis_ms"),
    ({"market_vol_frac": 0.0}, "simulated.market_vol_frac"),
    ({"volatile_regime_mult": 0.5}, "simulated.volatile_regime_mult"),
    ({"jumps_per_year": -1.0}, "simulated.jumps_per_year"),
])
def test_params_validation(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        SimulatedParams(**kwargs)


def test_draws_at_some_hours_equal_the_whole_stream_there() -> None:
    """The forming bar's bridge and the funding noise are drawn for their hours only: the same values as drawing
    the whole stream from genesis (what the paths held before), across block boundaries."""
    from lib.execution.simulated import BLOCK_HOURS, _blocks, _draws_at

    hours = np.array([0, 1, BLOCK_HOURS - 1, BLOCK_HOURS, 3 * BLOCK_HOURS + 17, 5, BLOCK_HOURS + 2,
                      4 * BLOCK_HOURS - 1])
    whole = _blocks(7, 12345, 18, 4 * BLOCK_HOURS)
    np.testing.assert_array_equal(_draws_at(7, 12345, 18, hours), whole[hours])

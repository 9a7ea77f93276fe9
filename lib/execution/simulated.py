"""Pure: deterministic synthetic crypto markets (correlated assets, volatility regimes, jumps, trends,
perpetual funding) behind the MarketData protocol.

The default quick-start venue, and the data behind the fake Binance server in tests. The candle of
(symbol, timeframe, open_ms) is the same whatever range is asked for and in whatever order, so
incremental fetching can be tested against it:
- random draws come in fixed blocks of hours, each block seeded by (seed, symbol, stream, block);
- hourly bars are always generated from the fixed genesis; coarser candles are aggregated from them on
  the epoch-aligned grid, exactly like a resample.
Only the candle containing `now_ms` depends on `now_ms`: it is the still-forming one and is returned
with partial data, as real exchanges do. Nothing after `now_ms` is ever returned.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

import numpy as np

from lib.core.errors import ConfigError, DataError
from lib.core.symbols import base_of, is_perpetual, to_perpetual, to_spot
from lib.core.timeframes import DAYS_PER_YEAR, MS_PER_HOUR, timeframe_ms
from lib.core.venue import MarketRules, PriceQuote
from lib.execution.simulated_params import ASSETS, QUOTE, AssetSpec, SimulatedParams

HOURS_PER_YEAR = DAYS_PER_YEAR * 24
BLOCK_HOURS = 4096  # random draws per (stream, block): hour h's noise depends only on h // BLOCK_HOURS
FUNDING_INTERVAL_MS = 8 * MS_PER_HOUR  # Binance USD-M settles funding at 00/08/16 UTC
BASE_FUNDING_RATE = 0.0001  # Binance's interest component per settlement (0.01 %)
CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
"""Columns of the candle rows returned by :meth:`SimulatedMarket.candles` (timestamp = open, ms UTC)."""

_MEAN_REVERSION_PER_HOUR = math.log(2) / HOURS_PER_YEAR  # log-price half-life of one year
_TREND_VOL_FRAC = 0.6  # annualized std of the market's trend (drift) per trend segment
_IDIO_TREND_VOL_FRAC = 0.4
_MARKET_JUMPS_PER_YEAR = 2.0
_REGIME_MEAN_HOURS = (2000.0, 700.0)  # calm, volatile
_TREND_MEAN_HOURS = 2000.0
# Random streams (part of each block's seed): changing a number changes the market.
_Z_MARKET, _U_MARKET_JUMP, _Z_MARKET_JUMP, _REGIME, _TREND = 1, 2, 3, 4, 5
_Z_IDIO, _U_JUMP, _Z_JUMP, _Z_HIGH, _Z_LOW, _Z_VOLUME, _Z_BRIDGE, _Z_FUNDING, _IDIO_TREND = range(11, 20)


def asset_spec(base: str) -> AssetSpec:
    """The built-in spec of a known asset; any other name gets a spec derived from a hash of it."""
    if base in ASSETS:
        return ASSETS[base]
    rng = np.random.default_rng(_name_key(base))
    return AssetSpec(float(10 ** rng.uniform(-2, 2)), float(rng.uniform(1.0, 1.4)),
                     float(rng.uniform(0.5, 0.9)), 1e6)


def _name_key(name: str) -> int:
    """A stable 63-bit integer per name (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


def _blocks(seed: int, key: int, stream: int, n_hours: int, *, uniform: bool = False) -> np.ndarray:
    draws = []
    for block in range(-(-n_hours // BLOCK_HOURS)):
        rng = np.random.default_rng([seed, key, stream, block])
        draws.append(rng.random(BLOCK_HOURS) if uniform else rng.standard_normal(BLOCK_HOURS))
    return np.concatenate(draws)[:n_hours] if draws else np.empty(0)


def _draws_at(seed: int, key: int, stream: int, hours: np.ndarray) -> np.ndarray:
    """``_blocks(seed, key, stream, n)[hours]`` drawing only the blocks that hold ``hours`` (the same values)."""
    out = np.empty(len(hours))
    for block in np.unique(hours // BLOCK_HOURS).tolist():
        at = hours // BLOCK_HOURS == block
        draws = np.random.default_rng([seed, key, stream, block]).standard_normal(BLOCK_HOURS)
        out[at] = draws[hours[at] % BLOCK_HOURS]
    return out


def _segments(seed: int, key: int, stream: int, n_hours: int,
              means: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Random-length segments covering the hours: (segment id per hour, one N(0,1) value per segment).

    Segment i lasts 24 h + Exp(mean[i % len(means)]); alternating means give a 2-state regime switch.
    """
    ends: list[np.ndarray] = []
    values: list[np.ndarray] = []
    total, batch = 0.0, 0
    while total < n_hours:
        rng = np.random.default_rng([seed, key, stream, batch])
        scale = np.resize(np.asarray(means), 256)
        durations = np.ceil(24 + rng.exponential(1.0, 256) * scale)
        ends.append(total + np.cumsum(durations))
        values.append(rng.standard_normal(256))
        total, batch = float(ends[-1][-1]), batch + 1
    segment = np.searchsorted(np.concatenate(ends), np.arange(n_hours), side="right")
    return segment, np.concatenate(values)


def _mean_revert(returns: np.ndarray) -> np.ndarray:
    """x[t] = (1 - k) x[t-1] + r[t] from x[-1] = 0, vectorized per block (keeps prices in a sane range)."""
    decay = 1.0 - _MEAN_REVERSION_PER_HOUR
    out = np.empty_like(returns)
    carry = 0.0
    for start in range(0, len(returns), BLOCK_HOURS):
        chunk = returns[start:start + BLOCK_HOURS]
        powers = decay ** np.arange(len(chunk))
        out[start:start + len(chunk)] = carry * powers * decay + powers * np.cumsum(chunk / powers)
        carry = float(out[start + len(chunk) - 1])
    return out


@dataclass(frozen=True, slots=True)
class _Market:
    volatile: np.ndarray  # bool per hour
    sigma: np.ndarray  # market factor's hourly vol
    returns: np.ndarray  # market factor's log return per hour (drift + noise + jumps)


def _market(params: SimulatedParams, n_hours: int) -> _Market:
    seed = params.seed
    regime, _ = _segments(seed, 0, _REGIME, n_hours, _REGIME_MEAN_HOURS)
    volatile = regime % 2 == 1
    trend_segment, trend = _segments(seed, 0, _TREND, n_hours, (_TREND_MEAN_HOURS,))
    drift = (0.05 + _TREND_VOL_FRAC * trend[trend_segment]) / HOURS_PER_YEAR
    sigma = (params.market_vol_frac / math.sqrt(HOURS_PER_YEAR)
             * np.where(volatile, params.volatile_regime_mult, 1.0))
    jump_chance = _MARKET_JUMPS_PER_YEAR / HOURS_PER_YEAR
    is_jump = _blocks(seed, 0, _U_MARKET_JUMP, n_hours, uniform=True) < jump_chance
    jumps = np.where(is_jump, -0.02 + 0.06 * _blocks(seed, 0, _Z_MARKET_JUMP, n_hours), 0.0)
    return _Market(volatile, sigma, drift + sigma * _blocks(seed, 0, _Z_MARKET, n_hours) + jumps)


@dataclass(frozen=True, slots=True)
class _HourlyPath:
    """One asset's complete hourly bars from genesis (arrays indexed by hours since genesis). What only a few hours
    need (the forming bar's volatility and bridge draw, the funding noise) is computed for those hours on demand
    (``_idio_sigma``, ``_draws_at``): held for every hour of 30 symbols over 6 years it was ~40 MB of a run."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def _asset_path(params: SimulatedParams, base: str, market: _Market, genesis_ms: int) -> _HourlyPath:
    spec, key, seed, n_hours = asset_spec(base), _name_key(base), params.seed, len(market.returns)

    def draw(stream: int, *, uniform: bool = False) -> np.ndarray:
        return _blocks(seed, key, stream, n_hours, uniform=uniform)

    idio_sigma = _idio_sigma(params, spec, market.volatile)
    trend_segment, trend = _segments(seed, key, _IDIO_TREND, n_hours, (_TREND_MEAN_HOURS,))
    jump_chance = params.jumps_per_year / HOURS_PER_YEAR
    jumps = np.where(draw(_U_JUMP, uniform=True) < jump_chance, 0.07 * draw(_Z_JUMP), 0.0)
    returns = (spec.beta * market.returns + idio_sigma * draw(_Z_IDIO) + jumps
               + _IDIO_TREND_VOL_FRAC * trend[trend_segment] / HOURS_PER_YEAR)
    decimals = _tick_decimals(spec.anchor_price_quote)
    close = _to_tick(spec.anchor_price_quote * np.exp(_mean_revert(returns)), decimals)
    open_ = np.concatenate([_to_tick(np.array([spec.anchor_price_quote]), decimals), close[:-1]])
    sigma = np.hypot(spec.beta * market.sigma, idio_sigma)
    high = _to_tick(np.maximum(open_, close) * np.exp(0.5 * sigma * np.abs(draw(_Z_HIGH))), decimals)
    low = _to_tick(np.minimum(open_, close) * np.exp(-0.5 * sigma * np.abs(draw(_Z_LOW))), decimals)
    hour_of_day = (genesis_ms // MS_PER_HOUR + np.arange(n_hours)) % 24
    activity = ((0.6 + 0.8 * np.abs(np.log(close / open_)) / sigma) * np.where(market.volatile, 1.6, 1.0)
                * (1 + 0.3 * np.cos(2 * np.pi * (hour_of_day - 15) / 24)))
    volume_quote = spec.volume_quote_per_hour * activity * np.exp(0.4 * draw(_Z_VOLUME) - 0.08)
    volume = np.maximum(np.round(volume_quote / ((open_ + close) / 2), 6), 1e-6)
    return _HourlyPath(open_, high, low, close, volume)


def _idio_sigma(params: SimulatedParams, spec: AssetSpec, volatile: np.ndarray) -> np.ndarray:
    """The asset's own hourly volatility at the hours of ``volatile`` (the market's regime there)."""
    volatile_mult = 1 + (params.volatile_regime_mult - 1) / 2
    return spec.idio_vol_frac / math.sqrt(HOURS_PER_YEAR) * np.where(volatile, volatile_mult, 1.0)


def _sigma_at(params: SimulatedParams, base: str, market: _Market, hours: np.ndarray) -> np.ndarray:
    """The asset's total hourly volatility at ``hours``: ``_asset_path``'s ``sigma`` there, value for value."""
    spec = asset_spec(base)
    return np.hypot(spec.beta * market.sigma[hours], _idio_sigma(params, spec, market.volatile[hours]))


def _tick_decimals(price: float) -> int:
    """Decimals of the price tick: about 1e-5 of the price level, never finer than 1e-8 (like Binance)."""
    return min(5 - math.floor(math.log10(price)), 8)


def _price_step(price: float) -> Decimal:
    return Decimal(1).scaleb(-_tick_decimals(price))


def _to_tick(prices: np.ndarray, decimals: int) -> np.ndarray:
    """Round to the tick (as the nearest float to the decimal), never below one tick."""
    return np.maximum(np.round(prices, decimals), np.round(10.0 ** -decimals, decimals))


def aggregate_candles(rows: np.ndarray, timeframe_ms: int) -> np.ndarray:
    """Resample sorted candle rows (``CANDLE_COLUMNS``) to a coarser epoch-aligned grid.

    Each output candle opens at its grid time (even when its first input row is later, e.g. on the
    listing day): first open, max high, min low, last close, summed volume.
    """
    if not len(rows):
        return np.empty((0, len(CANDLE_COLUMNS)))
    keys = rows[:, 0] // timeframe_ms * timeframe_ms
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    ends = np.concatenate([starts[1:], [len(keys)]]) - 1
    return np.column_stack([keys[starts], rows[starts, 1], np.maximum.reduceat(rows[:, 2], starts),
                            np.minimum.reduceat(rows[:, 3], starts), rows[ends, 4],
                            np.add.reduceat(rows[:, 5], starts)])


def _hours_in(timeframe: str) -> int:
    tf_ms = timeframe_ms(timeframe)
    if tf_ms % MS_PER_HOUR:
        raise ConfigError(f"the simulated market has whole-hour timeframes only (1h, 4h, 1d, ...), "
                          f"got {timeframe!r}")
    return tf_ms // MS_PER_HOUR


@dataclass(slots=True)
class SimulatedMarket:
    """Deterministic synthetic markets at one moment ``now_ms`` (implements lib.core.venue.MarketData).

    Spot markets ``BASE/USDT`` and linear perpetuals ``BASE/USDT:USDT`` share the same candles.
    ``market_type`` only selects which of the two ``load_markets`` lists. The instance memoizes
    generated paths (never module-level); ``with_now`` shares that memo.
    """

    params: SimulatedParams
    now_ms: int
    market_type: Literal["spot", "swap"] = "spot"
    _paths: dict[str, object] = field(default_factory=dict, repr=False)

    def with_now(self, now_ms: int) -> SimulatedMarket:
        """The same market at another moment (shares the generated paths)."""
        return replace(self, now_ms=now_ms)

    # -- pure helpers (also used by tests/fakes/exchange_server.py) ---------------------------------
    def listing_ms(self, symbol: str) -> int:
        """First hour the symbol trades (spot and perp alike), never before genesis."""
        listing = asset_spec(self._base(symbol)).listing_ms
        return max(listing - listing % MS_PER_HOUR, self.params.genesis_ms)

    def is_listed(self, symbol: str) -> bool:
        return self.listing_ms(symbol) <= self.now_ms

    def market_rules(self, symbol: str) -> MarketRules:
        """Binance-like lot/tick/min-notional rules, scaled to the asset's price level."""
        base = self._base(symbol)
        anchor = asset_spec(base).anchor_price_quote
        perp = is_perpetual(symbol)
        amount_step = Decimal(1).scaleb(min(math.floor(math.log10((30.0 if perp else 1.0) / anchor)), 0))
        return MarketRules(
            symbol=symbol, base=base, quote=QUOTE, is_perpetual=perp, amount_step=amount_step,
            price_step=_price_step(anchor), min_amount_base=amount_step,
            max_amount_base=amount_step * Decimal(10) ** (7 if perp else 9),
            min_notional_quote=Decimal(10 if perp and anchor >= 1000 else 5),
            taker_fee_frac=0.0005 if perp else 0.001,
        )

    def candles(self, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> np.ndarray:
        """Rows ``CANDLE_COLUMNS`` with open time in [start_ms, end_ms) and <= now_ms, oldest first.

        Open times are on the epoch-aligned grid; the candle containing now_ms is the forming one.
        """
        tf_ms, start_ms, end_ms = _hours_in(timeframe) * MS_PER_HOUR, int(start_ms), int(end_ms)
        listing = self.listing_ms(symbol)
        first_key = max(-(-start_ms // tf_ms) * tf_ms, listing - listing % tf_ms)
        last_key = min(end_ms - 1, self.now_ms) // tf_ms * tf_ms
        hour_start = max(first_key, listing)
        hour_end = min(last_key + tf_ms, self.now_ms // MS_PER_HOUR * MS_PER_HOUR + MS_PER_HOUR)
        if last_key < first_key or hour_end <= hour_start:
            return np.empty((0, len(CANDLE_COLUMNS)))
        return aggregate_candles(self._hourly_rows(self._base(symbol), hour_start, hour_end), tf_ms)

    def funding_rates(self, symbol: str, start_ms: int, end_ms: int) -> np.ndarray:
        """Rows ``(settlement_time_ms, rate)`` in [start_ms, end_ms) and <= now_ms, every 8 h after listing.

        rate = 0.01 % + a premium that follows the last 72 h return (the trend), clipped like Binance.
        """
        listing, start_ms, end_ms = self.listing_ms(symbol), int(start_ms), int(end_ms)
        first = max(start_ms - 1, listing) // FUNDING_INTERVAL_MS * FUNDING_INTERVAL_MS + FUNDING_INTERVAL_MS
        times = np.arange(first, min(end_ms - 1, self.now_ms) + 1, FUNDING_INTERVAL_MS, dtype=np.int64)
        if not len(times):
            return np.empty((0, 2))
        base = self._base(symbol)
        index = (times - self.params.genesis_ms) // MS_PER_HOUR  # hour that opens at the settlement
        path = self._path(base, int(index[-1]))
        anchor = float(path.open[0])
        price_now = path.close[index - 1]
        price_before = np.where(index - 73 >= 0, path.close[np.maximum(index - 73, 0)], anchor)
        noise = _draws_at(self.params.seed, _name_key(base), _Z_FUNDING, index - 1)
        premium = 0.004 * np.log(price_now / price_before) + 0.00004 * noise
        cap = asset_spec(base).funding_cap_frac
        return np.column_stack([times, np.round(np.clip(BASE_FUNDING_RATE + premium, -cap, cap), 8)])

    def price_at(self, symbol: str) -> float:
        """Last traded price at now_ms: the forming hourly bar's close so far.

        Raises:
            DataError: the symbol is not listed yet at now_ms.
        """
        if not self.is_listed(symbol):
            raise DataError(f"simulated market: {symbol} is not listed at {self.now_ms} "
                            f"(lists at {self.listing_ms(symbol)})")
        hour = self.now_ms // MS_PER_HOUR * MS_PER_HOUR
        return float(self._hourly_rows(self._base(symbol), hour, hour + MS_PER_HOUR)[-1, 4])

    # -- lib.core.venue.MarketData ------------------------------------------------------------------------
    def load_markets(self) -> dict[str, MarketRules]:
        """Markets of ``market_type`` listed at now_ms (point in time: later listings are absent)."""
        listed = [symbol for symbol in self.params.symbols if self.is_listed(symbol)]
        symbols = listed if self.market_type == "spot" else [to_perpetual(symbol) for symbol in listed]
        return {symbol: self.market_rules(symbol) for symbol in symbols}

    def fetch_ohlcv(self, symbol: str, timeframe: str, *, since_ms: int, limit: int) -> list[list[float]]:
        tf_ms = _hours_in(timeframe) * MS_PER_HOUR
        listing = self.listing_ms(symbol)
        first_key = max(-(-since_ms // tf_ms) * tf_ms, listing - listing % tf_ms)
        rows = self.candles(symbol, timeframe, first_key, first_key + max(limit, 0) * tf_ms)
        return [[int(row[0]), *map(float, row[1:])] for row in rows[:limit]]

    def fetch_funding_history(self, symbol: str, *, since_ms: int, limit: int) -> list[tuple[int, float]]:
        first = max(since_ms, self.listing_ms(symbol))
        rows = self.funding_rates(symbol, first, first + (max(limit, 0) + 1) * FUNDING_INTERVAL_MS)
        return [(int(time_ms), float(rate)) for time_ms, rate in rows[:limit]]

    def fetch_last_prices(self, symbols: list[str]) -> dict[str, float]:
        return {symbol: self.price_at(symbol) for symbol in symbols}

    def fetch_server_time_ms(self) -> int | None:
        return self.now_ms

    def fetch_price_quotes(self, symbols: list[str]) -> dict[str, PriceQuote]:
        """The price at this market's clock, stamped with it."""
        return {symbol: PriceQuote(price=self.price_at(symbol), time_ms=self.now_ms) for symbol in symbols}

    # -- internals -------------------------------------------------------------------------------------
    def _base(self, symbol: str) -> str:
        if to_spot(symbol) not in self.params.symbols:
            raise ConfigError(f"simulated market has no symbol {symbol!r}; "
                              "add its spot symbol to simulated.symbols")
        return base_of(symbol)

    def _path(self, base: str, last_hour: int) -> _HourlyPath:
        """The asset's hourly path covering hour index ``last_hour``, generated from genesis (memoized)."""
        path = self._paths.get(base)
        if not isinstance(path, _HourlyPath) or len(path.close) <= last_hour:
            n_hours = (last_hour // BLOCK_HOURS + 1) * BLOCK_HOURS
            market = self._paths.get("")
            if not isinstance(market, _Market) or len(market.returns) < n_hours:
                market = _market(self.params, n_hours)
                self._paths[""] = market
            path = _asset_path(self.params, base, market, self.params.genesis_ms)
            self._paths[base] = path
        return path

    def _hourly_rows(self, base: str, hour_start_ms: int, hour_end_ms: int) -> np.ndarray:
        """Hourly rows for opens in [start, end); the bar containing now_ms is cut at now_ms."""
        first = (hour_start_ms - self.params.genesis_ms) // MS_PER_HOUR
        last = (hour_end_ms - self.params.genesis_ms) // MS_PER_HOUR - 1
        path = self._path(base, last)
        span = slice(first, last + 1)
        open_ms = self.params.genesis_ms + np.arange(first, last + 1) * MS_PER_HOUR
        rows = np.column_stack([open_ms, path.open[span], path.high[span], path.low[span], path.close[span],
                                path.volume[span]])
        fraction = (self.now_ms - rows[-1, 0]) / MS_PER_HOUR
        if fraction < 1:
            hour = np.array([last])
            market = self._paths[""]
            if not isinstance(market, _Market):  # pragma: no cover (generated with every path)
                raise DataError("simulated market: no market path behind an asset's path")
            sigma = float(_sigma_at(self.params, base, market, hour)[0])
            bridge = float(_draws_at(self.params.seed, _name_key(base), _Z_BRIDGE, hour)[0])
            rows[-1, 1:] = _forming(rows[-1, 1:], fraction, sigma, bridge,
                                    _tick_decimals(asset_spec(base).anchor_price_quote))
        return rows


def _forming(bar: np.ndarray, fraction: float, sigma: float, bridge: float, decimals: int) -> np.ndarray:
    """The bar as it stands ``fraction`` of the way through: a Brownian bridge from open to close."""
    open_, high, low, close, volume = bar
    log_close = (math.log(open_) + fraction * math.log(close / open_)
                 + sigma * math.sqrt(fraction * (1 - fraction)) * bridge)
    partial_close = float(_to_tick(np.array([math.exp(log_close)]), decimals)[0])
    partial_high = max(open_, partial_close) * (high / max(open_, close)) ** fraction
    partial_low = min(open_, partial_close) * (low / min(open_, close)) ** fraction
    partial_high, partial_low = _to_tick(np.array([partial_high, partial_low]), decimals)
    return np.array([open_, max(partial_high, open_, partial_close), min(partial_low, open_, partial_close),
                     partial_close, round(volume * max(fraction, 0.001), 6)])


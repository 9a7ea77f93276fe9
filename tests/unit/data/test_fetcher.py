"""lib.data.fetcher against the deterministic SimulatedMarket (a real MarketData), with a thin wrapper where a
venue fault is needed: the close grace, the exchange's clock, an empty page, and when a hole becomes a known gap.
Expected candle times are hand-computed on the hourly grid."""

from __future__ import annotations

from dataclasses import dataclass, field

from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.data import fetcher
from lib.execution.simulated import SimulatedMarket, SimulatedParams

HOUR_0 = 1_767_225_600_000  # 2026-01-01T00:00Z, a candle close/open on every grid
START_MS = HOUR_0 - 6 * MS_PER_HOUR
MARKET = SimulatedMarket(SimulatedParams(), now_ms=HOUR_0)


def update(venue: object, now_ms: int, **kwargs: object) -> fetcher.CandleUpdate:
    options = {"stored": None, "stored_gaps": None, "backfill_start_ms": START_MS, "limit": 1000,
               "max_jump_frac": 0.9, **kwargs}
    return fetcher.fetch_candle_update(venue, "BTC/USDT", "1h", now_ms=now_ms, **options)  # type: ignore[arg-type]


def last_open(result: fetcher.CandleUpdate) -> int:
    return int(result.candles["timestamp"].iloc[-1])


def test_a_candle_seconds_past_its_close_is_not_yet_final() -> None:
    # 5 s after 00:00 the 23:00 candle has closed by our clock, but our clock may run ahead: not stored yet
    early = update(MARKET.with_now(HOUR_0 + 5_000), HOUR_0 + 5_000)
    assert last_open(early) == HOUR_0 - 2 * MS_PER_HOUR and len(early.candles) == 5
    # past the 30 s grace it is final
    late = update(MARKET.with_now(HOUR_0 + 31_000), HOUR_0 + 31_000)
    assert last_open(late) == HOUR_0 - MS_PER_HOUR and len(late.candles) == 6


def test_a_local_clock_ahead_of_the_exchange_uses_the_exchanges_time() -> None:
    exchange = MARKET.with_now(HOUR_0 + 20 * 60_000)  # the exchange: 00:20, the 00:00 candle is forming
    local_ms = HOUR_0 + 65 * 60_000  # our clock says 01:05: it would take the 00:00 candle as closed
    now_ms = fetcher.exchange_now_ms(exchange, local_ms)
    assert now_ms == HOUR_0 + 20 * 60_000
    assert last_open(update(exchange, now_ms)) == HOUR_0 - MS_PER_HOUR  # the forming candle is not stored
    assert fetcher.exchange_now_ms(exchange, HOUR_0 + 20 * 60_000 + 29_000) == HOUR_0 + 20 * 60_000 + 29_000
    assert fetcher.exchange_now_ms(exchange, HOUR_0) == HOUR_0  # behind the exchange: our clock (conservative)


@dataclass
class Faulty:
    """SimulatedMarket that returns one empty page, and/or never has the candles opening in ``missing``."""

    market: SimulatedMarket
    empty_pages: int = 0
    missing: set[int] = field(default_factory=set)
    calls: int = 0

    def fetch_ohlcv(self, symbol: str, timeframe: str, *, since_ms: int, limit: int) -> list[list[float]]:
        self.calls += 1
        if self.empty_pages:
            self.empty_pages -= 1
            return []
        rows = self.market.fetch_ohlcv(symbol, timeframe, since_ms=since_ms, limit=limit)
        return [row for row in rows if int(row[0]) not in self.missing]


def test_an_empty_page_while_candles_are_due_is_asked_again() -> None:
    venue = Faulty(MARKET.with_now(HOUR_0 + MS_PER_HOUR), empty_pages=1)
    result = update(venue, HOUR_0 + MS_PER_HOUR)
    # 18:00 .. 23:00 (01:00 minus the grace closes 23:00 last), not "no more data" after the empty page
    assert len(result.candles) == 6 and result.requests == 2


def test_a_missing_candle_becomes_a_known_gap_only_after_the_margin() -> None:
    hole = HOUR_0 - 3 * MS_PER_HOUR
    venue = Faulty(MARKET.with_now(HOUR_0 + MS_PER_HOUR), missing={hole})
    recent = update(venue, HOUR_0 + MS_PER_HOUR)
    assert hole not in set(recent.candles["timestamp"]) and recent.new_gaps == []  # asked again next run
    later_ms = hole + MS_PER_DAY + 4 * MS_PER_HOUR  # a day later, still missing after a re-request
    venue = Faulty(MARKET.with_now(later_ms), missing={hole})
    later = update(venue, later_ms, stored=recent.candles)
    assert later.new_gaps == [(hole, hole)] and list(later.known_gaps.itertuples(index=False)) == [(hole, hole)]


def test_a_transient_hole_is_filled_by_a_later_run() -> None:
    hole = HOUR_0 - 3 * MS_PER_HOUR
    recent = update(Faulty(MARKET.with_now(HOUR_0 + MS_PER_HOUR), missing={hole}), HOUR_0 + MS_PER_HOUR)
    filled = update(MARKET.with_now(HOUR_0 + 2 * MS_PER_HOUR), HOUR_0 + 2 * MS_PER_HOUR, stored=recent.candles)
    assert hole in set(filled.candles["timestamp"]) and filled.new_gaps == []
    assert len(filled.candles) == 7  # 18:00 .. 00:00

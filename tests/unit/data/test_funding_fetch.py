"""lib.data.fetcher.fetch_funding_update against a venue that stamps settlements a few ms late, as Binance's
GET /fapi/v1/fundingRate does (e.g. 2026-05-05T08:00:00.011Z): the stored settlement times must be on the hour,
or the carry sleeve (lib.research.carry.market.funding_at_bar, an exact reindex on the hourly bars) never sees
the rate, and a live run cut at the bar's open leaves the newest print out. Times are hand-computed."""

from __future__ import annotations

from dataclasses import dataclass

from lib.data import fetcher, funding

H = 3_600_000
SETTLE = 8 * H
DAY_0 = 1_767_225_600_000  # 2026-01-01T00:00Z, on every grid
JITTER_MS = (11, 3, 0, 7, 2)  # how late each settlement is stamped
RATES = (0.0001, 0.0002, 0.0003, 0.0004, 0.0005)
RAW = [(DAY_0 + k * SETTLE + late, rate) for k, (late, rate) in enumerate(zip(JITTER_MS, RATES, strict=True))]


@dataclass
class LateStamps:
    """Funding history from startTime on (inclusive, raw stamps), at most ``limit``, none after ``now_ms``."""

    now_ms: int

    def fetch_funding_history(self, symbol: str, *, since_ms: int, limit: int) -> list[tuple[int, float]]:
        return [(t, r) for t, r in RAW if since_ms <= t <= self.now_ms][:limit]


def fetch(now_ms: int, stored: object = None, limit: int = 1000) -> tuple[list[int], list[float], int]:
    merged, new_rows = fetcher.fetch_funding_update(LateStamps(now_ms), "BTC/USDT:USDT", stored=stored,  # type: ignore[arg-type]
                                                     backfill_start_ms=DAY_0, now_ms=now_ms, limit=limit,
                                                     max_abs_rate=0.05)
    return merged["timestamp"].tolist(), merged["rate"].tolist(), new_rows


def test_late_stamped_settlements_are_stored_on_the_hour() -> None:
    times, rates, new_rows = fetch(DAY_0 + 2 * SETTLE + H)  # 17:00: three settlements so far
    assert times == [DAY_0, DAY_0 + SETTLE, DAY_0 + 2 * SETTLE] and new_rows == 3
    assert rates == [0.0001, 0.0002, 0.0003]


def test_a_later_run_adds_only_the_new_settlement_and_repeats_none() -> None:
    first, _, _ = fetch(DAY_0 + 2 * SETTLE + H)
    stored = funding.to_funding_frame(list(zip(first, RATES[:3], strict=True)))
    times, rates, new_rows = fetch(DAY_0 + 3 * SETTLE + H, stored=stored)
    assert times == [DAY_0 + k * SETTLE for k in range(4)] and new_rows == 1
    assert rates == [0.0001, 0.0002, 0.0003, 0.0004]
    stored = funding.to_funding_frame(list(zip(times, rates, strict=True)))
    again, _, none_new = fetch(DAY_0 + 3 * SETTLE + H, stored=stored)
    assert again == times and none_new == 0


def test_paging_one_settlement_at_a_time_still_advances() -> None:
    times, _, new_rows = fetch(DAY_0 + 4 * SETTLE + H, limit=1)
    assert times == [DAY_0 + k * SETTLE for k in range(5)] and new_rows == 5


def test_a_file_stored_with_late_stamps_is_put_on_the_hour_with_the_next_settlement() -> None:
    stored = funding.to_funding_frame(RAW[:2])  # written by an earlier version: 00:00:00.011, 08:00:00.003
    times, rates, new_rows = fetch(DAY_0 + 2 * SETTLE + H, stored=stored)
    assert times == [DAY_0, DAY_0 + SETTLE, DAY_0 + 2 * SETTLE] and new_rows == 1
    assert rates == [0.0001, 0.0002, 0.0003]

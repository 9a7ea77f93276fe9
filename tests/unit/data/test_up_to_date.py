"""fetch_prices' "nothing new" check from the Parquet footer (lib.data.stored / lib.data.fetcher).

It must say True only when fetch_candle_update would find nothing to do: the last closed candle is stored
and no hole outside the known gaps is left to re-request; anything unsure is False (then the full path runs).
"""

from __future__ import annotations

from pathlib import Path

from lib.core import storage
from lib.core.timeframes import MS_PER_HOUR
from lib.data import fetcher, ohlcv
from lib.data.stored import StoredSpan, read_candle_timestamps, stored_candle_span

HOUR_0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def write_hours(path: Path, hours: list[int]) -> None:
    storage.write_parquet_atomic(path, ohlcv.to_frame([[HOUR_0 + h * MS_PER_HOUR, 1, 1, 1, 1, 1] for h in hours]))


def test_the_footer_gives_first_last_and_rows_without_reading_candles(tmp_path: Path) -> None:
    path = tmp_path / "BTC-USDT.parquet"
    write_hours(path, [0, 1, 2, 5])
    assert stored_candle_span(path) == StoredSpan(HOUR_0, HOUR_0 + 5 * MS_PER_HOUR, 4)
    assert read_candle_timestamps(path)["timestamp"].tolist() == [HOUR_0 + h * MS_PER_HOUR for h in (0, 1, 2, 5)]


def test_no_span_for_a_missing_file_or_another_schema(tmp_path: Path) -> None:
    assert stored_candle_span(tmp_path / "missing.parquet") is None
    other = tmp_path / "other.parquet"
    storage.write_parquet_atomic(other, ohlcv.empty_gaps())
    assert stored_candle_span(other) is None
    empty = tmp_path / "empty.parquet"
    storage.write_parquet_atomic(empty, ohlcv.empty_frame())
    assert stored_candle_span(empty) is None


def test_up_to_date_only_when_the_last_closed_candle_is_stored(tmp_path: Path) -> None:
    candles, gaps = tmp_path / "c.parquet", tmp_path / "g.parquet"
    write_hours(candles, list(range(10)))  # hours 0..9 stored
    # hour 9 closes at 10:00; the check allows CLOSE_GRACE_MS (30 s) like fetch_candle_update
    closed_9 = HOUR_0 + 10 * MS_PER_HOUR + fetcher.CLOSE_GRACE_MS
    assert fetcher.candles_up_to_date(candles, gaps, "1h", now_ms=closed_9)
    assert fetcher.candles_up_to_date(candles, gaps, "1h", now_ms=closed_9 + MS_PER_HOUR - 1)
    assert not fetcher.candles_up_to_date(candles, gaps, "1h", now_ms=closed_9 + MS_PER_HOUR)  # hour 10 closed
    assert not fetcher.candles_up_to_date(tmp_path / "none.parquet", gaps, "1h", now_ms=closed_9)


def test_a_hole_is_due_unless_it_is_a_known_gap(tmp_path: Path) -> None:
    candles, gaps = tmp_path / "c.parquet", tmp_path / "g.parquet"
    write_hours(candles, [0, 1, 2, 5, 6])  # hours 3 and 4 missing
    now_ms = HOUR_0 + 7 * MS_PER_HOUR + fetcher.CLOSE_GRACE_MS
    assert not fetcher.candles_up_to_date(candles, gaps, "1h", now_ms=now_ms)
    storage.write_parquet_atomic(gaps, ohlcv.merge_gaps(None, [(HOUR_0 + 3 * MS_PER_HOUR, HOUR_0 + 4 * MS_PER_HOUR)]))
    assert fetcher.candles_up_to_date(candles, gaps, "1h", now_ms=now_ms)
    storage.write_parquet_atomic(gaps, ohlcv.merge_gaps(None, [(HOUR_0 + 3 * MS_PER_HOUR, HOUR_0 + 3 * MS_PER_HOUR)]))
    assert not fetcher.candles_up_to_date(candles, gaps, "1h", now_ms=now_ms)  # hour 4 is still unknown

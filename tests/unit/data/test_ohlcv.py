"""Unit tests for lib/data/ohlcv.py: tiny hand-built candle frames with exact expectations, plus real data."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.data import ohlcv
from lib.data.ohlcv import CandleProblem

H = 3_600_000  # one hour in ms
DAY = 24 * H


def flat(ts: int, price: float = 100.0, volume: float = 5.0) -> list[float]:
    """A consistent candle around ``price``: [ts, open, high, low, close, volume]."""
    return [ts, price, price + 1, price - 1, price, volume]


def frame_at(*timestamps: int) -> pd.DataFrame:
    return ohlcv.to_frame([flat(ts) for ts in timestamps])


def gaps_frame(*ranges: tuple[int, int]) -> pd.DataFrame:
    return ohlcv.gaps_to_frame(list(ranges))


# --- to_frame / schema --------------------------------------------------------------------------


def test_to_frame_has_exact_columns_dtypes_and_values() -> None:
    frame = ohlcv.to_frame([[0, 1, 2, 0.5, 1.5, 10], [H, 1.5, 3, 1, 2, 0]])
    assert tuple(frame.columns) == ohlcv.OHLCV_COLUMNS
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == dict(ohlcv.OHLCV_DTYPES)
    assert frame["timestamp"].tolist() == [0, H]
    assert frame.iloc[0].tolist() == [0, 1.0, 2.0, 0.5, 1.5, 10.0]
    assert frame.iloc[1].tolist() == [H, 1.5, 3.0, 1.0, 2.0, 0.0]


def test_to_frame_accepts_integral_float_timestamps_and_numpy_numbers() -> None:
    frame = ohlcv.to_frame([[float(2 * H), np.float64(1), 2, 1, np.int64(2), 3]])  # type: ignore[list-item]
    assert frame["timestamp"].tolist() == [2 * H]
    assert frame["timestamp"].dtype == np.int64


def test_to_frame_of_no_rows_is_the_empty_frame() -> None:
    pd.testing.assert_frame_equal(ohlcv.to_frame([]), ohlcv.empty_frame())


def test_to_frame_keeps_nan_prices_for_validate_to_report() -> None:
    frame = ohlcv.to_frame([[0, 1, 2, 0.5, float("nan"), 10]])
    assert np.isnan(frame["close"].iloc[0])


@pytest.mark.parametrize(
    "row",
    [
        [0, 1, 2, 0.5, 1.5],  # too short
        [0, 1, 2, 0.5, 1.5, 10, 7],  # too long
        [0, 1, 2, 0.5, 1.5, None],  # ccxt None volume
        [0, "1", 2, 0.5, 1.5, 10],  # string price
        [0, True, 2, 0.5, 1.5, 10],  # bool is not a price
        [0.5, 1, 2, 0.5, 1.5, 10],  # fractional ms
        [float("nan"), 1, 2, 0.5, 1.5, 10],  # no time at all
        "012345",  # a string is not a row
        42,  # neither is a number
    ],
)
def test_to_frame_rejects_bad_rows(row: object) -> None:
    with pytest.raises(DataError):
        ohlcv.to_frame([flat(0), row])  # type: ignore[list-item]


def test_dtypes_survive_merge_resample_and_a_parquet_round_trip() -> None:
    candles = frame_at(0, H, 2 * H, 3 * H)
    buffer = io.BytesIO()
    candles.to_parquet(buffer, index=False)
    read_back = pd.read_parquet(io.BytesIO(buffer.getvalue()))
    pd.testing.assert_frame_equal(read_back, candles)
    for derived in (
        ohlcv.merge(read_back, candles),
        ohlcv.resample(candles, "1h", "2h"),
        ohlcv.empty_frame(),
    ):
        ohlcv.check_columns(derived, ohlcv.OHLCV_DTYPES, what="candle")  # raises on any drift


@pytest.mark.parametrize(
    "broken",
    [
        lambda f: f.drop(columns="volume"),
        lambda f: f[["timestamp", "close", "open", "high", "low", "volume"]],
        lambda f: f.assign(timestamp=f["timestamp"].astype("float64")),
        lambda f: f.assign(volume=f["volume"].astype("float32")),
    ],
)
def test_validate_and_merge_refuse_a_frame_with_the_wrong_schema(broken) -> None:
    bad = broken(frame_at(0, H))
    with pytest.raises(DataError):
        ohlcv.validate(bad, "1h", max_jump_frac=0.5)
    with pytest.raises(DataError):
        ohlcv.merge(frame_at(0), bad)


# --- drop_forming -------------------------------------------------------------------------------


def test_drop_forming_drops_only_candles_that_have_not_closed() -> None:
    candles = frame_at(0, H, 2 * H)
    assert ohlcv.drop_forming(candles, "1h", now_ms=3 * H - 1)["timestamp"].tolist() == [0, H]
    assert ohlcv.drop_forming(candles, "1h", now_ms=3 * H)["timestamp"].tolist() == [0, H, 2 * H]
    assert ohlcv.drop_forming(candles, "1h", now_ms=H - 1).empty
    assert ohlcv.drop_forming(candles, "1h", now_ms=3 * H - 1).index.tolist() == [0, 1]


# --- validate -----------------------------------------------------------------------------------


def test_validate_clean_frame_has_no_problems() -> None:
    assert ohlcv.validate(frame_at(0, H, 2 * H, 3 * H), "1h", max_jump_frac=0.5) == []
    assert ohlcv.validate(ohlcv.empty_frame(), "1h", max_jump_frac=0.5, previous_close=100.0) == []


def _base_rows() -> list[list[float]]:
    return [flat(0), flat(H), flat(2 * H), flat(3 * H)]


def _with(index: int, **changes: float) -> list[list[float]]:
    rows = _base_rows()
    for name, value in changes.items():
        rows[index][ohlcv.OHLCV_COLUMNS.index(name)] = value
    return rows


BAD_CANDLES = [
    ("duplicate", _with(2, timestamp=H), [(H, "duplicate")]),
    ("unsorted", [flat(0), flat(2 * H), flat(H), flat(3 * H)], [(H, "unsorted")]),
    ("off grid", _with(2, timestamp=2 * H + 1), [(2 * H + 1, "off_grid")]),
    ("nan close", _with(1, close=float("nan")), [(H, "non_finite")]),
    ("inf volume", _with(1, volume=float("inf")), [(H, "non_finite")]),
    ("zero low", _with(1, low=0.0), [(H, "non_positive_price")]),
    ("negative open", _with(1, open=-1.0), [(H, "non_positive_price"), (H, "ohlc_inconsistent")]),
    ("high below close", _with(1, high=99.5), [(H, "ohlc_inconsistent")]),
    ("high below open", _with(1, open=101.5), [(H, "ohlc_inconsistent")]),
    ("high below low", _with(1, low=102.0, high=101.0, open=101.0, close=101.0), [(H, "ohlc_inconsistent")]),
    ("low above open", _with(1, low=100.5), [(H, "ohlc_inconsistent")]),
    ("low above close", _with(1, low=99.5, close=99.0), [(H, "ohlc_inconsistent")]),
    ("negative volume", _with(3, volume=-0.1), [(3 * H, "negative_volume")]),
    ("jump up and back", _with(2, open=151, high=152, low=150, close=151), [(2 * H, "jump")]),
    ("crash and recover", _with(2, open=49, high=50, low=48, close=49), [(2 * H, "jump"), (3 * H, "jump")]),
    ("move of exactly the bound", _with(2, open=150, high=151, low=149, close=150), []),
]


@pytest.mark.parametrize(
    ("rows", "expected"), [case[1:] for case in BAD_CANDLES], ids=[c[0] for c in BAD_CANDLES]
)
def test_validate_reports_each_bad_candle_kind(
    rows: list[list[float]], expected: list[tuple[int, str]]
) -> None:
    problems = ohlcv.validate(ohlcv.to_frame(rows), "1h", max_jump_frac=0.5)
    assert [(problem.timestamp_ms, problem.kind) for problem in problems] == expected


def test_validate_checks_the_seam_with_the_last_stored_close() -> None:
    candles = frame_at(0, H)
    assert ohlcv.validate(candles, "1h", max_jump_frac=0.5, previous_close=None) == []
    assert ohlcv.validate(candles, "1h", max_jump_frac=0.5, previous_close=100.0 / 1.5) == []
    [problem] = ohlcv.validate(candles, "1h", max_jump_frac=0.5, previous_close=60.0)
    assert (problem.timestamp_ms, problem.kind) == (0, "jump")
    assert problem.detail == "close 100.0 vs last stored close 60.0 (+66.7%, bound ±50%)"
    [problem] = ohlcv.validate(candles, "1h", max_jump_frac=0.5, previous_close=250.0)
    assert (problem.timestamp_ms, problem.kind) == (0, "jump")


def test_validate_lists_every_problem_sorted_by_time_with_details() -> None:
    rows = _with(3, volume=-1.0)
    rows[1][3] = 100.5  # low above open and close
    problems = ohlcv.validate(ohlcv.to_frame(rows), "1h", max_jump_frac=0.5)
    assert problems == [
        CandleProblem(H, "ohlc_inconsistent", "open=100.0 high=101.0 low=100.5 close=100.0"),
        CandleProblem(3 * H, "negative_volume", "volume=-1.0"),
    ]


def test_validate_rejects_a_non_positive_jump_bound() -> None:
    with pytest.raises(ConfigError):
        ohlcv.validate(frame_at(0), "1h", max_jump_frac=0.0)


@pytest.mark.parametrize("kind", ohlcv.PROBLEM_KINDS)
def test_only_jumps_are_not_fatal(kind: str) -> None:
    assert ohlcv.is_fatal(CandleProblem(0, kind, "")) is (kind != "jump")  # type: ignore[arg-type]


def test_describe_problems_names_times_and_truncates() -> None:
    problems = [CandleProblem(i * H, "negative_volume", "volume=-1.0") for i in range(3)]
    assert ohlcv.describe_problems(problems, max_listed=2) == (
        "3 candle problem(s): 1970-01-01T00:00Z negative_volume (volume=-1.0); "
        "1970-01-01T01:00Z negative_volume (volume=-1.0); +1 more"
    )


# --- find_gaps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamps", "bounds", "expected"),
    [
        ([0, H, 2 * H], {}, []),
        ([0, H, 4 * H, 5 * H], {}, [(2 * H, 3 * H)]),
        ([0, 2 * H, 4 * H], {}, [(H, H), (3 * H, 3 * H)]),
        ([2 * H, 3 * H, 4 * H], {"start_ms": 0}, [(0, H)]),
        ([0, H, 2 * H], {"end_ms": 4 * H}, [(3 * H, 4 * H)]),
        ([H, 3 * H], {"start_ms": 0, "end_ms": 4 * H}, [(0, 0), (2 * H, 2 * H), (4 * H, 4 * H)]),
        ([2 * H], {"start_ms": 1, "end_ms": 3 * H + 5}, [(H, H), (3 * H, 3 * H)]),  # ceil / floor to grid
        ([0, 5 * H], {"start_ms": 2 * H, "end_ms": 3 * H}, [(2 * H, 3 * H)]),  # window inside a gap
        ([0, H], {"start_ms": 3 * H, "end_ms": 2 * H}, []),  # empty window
        ([], {"start_ms": 0, "end_ms": 2 * H}, [(0, 2 * H)]),
        ([], {}, []),
        ([], {"start_ms": 0}, []),
        ([0, H + 7, 2 * H], {}, [(H, H)]),  # off-grid rows are validate's business
        ([2 * H, 0, 0, 4 * H], {}, [(H, H), (3 * H, 3 * H)]),  # order and duplicates do not matter
    ],
)
def test_find_gaps(timestamps: list[int], bounds: dict[str, int], expected: list[tuple[int, int]]) -> None:
    assert ohlcv.find_gaps(frame_at(*timestamps), "1h", **bounds) == expected


@pytest.mark.parametrize(
    ("known", "expected"),
    [
        (gaps_frame((3 * H, 3 * H)), [(2 * H, 2 * H), (4 * H, 4 * H)]),
        (gaps_frame((2 * H, 4 * H)), []),
        (gaps_frame((0, 10 * H)), []),
        (gaps_frame((H, 2 * H), (4 * H, 4 * H)), [(3 * H, 3 * H)]),
        (gaps_frame((3 * H - 1, 3 * H + 1)), [(2 * H, 2 * H), (4 * H, 4 * H)]),  # off-grid bounds
        (gaps_frame((7 * H, 8 * H)), [(2 * H, 4 * H)]),  # elsewhere
        (ohlcv.empty_gaps(), [(2 * H, 4 * H)]),
        (None, [(2 * H, 4 * H)]),
    ],
)
def test_find_gaps_leaves_out_known_gaps(known: pd.DataFrame | None, expected: list[tuple[int, int]]) -> None:
    candles = frame_at(0, H, 5 * H, 6 * H)
    assert ohlcv.find_gaps(candles, "1h", known_gaps=known) == expected


def test_find_gaps_on_a_daily_grid() -> None:
    candles = frame_at(0, 3 * DAY)
    assert ohlcv.find_gaps(candles, "1d", end_ms=5 * DAY - 1) == [(DAY, 2 * DAY), (4 * DAY, 4 * DAY)]


# --- merge_gaps ---------------------------------------------------------------------------------


def test_merge_gaps_unions_and_sorts_ranges() -> None:
    merged = ohlcv.merge_gaps(gaps_frame((5 * H, 6 * H)), [(0, H), (H, 2 * H), (9 * H, 9 * H)])
    pd.testing.assert_frame_equal(merged, gaps_frame((0, 2 * H), (5 * H, 6 * H), (9 * H, 9 * H)))
    assert {name: str(dtype) for name, dtype in merged.dtypes.items()} == {
        "start_ms": "int64",
        "end_ms": "int64",
    }


def test_merge_gaps_joins_neighbouring_candles_only_when_given_the_timeframe() -> None:
    assert len(ohlcv.merge_gaps(None, [(0, H), (2 * H, 2 * H)])) == 2
    merged = ohlcv.merge_gaps(None, [(0, H), (2 * H, 2 * H)], timeframe="1h")
    pd.testing.assert_frame_equal(merged, gaps_frame((0, 2 * H)))


def test_merge_gaps_is_idempotent_and_empty_is_empty() -> None:
    once = ohlcv.merge_gaps(None, [(3 * H, 4 * H), (0, 0)])
    pd.testing.assert_frame_equal(once, gaps_frame((0, 0), (3 * H, 4 * H)))
    pd.testing.assert_frame_equal(ohlcv.merge_gaps(once, [(0, 0), (3 * H, 3 * H)]), once)
    pd.testing.assert_frame_equal(ohlcv.merge_gaps(None, []), ohlcv.empty_gaps())


def test_merge_gaps_rejects_a_backwards_range() -> None:
    with pytest.raises(DataError):
        ohlcv.merge_gaps(None, [(2 * H, H)])


# --- merge / conflicts --------------------------------------------------------------------------


def test_merge_unions_sorts_and_keeps_the_stored_candle() -> None:
    stored = ohlcv.to_frame([flat(0), flat(H, 200.0)])
    new = ohlcv.to_frame([flat(2 * H), flat(H, 300.0)])
    merged = ohlcv.merge(stored, new)
    pd.testing.assert_frame_equal(merged, ohlcv.to_frame([flat(0), flat(H, 200.0), flat(2 * H)]))
    assert ohlcv.conflicting_timestamps(stored, new) == [H]


def test_conflicting_timestamps_ignores_equal_candles_and_treats_nan_as_equal() -> None:
    nan_row = [H, 1, 2, 0.5, 1, float("nan")]
    stored = ohlcv.to_frame([flat(0), nan_row, flat(2 * H)])
    new = ohlcv.to_frame([flat(0), nan_row, [2 * H, 100, 101, 99, 100, 5.5], flat(3 * H)])
    assert ohlcv.conflicting_timestamps(stored, new) == [2 * H]
    assert ohlcv.conflicting_timestamps(stored, stored) == []


def test_merge_is_idempotent_and_handles_empty_sides() -> None:
    candles = frame_at(0, H, 2 * H)
    pd.testing.assert_frame_equal(ohlcv.merge(candles, candles), candles)
    pd.testing.assert_frame_equal(ohlcv.merge(ohlcv.empty_frame(), frame_at(2 * H, 0)), frame_at(0, 2 * H))
    pd.testing.assert_frame_equal(ohlcv.merge(candles, ohlcv.empty_frame()), candles)
    pd.testing.assert_frame_equal(ohlcv.merge(ohlcv.empty_frame(), ohlcv.empty_frame()), ohlcv.empty_frame())


def test_merge_is_associative_for_non_conflicting_inputs() -> None:
    first, second, third = frame_at(0, 2 * H), frame_at(H, 2 * H, 5 * H), frame_at(3 * H, 0, 4 * H)
    left = ohlcv.merge(ohlcv.merge(first, second), third)
    right = ohlcv.merge(first, ohlcv.merge(second, third))
    pd.testing.assert_frame_equal(left, right)
    assert left["timestamp"].tolist() == [0, H, 2 * H, 3 * H, 4 * H, 5 * H]


# --- next_since_ms ------------------------------------------------------------------------------


def test_next_since_ms_continues_after_the_last_stored_candle() -> None:
    assert ohlcv.next_since_ms(frame_at(0, H, 2 * H), "1h", backfill_start_ms=0) == 3 * H
    assert ohlcv.next_since_ms(frame_at(2 * H, 0), "1h", backfill_start_ms=0) == 3 * H


@pytest.mark.parametrize("stored", [None, ohlcv.empty_frame()])
def test_next_since_ms_floors_the_backfill_start_when_nothing_is_stored(stored: pd.DataFrame | None) -> None:
    assert ohlcv.next_since_ms(stored, "1h", backfill_start_ms=5 * H + 123) == 5 * H
    assert ohlcv.next_since_ms(stored, "1d", backfill_start_ms=DAY + 5 * H) == DAY


# --- resample -----------------------------------------------------------------------------------


def test_resample_aggregates_complete_target_candles_only() -> None:
    hourly = ohlcv.to_frame(
        [
            [0, 10, 12, 9, 11, 1],
            [H, 11, 15, 10, 14, 2],
            [2 * H, 14, 14, 8, 9, 3],
            [3 * H, 9, 10, 7, 8, 4],
            [4 * H, 8, 9, 8, 9, 5],  # its 2h period is not complete
        ]
    )
    expected = ohlcv.to_frame([[0, 10, 15, 9, 14, 3], [2 * H, 14, 14, 7, 8, 7]])
    pd.testing.assert_frame_equal(ohlcv.resample(hourly, "1h", "2h"), expected)
    pd.testing.assert_frame_equal(ohlcv.resample(hourly, "1h", "1h"), hourly)


def test_resample_with_allow_gaps_keeps_ended_periods_with_missing_candles() -> None:
    hourly = ohlcv.to_frame([[0, 10, 12, 9, 11, 1], [2 * H, 11, 13, 10, 12, 2], [3 * H, 12, 14, 11, 13, 3]])
    three_hourly = ohlcv.resample(hourly, "1h", "3h")
    assert three_hourly.empty  # 00-03 misses 01:00; 03-06 has not ended
    pd.testing.assert_frame_equal(
        ohlcv.resample(hourly, "1h", "3h", allow_gaps=True), ohlcv.to_frame([[0, 10, 13, 9, 12, 3]])
    )


@pytest.mark.parametrize(("source", "target"), [("1h", "30m"), ("2h", "3h")])
def test_resample_rejects_targets_that_are_not_a_multiple(source: str, target: str) -> None:
    with pytest.raises(ConfigError):
        ohlcv.resample(frame_at(0), source, target)


# --- real data ----------------------------------------------------------------------------------

# README "Known gaps and quirks": Binance maintenance windows (UTC start hour, missing hourly bars).
BTC_1H_MAINTENANCE = [
    ("2020-02-09 02", 1), ("2020-02-19 12", 5), ("2020-03-04 10", 1), ("2020-04-25 02", 2),
    ("2020-06-28 02", 3), ("2020-11-30 06", 1), ("2020-12-21 14", 4), ("2020-12-25 02", 1),
    ("2021-02-11 04", 1), ("2021-03-06 02", 1), ("2021-04-20 02", 2), ("2021-04-25 05", 3),
    ("2021-08-13 02", 4), ("2021-09-29 07", 2), ("2023-03-24 13", 1),
]  # fmt: skip


def _ms(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.realdata
@pytest.mark.parametrize("timeframe", ["1d", "1h"])
def test_every_shared_market_file_has_no_fatal_problem(shared_data_dir: Path, timeframe: str) -> None:
    paths = sorted((shared_data_dir / "market" / timeframe).glob("*.parquet"))
    assert paths, f"no {timeframe} files"
    fatal = {}
    for path in paths:
        problems = ohlcv.validate(pd.read_parquet(path), timeframe, max_jump_frac=0.5)
        if any(ohlcv.is_fatal(problem) for problem in problems):
            fatal[path.name] = ohlcv.describe_problems([p for p in problems if ohlcv.is_fatal(p)])
    assert fatal == {}


@pytest.mark.realdata
def test_btc_hourly_gaps_are_exactly_the_documented_maintenance_windows(shared_data_dir: Path) -> None:
    candles = pd.read_parquet(shared_data_dir / "market" / "1h" / "BTC-USDT.parquet")
    expected = [(_ms(start), _ms(start) + (bars - 1) * H) for start, bars in BTC_1H_MAINTENANCE]
    gaps = ohlcv.find_gaps(candles, "1h")
    assert gaps == expected
    assert sum((end - start) // H + 1 for start, end in gaps) == 32
    known = ohlcv.merge_gaps(None, gaps, timeframe="1h")
    assert ohlcv.find_gaps(candles, "1h", known_gaps=known) == []


@pytest.mark.realdata
def test_btc_hourly_resampled_reproduces_the_daily_file(shared_data_dir: Path) -> None:
    hourly = pd.read_parquet(shared_data_dir / "market" / "1h" / "BTC-USDT.parquet")
    daily = pd.read_parquet(shared_data_dir / "market" / "1d" / "BTC-USDT.parquet")
    resampled = ohlcv.resample(hourly, "1h", "1d", allow_gaps=True)
    overlap = daily[daily["timestamp"] >= resampled["timestamp"].iloc[0]].reset_index(drop=True)
    assert len(resampled) == len(overlap) == 1461  # 2020-01-01 .. 2023-12-31
    pd.testing.assert_frame_equal(
        resampled[list(ohlcv.OHLCV_COLUMNS[:5])], overlap[list(ohlcv.OHLCV_COLUMNS[:5])]
    )
    np.testing.assert_allclose(resampled["volume"], overlap["volume"], rtol=1e-9)

"""Unit tests for lib/data/funding.py: tiny funding frames with exact expectations, plus the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.data import funding

H = 3_600_000
SETTLE = 8 * H


def rates_at(*pairs: tuple[int, float]) -> pd.DataFrame:
    return funding.to_funding_frame(list(pairs))


# --- to_funding_frame ---------------------------------------------------------------------------


def test_to_funding_frame_has_exact_columns_dtypes_and_values() -> None:
    frame = funding.to_funding_frame([(0, 0.0001), (SETTLE, -0.00025), (2 * SETTLE, np.float64(0.0))])
    assert tuple(frame.columns) == funding.FUNDING_COLUMNS
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == dict(funding.FUNDING_DTYPES)
    assert frame["timestamp"].tolist() == [0, SETTLE, 2 * SETTLE]
    assert frame["rate"].tolist() == [0.0001, -0.00025, 0.0]


def test_to_funding_frame_of_nothing_is_the_empty_frame() -> None:
    pd.testing.assert_frame_equal(funding.to_funding_frame([]), funding.empty_funding_frame())


def test_to_funding_frame_rounds_late_stamps_to_the_hour_when_asked() -> None:
    rows = [(SETTLE + 7, 0.0001), (2 * SETTLE - 3, 0.0002), (3 * SETTLE, 0.0003)]
    assert funding.to_funding_frame(rows)["timestamp"].tolist() == [SETTLE + 7, 2 * SETTLE - 3, 3 * SETTLE]
    rounded = funding.to_funding_frame(rows, round_to_ms=H)
    assert rounded["timestamp"].tolist() == [SETTLE, 2 * SETTLE, 3 * SETTLE]
    with pytest.raises(ConfigError):
        funding.to_funding_frame(rows, round_to_ms=0)


@pytest.mark.parametrize(
    "row",
    [
        (0,),
        (0, 0.0001, 1),
        (0, None),
        (0, "0.0001"),
        (True, 0.0001),
        (0.5, 0.0001),
        (float("nan"), 0.0001),
        "ab",
        7,
    ],
)
def test_to_funding_frame_rejects_bad_rows(row: object) -> None:
    with pytest.raises(DataError):
        funding.to_funding_frame([(0, 0.0001), row])  # type: ignore[list-item]


# --- validate_funding ---------------------------------------------------------------------------


def test_validate_funding_accepts_a_clean_frame_and_the_exact_bound() -> None:
    frame = rates_at((0, 0.0001), (SETTLE, -0.003), (2 * SETTLE, 0.003))
    assert funding.validate_funding(frame, max_abs_rate=0.003) == []
    assert funding.validate_funding(funding.empty_funding_frame(), max_abs_rate=0.003) == []


T0, T8, T16 = "1970-01-01T00:00Z", "1970-01-01T08:00Z", "1970-01-01T16:00Z"
BAD_FUNDING = [
    ("duplicate", [(0, 1e-4), (0, 1e-4)], [f"1 duplicate funding time(s) at {T0}"]),
    ("unsorted", [(SETTLE, 1e-4), (0, 1e-4)], [f"1 funding time(s) earlier than the previous row's at {T0}"]),
    (
        "non-finite",
        [(0, float("nan")), (SETTLE, float("inf"))],
        [f"2 non-finite funding rate(s) at {T0}, {T8}"],
    ),
    ("beyond bound", [(0, 0.02), (SETTLE, -0.0101)], [f"2 funding rate(s) beyond ±0.01 at {T0}, {T8}"]),
    (
        "many listed briefly",
        [(i * SETTLE, 0.5) for i in range(5)],
        [f"5 funding rate(s) beyond ±0.01 at {T0}, {T8}, {T16} (+2 more)"],
    ),
]


@pytest.mark.parametrize(("pairs", "expected"), [c[1:] for c in BAD_FUNDING], ids=[c[0] for c in BAD_FUNDING])
def test_validate_funding_reports_each_problem_kind(
    pairs: list[tuple[int, float]], expected: list[str]
) -> None:
    assert funding.validate_funding(rates_at(*pairs), max_abs_rate=0.01) == expected


def test_validate_funding_reports_every_kind_at_once() -> None:
    frame = rates_at((SETTLE, 0.0001), (SETTLE, float("nan")), (0, 0.9))
    problems = funding.validate_funding(frame, max_abs_rate=0.01)
    assert [problem.split(" at ")[0] for problem in problems] == [
        "1 duplicate funding time(s)",
        "1 funding time(s) earlier than the previous row's",
        "1 non-finite funding rate(s)",
        "1 funding rate(s) beyond ±0.01",
    ]


def test_validate_funding_refuses_the_wrong_schema() -> None:
    frame = rates_at((0, 0.0001))
    with pytest.raises(DataError):
        funding.validate_funding(frame.rename(columns={"rate": "fundingRate"}), max_abs_rate=0.01)
    with pytest.raises(DataError):
        funding.validate_funding(frame.astype({"timestamp": "float64"}), max_abs_rate=0.01)


# --- merge_funding / next_funding_since_ms ------------------------------------------------------


def test_merge_funding_unions_sorts_and_keeps_the_stored_rate() -> None:
    stored = rates_at((0, 0.0001), (SETTLE, 0.0002))
    new = rates_at((2 * SETTLE, 0.0003), (SETTLE, 0.0009))
    pd.testing.assert_frame_equal(
        funding.merge_funding(stored, new), rates_at((0, 0.0001), (SETTLE, 0.0002), (2 * SETTLE, 0.0003))
    )


def test_merge_funding_is_idempotent_and_associative_and_handles_empty_sides() -> None:
    first, second, third = (
        rates_at((0, 1e-4)),
        rates_at((2 * SETTLE, 3e-4), (0, 1e-4)),
        rates_at((SETTLE, 2e-4)),
    )
    pd.testing.assert_frame_equal(
        funding.merge_funding(funding.merge_funding(first, second), third),
        funding.merge_funding(first, funding.merge_funding(second, third)),
    )
    empty = funding.empty_funding_frame()
    pd.testing.assert_frame_equal(
        funding.merge_funding(empty, second), rates_at((0, 1e-4), (2 * SETTLE, 3e-4))
    )
    pd.testing.assert_frame_equal(funding.merge_funding(empty, empty), empty)
    merged = funding.merge_funding(first, second)
    pd.testing.assert_frame_equal(funding.merge_funding(merged, merged), merged)


def test_next_funding_since_ms() -> None:
    assert (
        funding.next_funding_since_ms(rates_at((SETTLE, 1e-4), (0, 1e-4)), backfill_start_ms=0) == SETTLE + 1
    )
    assert funding.next_funding_since_ms(None, backfill_start_ms=123) == 123
    assert funding.next_funding_since_ms(funding.empty_funding_frame(), backfill_start_ms=123) == 123


# --- real data ----------------------------------------------------------------------------------


@pytest.mark.realdata
def test_every_shared_funding_file_validates(shared_data_dir: Path) -> None:
    paths = sorted((shared_data_dir / "funding").glob("*.parquet"))
    assert paths, "no funding files"
    problems = {
        path.name: funding.validate_funding(pd.read_parquet(path), max_abs_rate=0.05) for path in paths
    }
    assert problems == {path.name: [] for path in paths}
    btc = pd.read_parquet(shared_data_dir / "funding" / "BTC-USDT.parquet")
    assert funding.next_funding_since_ms(btc, backfill_start_ms=0) == int(btc["timestamp"].iloc[-1]) + 1

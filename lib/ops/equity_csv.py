"""Pure: state/equity.csv, the daily report's history: its row, its layout (floats in repr: an exact round trip;
NaN as an empty field), parsing with a torn last line left out, and appending a row only when it is new."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from lib.core.errors import StateError
from lib.core.line_files import split_lines
from lib.core.timeframes import format_ms

EQUITY_COLUMNS = ("time_ms", "time_iso", "equity_quote", "btc_benchmark_quote", "basket_benchmark_quote",
                  "fees_paid_quote", "exposure_gross_frac")
"""state/equity.csv columns: report time (epoch ms UTC and ISO), marked equity, what the inception equity
would be worth held in BTC / in an equal-weight basket of the universe, fees paid since inception, gross
exposure as a fraction of equity. An unknown value (no benchmark prices) is an empty field."""

@dataclass(frozen=True, slots=True, kw_only=True)
class EquityRow:
    time_ms: int
    equity_quote: float
    btc_benchmark_quote: float
    basket_benchmark_quote: float
    fees_paid_quote: float
    exposure_gross_frac: float


def to_equity_csv_header() -> str:
    return ",".join(EQUITY_COLUMNS)


def to_equity_csv_line(row: EquityRow) -> str:
    """One CSV line (no newline); floats in repr (exact round trip), NaN as an empty field."""
    def number(value: float) -> str:
        return repr(float(value)) if math.isfinite(value) else ""

    iso = format_ms(row.time_ms, seconds=True)
    numbers = (row.equity_quote, row.btc_benchmark_quote, row.basket_benchmark_quote, row.fees_paid_quote,
               row.exposure_gross_frac)
    return ",".join([str(row.time_ms), iso, *(number(value) for value in numbers)])


def parse_equity_csv(text: str) -> tuple[pd.DataFrame, bool]:
    """equity.csv text -> (frame with EQUITY_COLUMNS, whether the final line was torn and left out).

    Raises:
        StateError: wrong header, a malformed row, or times that do not increase.
    """
    body, tail = split_lines(text)
    torn = tail != ""
    if not body:
        return empty_history(), torn
    if body[0] != to_equity_csv_header():
        raise StateError(f"equity.csv header is {body[0]!r}, expected {to_equity_csv_header()!r}")
    rows = []
    for number, line in enumerate(body[1:], start=2):
        fields = line.split(",")
        try:
            if len(fields) != len(EQUITY_COLUMNS):
                raise ValueError(f"{len(fields)} fields")
            rows.append((int(fields[0]), fields[1], *(float(f) if f else math.nan for f in fields[2:])))
        except ValueError as error:
            raise StateError(f"equity.csv line {number} is malformed ({error}): {line[:120]!r}") from None
    history = _history_frame(rows)
    if not history["time_ms"].is_monotonic_increasing or history["time_ms"].duplicated().any():
        raise StateError("equity.csv times are not strictly increasing; fix or move the file aside")
    return history, torn


def empty_history() -> pd.DataFrame:
    return _history_frame([])


def _history_frame(rows: Sequence[tuple[object, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(EQUITY_COLUMNS))
    return frame.astype({column: "float64" for column in EQUITY_COLUMNS[2:]} | {"time_ms": "int64",
                                                                                "time_iso": "object"})


def is_new_row(history: pd.DataFrame, time_ms: int, *, past_ok: bool = True) -> bool:
    """False when the history already reaches ``time_ms`` (a re-run at the same or, with ``past_ok``, an earlier
    time: an --as-of replay).

    Raises:
        StateError: without ``past_ok`` (the wall clock), a row later than ``time_ms``: a clock that ran ahead
            would otherwise stop every append until that time, silently.
    """
    last_ms = None if history.empty else int(history["time_ms"].iloc[-1])
    if last_ms is not None and last_ms > time_ms and not past_ok:
        raise StateError(f"equity.csv's last row ({last_ms} ms) is after this run ({time_ms} ms): a clock that ran "
                         "ahead wrote it. Move equity.csv aside or delete the rows from the future, then re-run")
    return last_ms is None or last_ms < time_ms


def append_row(history: pd.DataFrame, row: EquityRow) -> pd.DataFrame:
    """The history as it reads after appending ``row`` (unchanged when ``row`` is not new)."""
    if not is_new_row(history, row.time_ms):
        return history
    added, _ = parse_equity_csv(f"{to_equity_csv_header()}\n{to_equity_csv_line(row)}\n")
    rows = [*history.itertuples(index=False, name=None), *added.itertuples(index=False, name=None)]
    return _history_frame(rows)

"""read_live_candles: a live run's notes name the price jumps its decision meets, not every jump in the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lib.core import storage
from lib.core.timeframes import MS_PER_DAY
from lib.data.stored import read_live_candles

NO_DECISIONS: dict[str, set[int]] = {"confirm": set(), "reject": set()}


def _write(path: Path, closes: list[float]) -> Path:
    close = np.array(closes, dtype=float)
    storage.write_parquet_atomic(path, pd.DataFrame({
        "timestamp": np.arange(len(close), dtype=np.int64) * MS_PER_DAY, "open": close, "high": close,
        "low": close, "close": close, "volume": np.ones(len(close))}))
    return path


def _read(path: Path, closes: list[float], **kwargs: int):  # type: ignore[no-untyped-def]
    last = (len(closes) - 1) * MS_PER_DAY
    return read_live_candles(_write(path, closes), "BTC/USDT", "1d", closed_until_ms=kwargs.get("until", last),
                             keep_from_ms=0, max_jump_frac=0.5, confirm_bars=2, decided=NO_DECISIONS)


def test_old_confirmed_jumps_are_no_note_and_the_candles_are_unchanged(tmp_path: Path) -> None:
    # +100 % at day 2 and -50.5 % at day 12 (200 -> 99), each confirmed by the next 2 candles, 10+ candles ago;
    # the quarantine's window is the last 2 * 2 + 2 = 6 candles
    closes = [100.0, 100.0, 200.0, 201, 202, 203, 204, 205, 206, 207, 208, 200, 99, 98, 97] + [97.0] * 8
    checked = _read(tmp_path / "BTC-USDT.parquet", closes)
    assert checked.notes == () and checked.cut_at_ms is None
    assert list(checked.candles["close"]) == closes  # both moves used: they are market history


def test_a_pending_jump_is_still_noted_and_cuts_the_series(tmp_path: Path) -> None:
    closes = [100.0, 100.0, 200.0, 201, 202, 203, 204, 205, 206, 207, 208, 200, 99, 98, 97] + [97.0] * 8 + [300.0]
    checked = _read(tmp_path / "BTC-USDT.parquet", closes)
    assert len(checked.notes) == 1 and "BTC/USDT jump at" in checked.notes[0] and "QUARANTINED" in checked.notes[0]
    assert checked.cut_at_ms == 23 * MS_PER_DAY and list(checked.candles["close"]) == closes[:-1]


def test_a_jump_after_the_run_s_bar_is_no_note(tmp_path: Path) -> None:
    # an --as-of run at day 5 must not speak of the file's later candles (a jump at day 7)
    checked = _read(tmp_path / "BTC-USDT.parquet", [100.0] * 7 + [300.0, 300.0, 300.0], until=5 * MS_PER_DAY)
    assert checked.notes == () and checked.cut_at_ms is None and len(checked.candles) == 6

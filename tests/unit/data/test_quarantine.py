"""Quarantine of kept price jumps: hand-built closes, each decision computed by hand (J = 0.5, N = 2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import StateError
from lib.core.timeframes import MS_PER_DAY
from lib.data.quarantine import apply_quarantine, parse_decisions


def _daily(closes: list[float]) -> pd.DataFrame:
    close = np.array(closes, dtype=float)
    return pd.DataFrame({"timestamp": np.arange(len(close), dtype=np.int64) * MS_PER_DAY, "open": close,
                         "high": close, "low": close, "close": close, "volume": np.ones(len(close))})


def _run(closes: list[float], **kwargs: object):
    return apply_quarantine(_daily(closes), symbol="BTC/USDT", max_jump_frac=0.5, confirm_bars=2,
                            **kwargs)  # type: ignore[arg-type]


def test_no_jump_leaves_the_series_as_it_is():
    result = _run([100, 101, 140, 100])  # +38.6 %, -28.6 %: within ±50 %
    assert result.cut_at_ms is None and result.notes == () and len(result.candles) == 4


def test_an_undecided_up_print_cuts_the_series_before_it():
    result = _run([100, 101, 222, 102])  # 222/101 - 1 = +119.8 %; only 1 of 2 later candles so far
    assert result.cut_at_ms == 2 * MS_PER_DAY
    assert list(result.candles["close"]) == [100, 101]
    assert "QUARANTINED until 2 later candle(s) confirm it (1 so far)" in result.notes[0]


def test_a_print_the_market_went_back_from_is_left_out():
    # later 102: |ln(102/222)| = 0.778 > |ln(102/101)| = 0.0099; 103 likewise: refuted
    result = _run([100, 101, 222, 102, 103])
    assert result.cut_at_ms is None
    assert list(result.candles["close"]) == [100, 101, 102, 103]
    assert "refuted by the next 2 candle(s)" in result.notes[0]


def test_a_bad_down_print_is_left_out_too():
    result = _run([100, 101, 40, 100, 102])  # 40/101 - 1 = -60.4 %
    assert list(result.candles["close"]) == [100, 101, 100, 102]


def test_a_move_that_holds_is_confirmed_and_used():
    result = _run([100, 101, 222, 220, 225])
    assert result.cut_at_ms is None and len(result.candles) == 5
    assert "confirmed by the next 2 candle(s): used" in result.notes[0]


def test_mixed_later_candles_need_a_person():
    result = _run([100, 101, 222, 220, 101])  # 220 nearer the jump, 101 nearer the trusted close
    assert result.cut_at_ms == 2 * MS_PER_DAY and len(result.candles) == 2
    assert "neither confirm nor refute" in result.notes[0]


def test_an_old_mixed_jump_is_history_not_a_permanent_cut():
    """A real volatile move (like BNB 2018-01-06 on Binance) must not cut a series forever: 6 candles later it is
    used. The jump at index 2 is mixed; the window is the last 2 * 2 + 2 = 6 candles, i.e. indexes 5..10."""
    result = _run([100, 101, 222, 220, 101, 100, 100, 100, 100, 100, 100])
    assert result.cut_at_ms is None and len(result.candles) == 11
    recent = _run([100, 101, 222, 220, 101, 100, 100])  # index 2 is within the last 6: still a person's call
    assert recent.cut_at_ms == 2 * MS_PER_DAY and "else it is used once 6 candles old" in recent.notes[0]


@pytest.mark.parametrize(("decision", "closes"), [("confirmed", [100, 101, 222]), ("rejected", [100, 101])])
def test_a_person_decides_a_pending_jump(decision: str, closes: list[float]):
    result = _run([100, 101, 222], **{decision: {2 * MS_PER_DAY}})
    assert result.cut_at_ms is None and list(result.candles["close"]) == closes


def test_the_future_cannot_confirm_a_past_jump():
    """Truncating later candles turns a confirmed jump back into a pending one (no look-ahead)."""
    full = _run([100, 101, 222, 220, 225])
    cut = _run([100, 101, 222, 220])
    assert full.cut_at_ms is None and cut.cut_at_ms == 2 * MS_PER_DAY


def test_decisions_file_is_parsed_strictly():
    raw = {"schema_version": 1, "decisions": [
        {"symbol": "BTC/USDT", "timeframe": "1d", "open_ms": 5, "decision": "confirm"},
        {"symbol": "BTC/USDT", "timeframe": "1d", "open_ms": 7, "decision": "reject"}]}
    assert parse_decisions(raw) == {("BTC/USDT", "1d"): {"confirm": {5}, "reject": {7}}}
    assert parse_decisions(None) == {}
    with pytest.raises(StateError):
        parse_decisions({"schema_version": 1, "decisions": [{"symbol": "BTC/USDT", "decision": "maybe"}]})
    with pytest.raises(StateError):
        parse_decisions({"schema_version": 2, "decisions": []})


@pytest.mark.realdata
def test_real_binance_history_is_never_cut(shared_data_dir):
    """Real moves beyond ±50 % (BNB 2018, DOGE 2020, UNI +99 %, ...) are confirmed or age into history: no series of
    the 25 daily/hourly Binance coins is cut; measured: only EOS 2021-05-11 (+56.6 %, back the next day) is left
    out as a print."""
    left_out = {}
    for path in sorted((shared_data_dir / "market" / "1d").glob("*.parquet")):
        candles = pd.read_parquet(path)[["timestamp", "open", "high", "low", "close", "volume"]]
        result = apply_quarantine(candles, symbol=path.stem, max_jump_frac=0.5, confirm_bars=2)
        assert result.cut_at_ms is None, (path.stem, result.notes)
        if len(result.candles) != len(candles):
            left_out[path.stem] = len(candles) - len(result.candles)
    assert left_out == {"EOS-USDT": 1}

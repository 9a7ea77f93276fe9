"""select_fresh_candles: the live staleness gate; one late symbol is held, it does not move the book back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import DataError
from lib.core.timeframes import MS_PER_DAY
from lib.research.freshness import select_fresh_candles


def _candles(timestamps: list[int], closes: list[float]) -> pd.DataFrame:
    close = np.array(closes)
    return pd.DataFrame({"timestamp": np.array(timestamps, dtype=np.int64), "open": close, "high": close * 1.01,
                         "low": close * 0.99, "close": close, "volume": np.full(len(close), 10.0)})


# -- select_fresh_candles -----------------------------------------------------------------------------

NOW_MS = 10 * MS_PER_DAY + 5 * 60_000  # 00:05 on day 10: the last closed daily candle opens on day 9


def _daily(first_day: int, last_day: int) -> pd.DataFrame:
    days = list(range(first_day, last_day + 1))
    return _candles([day * MS_PER_DAY for day in days], [100.0 + day for day in days])


def _fresh(candles: dict[str, pd.DataFrame], **overrides: object):
    arguments: dict[str, object] = {
        "now_ms": NOW_MS,
        "timeframe": "1d",
        "max_staleness_bars": 2,
        "benchmark": "BTC/USDT",
    }
    arguments.update(overrides)
    return select_fresh_candles(candles, **arguments)  # type: ignore[arg-type]


def test_fresh_data_are_used_up_to_the_last_closed_candle_and_the_future_is_dropped():
    candles = {"BTC/USDT": _daily(0, 12), "ETH/USDT": _daily(3, 9), "SOL/USDT": _daily(0, 9)}
    fresh = _fresh(candles)
    assert fresh.as_of_ms == 9 * MS_PER_DAY
    assert fresh.stale == {} and fresh.notes == ()
    assert {symbol: len(frame) for symbol, frame in fresh.candles.items()} == {
        "BTC/USDT": 10,
        "ETH/USDT": 7,
        "SOL/USDT": 10,
    }
    assert int(fresh.candles["BTC/USDT"]["timestamp"].iloc[-1]) == 9 * MS_PER_DAY


def test_a_stale_symbol_keeps_its_history_and_gets_a_note():
    candles = {"BTC/USDT": _daily(0, 9), "ETH/USDT": _daily(0, 9), "SOL/USDT": _daily(0, 6)}
    fresh = _fresh(candles)
    assert fresh.as_of_ms == 9 * MS_PER_DAY
    assert fresh.stale == {"SOL/USDT": 6 * MS_PER_DAY} and fresh.late == {}
    assert len(fresh.candles["SOL/USDT"]) == 7
    assert len(fresh.notes) == 1 and fresh.notes[0].startswith(
        "stale, weight 0: SOL/USDT last candle 1970-01-07"
    )


def test_one_late_symbol_does_not_move_the_book_back_it_is_held():
    candles = {"BTC/USDT": _daily(0, 9), "ETH/USDT": _daily(0, 8), "SOL/USDT": _daily(0, 9)}
    fresh = _fresh(candles)
    assert fresh.as_of_ms == 9 * MS_PER_DAY and fresh.stale == {}  # the fresh majority's bar, not ETH's
    assert fresh.late == {"ETH/USDT": 8 * MS_PER_DAY}
    assert int(fresh.candles["ETH/USDT"]["timestamp"].iloc[-1]) == 8 * MS_PER_DAY
    assert int(fresh.candles["SOL/USDT"]["timestamp"].iloc[-1]) == 9 * MS_PER_DAY
    assert fresh.notes == ("late, held (not traded this run): ETH/USDT last candle 1970-01-09T00:00Z, the book "
                           "is decided at 1970-01-10T00:00Z",)


def test_a_late_benchmark_is_held_and_its_regime_carried():
    fresh = _fresh({"BTC/USDT": _daily(0, 8), "ETH/USDT": _daily(0, 9), "SOL/USDT": _daily(0, 9)})
    assert fresh.as_of_ms == 9 * MS_PER_DAY and fresh.late == {"BTC/USDT": 8 * MS_PER_DAY}
    assert "the regime is carried from its last candle" in fresh.notes[0]


def test_when_most_symbols_lag_the_book_waits_for_them():
    fresh = _fresh({"BTC/USDT": _daily(0, 8), "ETH/USDT": _daily(0, 8), "SOL/USDT": _daily(0, 9)})
    assert fresh.as_of_ms == 8 * MS_PER_DAY and fresh.late == {}
    assert all(int(frame["timestamp"].iloc[-1]) == 8 * MS_PER_DAY for frame in fresh.candles.values())
    assert "1 bar(s) before the last closed candle" in fresh.notes[-1]


def test_a_symbol_listed_after_as_of_is_stale_without_candles():
    fresh = _fresh({"BTC/USDT": _daily(0, 9), "ETH/USDT": _daily(0, 9), "NEW/USDT": _daily(11, 12)})
    assert fresh.stale == {"NEW/USDT": None}
    assert set(fresh.candles) == {"BTC/USDT", "ETH/USDT"}


@pytest.mark.parametrize(
    "candles, message",
    [
        (
            {"BTC/USDT": _daily(0, 6), "ETH/USDT": _daily(0, 9)},
            "stale benchmark: BTC/USDT last candle 1970-01-07",
        ),
        ({"ETH/USDT": _daily(0, 9)}, "stale benchmark: BTC/USDT not loaded"),
        (
            {"BTC/USDT": _daily(11, 12), "ETH/USDT": _daily(0, 9)},
            "stale benchmark: BTC/USDT last candle none",
        ),
        (
            {"BTC/USDT": _daily(0, 9), "ETH/USDT": _daily(0, 5), "SOL/USDT": _daily(0, 6)},
            "stale prices: 2 of 3 symbols",
        ),
    ],
    ids=["benchmark_stale", "benchmark_absent", "benchmark_not_listed_yet", "most_stale"],
)
def test_stale_data_fail_closed(candles, message):
    with pytest.raises(DataError, match=message):
        _fresh(candles)


def test_half_stale_is_still_usable_and_the_limit_is_inclusive():
    candles = {
        "BTC/USDT": _daily(0, 7),
        "ETH/USDT": _daily(0, 4),
        "SOL/USDT": _daily(0, 9),
        "ADA/USDT": _daily(0, 3),
    }
    fresh = _fresh(candles)  # BTC is exactly 2 bars old: fresh
    assert set(fresh.stale) == {"ETH/USDT", "ADA/USDT"} and fresh.as_of_ms == 7 * MS_PER_DAY
    with pytest.raises(DataError, match="stale benchmark"):
        _fresh(candles, max_staleness_bars=1)


def test_series_cut_before_a_quarantined_jump_do_not_move_the_book_back():
    # ETH and SOL were cut before an undecided jump on day 9 (lib.data.quarantine): they are held for that, and
    # their cut end is no late data: BTC and ADA, which have day 9, are decided at day 9, not at day 8
    candles = {"BTC/USDT": _daily(0, 9), "ETH/USDT": _daily(0, 8), "SOL/USDT": _daily(0, 8), "ADA/USDT": _daily(0, 9)}
    fresh = _fresh(candles, cut={"ETH/USDT", "SOL/USDT"})
    assert fresh.as_of_ms == 9 * MS_PER_DAY and fresh.stale == {}
    assert fresh.late == {"ETH/USDT": 8 * MS_PER_DAY, "SOL/USDT": 8 * MS_PER_DAY}
    assert int(fresh.candles["ADA/USDT"]["timestamp"].iloc[-1]) == 9 * MS_PER_DAY
    assert _fresh(candles).as_of_ms == 8 * MS_PER_DAY  # the same files without the cut: late data, the book waits


def test_when_every_fresh_series_is_cut_they_still_decide_the_bar():
    candles = {"BTC/USDT": _daily(0, 8), "ETH/USDT": _daily(0, 9), "SOL/USDT": _daily(0, 6)}
    fresh = _fresh(candles, cut={"BTC/USDT", "ETH/USDT"})  # SOL is stale: no voter left but the cut ones
    assert fresh.as_of_ms == 8 * MS_PER_DAY and fresh.late == {} and fresh.stale == {"SOL/USDT": 6 * MS_PER_DAY}


def test_a_benchmark_stale_because_its_series_was_cut_says_a_person_must_decide_the_jump():
    # a mixed jump stays undecided: the cut benchmark grows stale and the run fails closed; "run fetch_prices"
    # cannot help, the alert must send the person to scripts.confirm_jump
    candles = {"BTC/USDT": _daily(0, 6), "ETH/USDT": _daily(0, 9)}
    with pytest.raises(DataError, match=r"stale benchmark: BTC/USDT last candle 1970-01-07T00:00Z, cut before "
                                        r"a quarantined price jump: a person decides it \(scripts.confirm_jump\)"):
        _fresh(candles, cut={"BTC/USDT"})

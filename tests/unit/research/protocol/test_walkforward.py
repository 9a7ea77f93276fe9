"""Calendar walk-forward: windows in days/months, purge + embargo gap, no test day in train, choices
made on train rows only (changing the future never changes a past choice)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.research.protocol.walkforward import CalendarLayout, best_column, calendar_windows, parse_span, walk_forward
from tests.unit.research.protocol.helpers import days, noise


def test_spans_are_calendar_days_or_months() -> None:
    assert pd.Timestamp("2020-01-31") + parse_span("1M") == pd.Timestamp("2020-02-29")
    assert pd.Timestamp("2020-01-01") + parse_span("730D") == pd.Timestamp("2021-12-31")
    with pytest.raises(ConfigError):
        parse_span("730 bars")


def test_windows_by_hand() -> None:
    # 30 days from 2019-01-01; train 10D, test 7D, purge 1 + embargo 2 -> gap 3 days
    layout = CalendarLayout(train="10D", test="7D", purge_days=1, embargo_days=2)
    windows = calendar_windows(days(30), layout)
    stamp = pd.Timestamp
    first = windows[0]
    assert (first.train_start, first.train_end) == (stamp("2019-01-01", tz="UTC"), stamp("2019-01-10", tz="UTC"))
    assert (first.test_start, first.test_end) == (stamp("2019-01-14", tz="UTC"), stamp("2019-01-20", tz="UTC"))
    second = windows[1]
    assert (second.train_start, second.train_end) == (stamp("2019-01-08", tz="UTC"), stamp("2019-01-17", tz="UTC"))
    assert (second.test_start, second.test_end) == (stamp("2019-01-21", tz="UTC"), stamp("2019-01-27", tz="UTC"))
    last = windows[-1]  # partial: 2019-01-28 .. 2019-01-30 (3 days) is kept
    assert (last.test_start, last.test_end) == (stamp("2019-01-28", tz="UTC"), stamp("2019-01-30", tz="UTC"))
    assert len(windows) == 3


@pytest.mark.parametrize("layout", [
    CalendarLayout(train="60D", test="20D", purge_days=1, embargo_days=5),
    CalendarLayout(train="2M", test="1M", purge_days=2, embargo_days=0, expanding=True),
    CalendarLayout(train="90D", test="30D", purge_days=0, embargo_days=0),
])  # fmt: skip
def test_no_test_day_ever_leaks_into_train(layout: CalendarLayout) -> None:
    index = days(400)
    windows = calendar_windows(index, layout)
    tests_so_far: set[pd.Timestamp] = set()
    for window in windows:
        train = set(index[(index >= window.train_start) & (index <= window.train_end)])
        test = set(index[(index >= window.test_start) & (index <= window.test_end)])
        assert not train & test
        assert (window.test_start - window.train_end).days == layout.purge_days + layout.embargo_days + 1
        assert max(train) < min(test)
        assert not tests_so_far & test  # test windows never overlap
        tests_so_far |= test
    # the test windows tile the rest of the index without holes
    assert sorted(tests_so_far) == list(index[index >= windows[0].test_start])


def test_walk_forward_picks_by_train_and_stitches_test_returns() -> None:
    # c0 earns in the first 60 days, c1 afterwards: the 40-day train before test 1 is all c0-land
    returns = noise(120, 2, seed=0, scale=0.001)
    returns.iloc[:60, 0] += 0.01
    returns.iloc[60:, 1] += 0.01
    outcome = walk_forward(returns, CalendarLayout(train="40D", test="20D", purge_days=1, embargo_days=0))
    assert list(outcome.table["chosen"]) == ["c0", "c0", "c1", "c1"]
    first = outcome.table.iloc[0]
    pd.testing.assert_series_equal(outcome.oos_returns.loc[first.test_start:first.test_end],
                                   returns.loc[first.test_start:first.test_end, "c0"], check_names=False)
    assert outcome.oos_returns.index.is_unique and len(outcome.oos_returns) == 120 - 41


def test_changing_the_future_never_changes_a_past_choice() -> None:
    returns = noise(300, 6, seed=4)
    layout = CalendarLayout(train="60D", test="30D", purge_days=1, embargo_days=3)
    before = walk_forward(returns, layout).table
    for row in before.itertuples():
        scrambled = returns.copy()
        later = scrambled.index > row.train_end
        scrambled.loc[later] = np.random.default_rng(row.window).normal(0, 0.05, (int(later.sum()), 6))
        after = walk_forward(scrambled, layout).table
        assert after.loc[row.window, "chosen"] == row.chosen
        assert after.loc[row.window, "train_score"] == pytest.approx(row.train_score, rel=1e-12)


def test_best_column_rules() -> None:
    scores = pd.Series({"a": 0.1, "b": float("nan"), "c": 0.3, "d": 0.3})
    assert best_column(scores) == "c"
    assert best_column(scores, pd.Series({"a": 1.0, "b": 0.0, "c": 9.0, "d": 2.0})) == "d"
    assert best_column(pd.Series({"a": float("nan"), "b": float("nan")})) == "a"


def test_too_short_or_gappy_data_is_refused() -> None:
    with pytest.raises(DataError):
        walk_forward(noise(50, 2, seed=1), CalendarLayout(train="60D", test="10D"))
    gappy = noise(100, 2, seed=1).drop(index=days(100)[50])
    with pytest.raises(DataError, match="consecutive"):
        walk_forward(gappy, CalendarLayout(train="20D", test="10D"))


def test_an_all_cash_configuration_has_sharpe_zero_and_beats_a_loser() -> None:
    returns = noise(200, 2, seed=9)
    returns["c0"] = 0.0
    returns["c1"] = np.tile([-0.01, 0.005], 100)  # loses 0.25 % a day on average
    outcome = walk_forward(returns, CalendarLayout(train="60D", test="30D"))
    assert set(outcome.table["chosen"]) == {"c0"} and set(outcome.table["train_score"]) == {0.0}

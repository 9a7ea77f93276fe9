"""Cross-sectional sleeves: hand-computed ranks and weights, missing coins, ties, and look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError
from lib.research.xsection import (
    hold_between_rebalances,
    momentum_weights,
    past_return,
    reversal_weights,
    top_n_weights,
)

INDEX = pd.date_range("2021-01-01", periods=5, freq="D")


def panel() -> pd.DataFrame:
    return pd.DataFrame({
        "A": [100.0, 110.0, 121.0, 121.0, 60.0],
        "B": [100.0, 90.0, 81.0, 100.0, 100.0],
        "C": [100.0, 100.0, 130.0, 130.0, 130.0],
        "D": [np.nan, 100.0, 100.0, 200.0, np.nan],
    }, index=INDEX)


def test_past_return_with_skip_by_hand() -> None:
    out = past_return(panel(), lookback=2, skip=1)
    # bar 3: close[2] / close[0] - 1
    assert out.loc[INDEX[3], "A"] == pytest.approx(0.21)
    assert out.loc[INDEX[3], "B"] == pytest.approx(-0.19)
    assert out.loc[INDEX[3], "C"] == pytest.approx(0.30)
    assert np.isnan(out.loc[INDEX[3], "D"])  # close[0] missing
    assert np.isnan(out.loc[INDEX[4], "D"])  # no close at t: not rankable
    assert out.iloc[:2].isna().all().all()


def test_momentum_top_two_by_hand() -> None:
    weights = momentum_weights(panel(), lookback=2, skip=1, top_n=2)
    assert weights.loc[INDEX[3]].tolist() == [0.5, 0.0, 0.5, 0.0]  # C 30 %, A 21 %
    # bar 4: close[3]/close[1]-1: A 10 %, B 11.1 %, C 30 %; D has no close at 4
    assert weights.loc[INDEX[4]].tolist() == [0.0, 0.5, 0.5, 0.0]
    assert (weights.iloc[:3] == 0).all().all()


def test_momentum_only_positive_scores_leaves_cash() -> None:
    scores = pd.DataFrame({"A": [0.2], "B": [-0.1], "C": [0.0]})
    assert top_n_weights(scores, n=3, min_score=0.0).iloc[0].tolist() == pytest.approx([1 / 3, 0.0, 0.0])
    assert top_n_weights(scores, n=3).iloc[0].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])


def test_ties_are_broken_by_column_order() -> None:
    scores = pd.DataFrame({"A": [0.1], "B": [0.3], "C": [0.3]})
    assert top_n_weights(scores, n=1).iloc[0].tolist() == [0.0, 1.0, 0.0]


def test_reversal_buys_the_biggest_losers() -> None:
    weights = reversal_weights(panel(), lookback=1, bottom_n=1)
    # bar 4 one-day returns: A -50.4 %, B 0, C 0; D has no close
    assert weights.loc[INDEX[4]].tolist() == [1.0, 0.0, 0.0, 0.0]
    # bar 1: A +10 %, B -10 %, C 0, D no previous close
    assert weights.loc[INDEX[1]].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_hold_between_rebalances() -> None:
    weights = pd.DataFrame({"A": [1.0, 0.0, 0.0, 0.0], "B": [0.0, 1.0, 1.0, 1.0]})
    held = hold_between_rebalances(weights, every=2)
    assert held["A"].tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ConfigError):
        hold_between_rebalances(weights, every=0)


def test_cross_section_has_no_look_ahead() -> None:
    rng = np.random.default_rng(5)
    closes = pd.DataFrame(np.exp(np.cumsum(rng.normal(0, 0.05, (80, 6)), axis=0)),
                          index=pd.date_range("2021-01-01", periods=80, freq="D"), columns=list("ABCDEF"))
    closes.iloc[:30, 4] = np.nan  # a late listing
    for cut in (35, 60):
        for make in (lambda c: momentum_weights(c, lookback=10, skip=2, top_n=2),
                     lambda c: reversal_weights(c, lookback=3, bottom_n=2),
                     lambda c: hold_between_rebalances(momentum_weights(c, lookback=10, top_n=3), every=7)):
            pd.testing.assert_frame_equal(make(closes.iloc[:cut + 1]), make(closes).iloc[:cut + 1])

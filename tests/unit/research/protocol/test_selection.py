"""The stated selection rule on tiny matrices whose answer is clear by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.research.protocol.selection import SelectionRule, select
from tests.unit.research.protocol.helpers import days


def _matrix() -> tuple[pd.DataFrame, pd.Series]:
    # btc: +10 %, -40 % (max drawdown 40 %), then flat. calm: -10 % (DD 10 %), wild: -30 % (DD 30 %)
    index = days(4)
    btc = pd.Series([0.10, -0.40, 0.0, 0.0], index=index)
    returns = pd.DataFrame({"wild": [0.0, -0.30, 0.2, 0.2], "calm": [0.0, -0.10, 0.05, 0.05],
                            "calm_costly": [0.0, -0.10, 0.05, 0.05]}, index=index)
    return returns, btc


def test_drawdown_condition_then_median_then_cost() -> None:
    returns, btc = _matrix()
    median = pd.Series({"wild": 2.0, "calm": 1.0, "calm_costly": 1.005})
    cost = pd.Series({"wild": 1.0, "calm": 3.0, "calm_costly": 9.0})
    selection = select(returns, btc, median, SelectionRule(), cost=cost)
    # wild: DD 30 % = 0.75 x 40 % -> not eligible despite the best median; calm ties calm_costly within 0.01
    assert selection.chosen == "calm" and selection.eligible
    assert list(selection.table["eligible"]) == [False, True, True]
    assert selection.table.loc["wild", "drawdown_vs_btc"] == pytest.approx(0.75)
    assert "tied" in selection.reason


def test_outside_the_tolerance_the_higher_median_wins() -> None:
    returns, btc = _matrix()
    median = pd.Series({"wild": 2.0, "calm": 1.0, "calm_costly": 1.5})
    assert select(returns, btc, median, SelectionRule(), cost=pd.Series({"calm": 0.0})).chosen == "calm_costly"


def test_nothing_eligible_ranks_all_and_says_so() -> None:
    returns, btc = _matrix()
    median = pd.Series({"wild": 2.0, "calm": 1.0, "calm_costly": np.nan})
    selection = select(returns, btc, median, SelectionRule(max_drawdown_vs_btc=0.2))
    assert selection.chosen == "wild" and not selection.eligible
    assert selection.reason.startswith("NO configuration met the drawdown condition")

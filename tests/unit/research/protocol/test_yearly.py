"""Descriptive per-year table and the candidate-vs-reference bootstrap, hand-computed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.research.protocol.bootstrap import BootstrapParams
from lib.research.protocol.yearly import per_year, sharpe_difference


def test_each_year_compounds_its_own_days_and_its_drawdown_starts_at_the_year_start() -> None:
    index = pd.DatetimeIndex(["2021-12-30", "2021-12-31", "2022-01-01", "2022-01-02", "2022-01-03"], tz="UTC")
    frame = pd.DataFrame({"a": [0.10, -0.20, -0.10, 0.50, -0.50]}, index=index)
    table = per_year(frame)
    assert table.loc[(2021, "a"), "return_frac"] == pytest.approx(1.1 * 0.8 - 1.0)  # -12 %
    assert table.loc[(2021, "a"), "max_drawdown_frac"] == pytest.approx(0.2)  # 1.1 -> 0.88
    assert table.loc[(2022, "a"), "return_frac"] == pytest.approx(0.9 * 1.5 * 0.5 - 1.0)  # -32.5 %
    assert table.loc[(2022, "a"), "max_drawdown_frac"] == pytest.approx(0.5)  # 1.35 -> 0.675
    assert table.loc[(2022, "a"), "days"] == 3


def test_a_candidate_against_itself_differs_by_zero() -> None:
    rng = np.random.default_rng(3)
    index = pd.date_range("2020-01-01", periods=200, freq="D", tz="UTC")
    frame = pd.DataFrame({"x": rng.normal(0.001, 0.02, 200), "y": rng.normal(0.0, 0.02, 200)}, index=index)
    same = sharpe_difference(frame.assign(z=frame["x"]), "x", "z", BootstrapParams(resamples=200, seed=1))
    assert same["difference"] == 0.0 and same["low"] == 0.0 and same["high"] == 0.0
    other = sharpe_difference(frame, "x", "y", BootstrapParams(resamples=200, seed=1))
    assert other["low"] < other["difference"] < other["high"]

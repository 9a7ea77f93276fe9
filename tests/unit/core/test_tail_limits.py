"""lib.core.tail_limits and lib.core.daily_returns against hand-computed cases."""

from __future__ import annotations

import pandas as pd
import pytest

from lib.core.daily_returns import daily_closes, daily_returns
from lib.core.errors import DataError
from lib.core.tail_limits import fit_to_limits, worst_var_cvar
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR

# 19 days of +1 % and one of -10 %: the historical 99 % VaR and CVaR of 20 days are the worst loss, 10 %.
# mean 0.0045, std (ddof 1) sqrt((19 x 0.0055^2 + 0.1045^2) / 19) = 0.0245967; Gaussian 99 %:
# VaR = -0.0045 + 2.326348 x 0.0245967 = 0.0527198, CVaR = -0.0045 + 2.665214 x 0.0245967 = 0.0610559
CRASH = [0.01] * 19 + [-0.10]


def returns(**columns: list[float]) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_worst_of_historical_and_gaussian() -> None:
    var, cvar = worst_var_cvar(pd.Series(CRASH))
    assert (var, cvar) == (pytest.approx(0.10), pytest.approx(0.10))
    calm = [0.02, -0.02] * 10  # historical 2 %; Gaussian: std 0.0205196 -> VaR 0.0477359 > 2 %
    var, cvar = worst_var_cvar(pd.Series(calm))
    assert var == pytest.approx(2.326348 * 0.0205196, abs=1e-6)
    assert cvar == pytest.approx(2.665214 * 0.0205196, abs=1e-6)


def test_a_whole_book_is_scaled_by_limit_over_var() -> None:
    check = fit_to_limits({"A": 1.0}, returns(A=CRASH), max_var=0.08, max_cvar=0.12)
    assert check.scale == pytest.approx(0.8) and check.var_99 == pytest.approx(0.10)
    assert check.scaled_var_99 == pytest.approx(0.08)
    assert fit_to_limits({"A": 0.5}, returns(A=CRASH), max_var=0.08, max_cvar=0.12).scale == 1.0
    assert fit_to_limits({"A": 1.0}, returns(A=CRASH), max_var=0.2, max_cvar=0.05).scale == pytest.approx(0.5)


def test_a_fixed_part_is_not_scaled() -> None:
    # B moves like A and is held at 0.5: VaR (0.5 + k) x 10 % <= 8 % -> k = 0.3
    frame = returns(A=CRASH, B=CRASH)
    assert fit_to_limits({"A": 1.0}, frame, max_var=0.08, max_cvar=0.12, fixed={"B": 0.5}).scale == pytest.approx(
        0.3, abs=1e-9)
    assert fit_to_limits({"A": 1.0}, frame, max_var=0.08, max_cvar=0.12, fixed={"B": 1.0}).scale == 0.0


def test_unknown_risk_raises() -> None:
    with pytest.raises(DataError, match="no return history"):
        fit_to_limits({"A": 1.0, "C": 0.1}, returns(A=CRASH), max_var=0.08, max_cvar=0.12)
    with pytest.raises(DataError, match="finite returns"):
        fit_to_limits({"A": 1.0}, returns(A=CRASH[:10]), max_var=0.08, max_cvar=0.12)


def test_daily_closes_keep_complete_days_only() -> None:
    start = 1_700_006_400_000 - 1_700_006_400_000 % MS_PER_DAY
    hours = [start + i * MS_PER_HOUR for i in range(24 * 2 + 5)]  # two full days and 5 hours of a third
    candles = pd.DataFrame({"timestamp": hours, "close": [100.0 + i for i in range(len(hours))]})
    closes = daily_closes(candles, timeframe_ms=MS_PER_HOUR)
    assert closes.to_dict() == {start: 123.0, start + MS_PER_DAY: 147.0}
    days = pd.DataFrame({"timestamp": [start, start + MS_PER_DAY], "close": [10.0, 11.0]})
    assert daily_closes(days, timeframe_ms=MS_PER_DAY).to_dict() == {start: 10.0, start + MS_PER_DAY: 11.0}


def test_daily_returns_over_the_lookback() -> None:
    a = pd.Series([100.0, 110.0, 99.0, 99.0])
    b = pd.Series([10.0, 10.0, 12.0, 6.0])
    frame = daily_returns({"A": a, "B": b}, lookback_days=2)
    assert frame["A"].tolist() == pytest.approx([-0.1, 0.0])
    assert frame["B"].tolist() == pytest.approx([0.2, -0.5])

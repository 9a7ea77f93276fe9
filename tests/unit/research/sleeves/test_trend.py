"""Trend core sleeve: hysteresis states, the SMA gap, and conviction on the panel (hand-computed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas_ta as ta
import pytest

from lib.core.errors import ConfigError
from lib.research.sleeves.trend import TrendParams, compute_trend_sleeve, schmitt_state, sma_gap, trend_states

NAN = np.nan


def candles(closes: list[float], start: int = 0) -> pd.DataFrame:
    close = np.asarray(closes, dtype=float)
    stamps = (start + np.arange(close.size, dtype=np.int64)) * 86_400_000
    return pd.DataFrame({"timestamp": stamps, "open": close, "high": close, "low": close, "close": close,
                         "volume": np.ones(close.size)})


def test_schmitt_state_holds_inside_the_band_and_starts_down():
    gap = pd.Series([NAN, 0.0, 0.03, 0.01, -0.01, -0.03, 0.0, 0.021])
    state = schmitt_state(gap, 0.02)
    # NaN warm-up; 0.0 before any crossing = down; +3 % up; +1 %, -1 % inside the band keep up;
    # -3 % down; 0 keeps down; +2.1 % up
    assert state.tolist()[1:] == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert np.isnan(state.iloc[0])


def test_schmitt_state_without_buffer_is_the_sign():
    state = schmitt_state(pd.Series([0.1, -0.1, 0.0, 0.2]), 0.0)
    assert state.tolist() == [1.0, 0.0, 0.0, 1.0]  # exactly 0 keeps the previous state


def test_sma_gap_by_hand_and_equal_to_pandas_ta_sma():
    close = pd.Series([1.0, 2.0, 3.0, 6.0])
    gap = sma_gap(close, 3)
    assert np.isnan(gap.iloc[:2]).all()
    assert gap.iloc[2] == pytest.approx(3.0 / 2.0 - 1.0)  # SMA = 2
    assert gap.iloc[3] == pytest.approx(6.0 / (11.0 / 3.0) - 1.0)
    prices = pd.Series(100 * np.exp(np.cumsum(np.random.default_rng(7).normal(0, 0.03, 400))))
    reference = prices / ta.sma(prices, length=60, talib=False) - 1.0
    np.testing.assert_allclose(sma_gap(prices, 60).iloc[59:], reference.iloc[59:], rtol=1e-10)


def test_conviction_is_the_share_of_horizons_up():
    # horizon 2 and 4, no buffer: rising then falling prices
    params = TrendParams(horizons_bars=(2, 4), entry_buffer_frac=0.0)
    frame = trend_states(candles([1, 2, 3, 4, 3, 2.5, 2]), params)
    # up_2: close vs mean of last 2: bar1 2>1.5 up, bar2 up, bar3 up, bar4 3<3.5 down, bar5 down, bar6 down
    assert frame["up_2"].tolist()[1:] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    # up_4 from bar 3: 4 > 2.5 up, 3 > 3 no -> keeps up (gap 0), 2.5 < 3.125 down, 2 < 2.875 down
    assert frame["up_4"].tolist()[3:] == [1.0, 1.0, 0.0, 0.0]
    close = pd.DataFrame({"A": [1, 2, 3, 4, 3, 2.5, 2]}, index=frame.index, dtype=float)
    sleeve = compute_trend_sleeve({"A": candles([1, 2, 3, 4, 3, 2.5, 2])}, close, params)
    assert sleeve.conviction["A"].tolist()[3:] == [1.0, 0.5, 0.0, 0.0]  # bar 4: up_2 down, up_4 up
    assert sleeve.conviction["A"].iloc[:3].isna().all()  # the 4-bar horizon is still warming up


def test_each_asset_decides_alone_and_missing_bars_are_not_held():
    params = TrendParams(horizons_bars=(2,), entry_buffer_frac=0.0)
    up, down = candles([1, 2, 3, 4]), candles([4, 3, 2, 1])
    close = pd.DataFrame({"UP": [1, 2, 3, 4], "DOWN": [4, 3, 2, NAN]}, index=up["timestamp"].to_numpy(), dtype=float)
    sleeve = compute_trend_sleeve({"UP": up, "DOWN": down.iloc[:3]}, close, params)
    assert sleeve.conviction["UP"].tolist()[1:] == [1.0, 1.0, 1.0]
    assert sleeve.conviction["DOWN"].tolist()[1:3] == [0.0, 0.0]
    assert np.isnan(sleeve.conviction["DOWN"].iloc[3])


@pytest.mark.parametrize("kwargs", [{"horizons_bars": ()}, {"horizons_bars": (1,)}, {"horizons_bars": (5, 5)},
                                    {"entry_buffer_frac": -0.1}, {"entry_buffer_frac": 1.0}])
def test_trend_params_reject_nonsense(kwargs):
    with pytest.raises(ConfigError):
        TrendParams(**kwargs)

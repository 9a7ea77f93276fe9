"""lib.research.universe: the point-in-time eligibility mask on hand-built frames, params, invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.core.errors import ConfigError, DataError
from lib.research.universe import UniverseParams, eligible_mask, median_at_least, trailing_dollar_volume

DAY_MS = 86_400_000
NAN = np.nan


def wide(columns: dict[str, list[float]]) -> pd.DataFrame:
    rows = len(next(iter(columns.values())))
    index = pd.Index(np.arange(rows, dtype=np.int64) * DAY_MS, name="timestamp")
    return pd.DataFrame(columns, index=index, dtype="float64")


CLOSE = wide(
    {
        "BTC/USDT": [10, 10, 10, 10, 10, 10],
        "NEW/USDT": [NAN, NAN, 1, 1, 1, 1],  # listed at bar 2
        "DEAD/USDT": [2, 2, 2, 2, NAN, NAN],  # data stop after bar 3
        "THIN/USDT": [1, 1, 1, 1, 1, 1],  # never liquid enough
        "USDC/USDT": [1, 1, 1, 1, 1, 1],  # stablecoin
    }
)
VOLUME = wide(
    {
        "BTC/USDT": [10, 10, 10, 10, 10, 10],  # 100 quote per bar
        "NEW/USDT": [NAN, NAN, 60, 60, 60, 60],  # 60 quote per bar
        "DEAD/USDT": [40, 40, 40, 40, NAN, NAN],  # 80 quote per bar
        "THIN/USDT": [5, 5, 5, 5, 5, 5],  # 5 quote per bar
        "USDC/USDT": [1e9] * 6,
    }
)
PARAMS = UniverseParams(min_history_bars=2, dollar_volume_window_bars=2, min_dollar_volume_quote=50.0)


def mask_of(columns: dict[str, list[int]]) -> pd.DataFrame:
    return wide(columns).astype(bool)


def test_mask_needs_history_liquidity_a_price_now_and_no_stablecoin():
    expected = mask_of(
        {
            "BTC/USDT": [0, 1, 1, 1, 1, 1],
            "NEW/USDT": [0, 0, 0, 1, 1, 1],
            "DEAD/USDT": [0, 1, 1, 1, 0, 0],
            "THIN/USDT": [0, 0, 0, 0, 0, 0],
            "USDC/USDT": [0, 0, 0, 0, 0, 0],
        }
    )
    pd.testing.assert_frame_equal(eligible_mask(CLOSE, VOLUME, PARAMS), expected)


def test_max_assets_keeps_the_most_liquid_eligible_ones():
    params = UniverseParams(
        min_history_bars=2, dollar_volume_window_bars=2, min_dollar_volume_quote=50.0, max_assets=2
    )
    expected = mask_of(
        {
            "BTC/USDT": [0, 1, 1, 1, 1, 1],
            "NEW/USDT": [0, 0, 0, 0, 1, 1],  # third by liquidity while DEAD trades
            "DEAD/USDT": [0, 1, 1, 1, 0, 0],
            "THIN/USDT": [0, 0, 0, 0, 0, 0],
            "USDC/USDT": [0, 0, 0, 0, 0, 0],  # the most liquid column, but never eligible
        }
    )
    pd.testing.assert_frame_equal(eligible_mask(CLOSE, VOLUME, params), expected)


def test_trailing_dollar_volume_is_a_median_that_tolerates_missing_bars():
    close = wide({"A/USDT": [1, 1, 1, 1, 1]})
    volume = wide({"A/USDT": [1, 100, NAN, 3, 5]})
    result = trailing_dollar_volume(close, volume, window_bars=3)
    np.testing.assert_allclose(result["A/USDT"], [NAN, 50.5, 50.5, 51.5, 4.0])


def test_column_order_of_volume_does_not_matter():
    shuffled = VOLUME.loc[:, list(reversed(VOLUME.columns))]
    pd.testing.assert_frame_equal(
        eligible_mask(CLOSE, shuffled, PARAMS), eligible_mask(CLOSE, VOLUME, PARAMS)
    )


@pytest.mark.parametrize("factor", [8.0, 0.001, 37.5])
def test_scaling_prices_and_the_threshold_together_leaves_the_mask_unchanged(factor):
    scaled = UniverseParams(
        min_history_bars=2, dollar_volume_window_bars=2, min_dollar_volume_quote=50.0 * factor
    )
    pd.testing.assert_frame_equal(
        eligible_mask(CLOSE * factor, VOLUME, scaled), eligible_mask(CLOSE, VOLUME, PARAMS)
    )
    pd.testing.assert_frame_equal(
        eligible_mask(CLOSE, VOLUME * factor, scaled), eligible_mask(CLOSE, VOLUME, PARAMS)
    )


def test_dollar_volume_is_not_price_scale_free():
    """Halving every price halves dollar volume: NEW (60/bar) falls under the 50 threshold."""
    mask = eligible_mask(CLOSE * 0.5, VOLUME, PARAMS)
    assert not mask["NEW/USDT"].any() and mask["BTC/USDT"].iloc[1:].all()


def test_misaligned_inputs_raise_data_error():
    with pytest.raises(DataError, match="share one time index"):
        eligible_mask(CLOSE, VOLUME.iloc[:-1], PARAMS)
    with pytest.raises(DataError, match="share one time index"):
        eligible_mask(CLOSE, VOLUME.drop(columns="THIN/USDT"), PARAMS)


def test_a_column_that_is_not_a_symbol_is_a_config_error():
    with pytest.raises(ConfigError, match="invalid symbol"):
        eligible_mask(
            CLOSE.rename(columns={"BTC/USDT": "btc"}), VOLUME.rename(columns={"BTC/USDT": "btc"}), PARAMS
        )


BAD_PARAMS = [
    ({"min_history_bars": 0}, "universe.min_history_bars must be >= 1"),
    ({"dollar_volume_window_bars": 0}, "universe.dollar_volume_window_bars must be >= 1"),
    ({"min_dollar_volume_quote": -1.0}, "universe.min_dollar_volume_quote must be finite and >= 0"),
    ({"min_dollar_volume_quote": float("nan")}, "universe.min_dollar_volume_quote must be finite and >= 0"),
    ({"max_assets": -1}, "universe.max_assets must be >= 0"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_PARAMS)
def test_bad_universe_params_raise_config_error_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        UniverseParams(**overrides)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), window=st.integers(1, 12), missing=st.floats(0.0, 0.6),
       levels=st.integers(1, 6))
def test_median_at_least_answers_as_the_rolling_median(seed: int, window: int, missing: float, levels: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.choice(rng.uniform(0.0, 10.0, size=levels), size=(60, 4))  # few levels: ties and exact hits
    values[rng.uniform(size=values.shape) < missing] = np.nan
    frame = wide({f"C{k}/USDT": list(values[:, k]) for k in range(4)})
    for threshold in (*np.unique(values[np.isfinite(values)])[:3], 5.0, 0.0):
        ones = pd.DataFrame(1.0, index=frame.index, columns=frame.columns)
        expected = (trailing_dollar_volume(frame, ones, window_bars=window) >= threshold).to_numpy()
        np.testing.assert_array_equal(median_at_least(frame, float(threshold), window_bars=window), expected)


def test_median_at_least_by_hand() -> None:
    frame = wide({"A/USDT": [1.0, 3.0, NAN, 2.0, 4.0, 6.0]})  # window 2 (needs 1 valid): medians 1, 2, 3, 2, 3, 5
    np.testing.assert_array_equal(median_at_least(frame, 3.0, window_bars=2)[:, 0],
                                  [False, False, True, False, True, True])

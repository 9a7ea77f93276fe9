"""lib.research.ensemble: exact combinations on hand-built panels, IC-weight oracles, alignment errors, real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.core.symbols import to_slug
from lib.research.ensemble import (
    EnsembleParams,
    compute_ensemble,
    cross_sectional_correlation,
    cross_sectional_rank,
)
from lib.research.signal_params import SIGNAL_NAMES, SignalParams
from lib.research.signals import compute_signal_panel
from lib.research.universe import UniverseParams, eligible_mask

DAY_MS = 86_400_000
TWO = ("trend", "momentum")


def wide(rows, columns=("A/USDT", "B/USDT")) -> pd.DataFrame:
    index = pd.Index(np.arange(len(rows), dtype=np.int64) * DAY_MS, name="timestamp")
    return pd.DataFrame(np.asarray(rows, dtype="float64"), index=index, columns=list(columns))


def test_equal_weight_is_the_mean_with_contributions_summing_to_the_score():
    trend = wide([[1.0, 2.0], [3.0, np.nan], [0.5, -1.0]])
    momentum = wide([[3.0, 0.0], [1.0, 1.0], [np.nan, 1.0]])
    result = compute_ensemble(
        {"trend": trend, "momentum": momentum}, wide(np.ones((3, 2))), EnsembleParams(signals=TWO)
    )
    pd.testing.assert_frame_equal(result.scores, wide([[2.0, 1.0], [2.0, np.nan], [np.nan, 0.0]]))
    pd.testing.assert_frame_equal(result.contributions["trend"], trend * 0.5)
    pd.testing.assert_frame_equal(result.contributions["momentum"], momentum * 0.5)
    assert (result.signal_weights == 0.5).all().all() and list(result.signal_weights.columns) == list(TWO)


def test_cross_sectional_rank_scales_to_plus_minus_one_with_ties_and_gaps():
    values = wide([[1, 2, 3], [3, np.nan, 1], [5, 5, 1], [np.nan, 7, np.nan]], columns=("A", "B", "C"))
    expected = wide(
        [[-1, 0, 1], [1, np.nan, -1], [0.5, 0.5, -1], [np.nan, 0, np.nan]], columns=("A", "B", "C")
    )
    pd.testing.assert_frame_equal(cross_sectional_rank(values), expected)


def test_rank_average_averages_ranks_and_respects_eligibility():
    columns = ("A/USDT", "B/USDT", "C/USDT")
    trend = wide([[1, 2, 3], [10, 20, 30]], columns)
    momentum = wide([[3, 2, 1], [30, 10, 20]], columns)
    eligible = wide([[1, 1, 1], [1, 0, 1]], columns).astype(bool)
    panel = {"trend": trend, "momentum": momentum}
    params = EnsembleParams(method="rank_average", signals=TWO)
    result = compute_ensemble(panel, wide(np.ones((2, 3)), columns), params, eligible=eligible)
    # row 0: ranks (-1, 0, 1) and (1, 0, -1); row 1 without B: (-1, 1) and (1, -1)
    pd.testing.assert_frame_equal(result.scores, wide([[0, 0, 0], [0, np.nan, 0]], columns))
    pd.testing.assert_frame_equal(
        result.contributions["trend"], wide([[-0.5, 0, 0.5], [-0.5, np.nan, 0.5]], columns)
    )


def test_cross_sectional_correlation_exact_cases():
    left = wide([[1, 2, 3], [1, 2, 3], [1, 2, np.nan], [1, 1, 1]], columns=("A", "B", "C"))
    right = wide([[2, 4, 6], [3, 2, 1], [1, 2, 3], [1, 2, 3]], columns=("A", "B", "C"))
    result = cross_sectional_correlation(left, right, min_assets=3)
    np.testing.assert_allclose(result, [1.0, -1.0, np.nan, np.nan])  # too few assets; constant side
    np.testing.assert_allclose(cross_sectional_correlation(left, right, min_assets=2).iloc[2], 1.0)


def oracle_panel(bars: int = 80, *, horizon: int = 1, seed: int = 5):
    """``trend`` at t equals the coming return t -> t+h (a perfect oracle); ``momentum`` is its negative."""
    rng = np.random.default_rng(seed)
    columns = ("A/USDT", "B/USDT", "C/USDT", "D/USDT")
    close = wide(100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (bars, 4)), axis=0)), columns)
    future_return = np.log(close).shift(-horizon) - np.log(close)
    return {"trend": future_return, "momentum": -future_return}, close


@pytest.mark.parametrize("ic_method", ["spearman_cross_section", "pearson_time_series"])
@pytest.mark.parametrize("horizon", [1, 3])
def test_adaptive_ic_learns_the_oracle_only_from_completed_returns(ic_method, horizon):
    panel, close = oracle_panel(horizon=horizon)
    params = EnsembleParams(
        method="adaptive_ic",
        signals=TWO,
        ic_method=ic_method,
        ic_horizon_bars=horizon,
        ic_window_bars=20,
        ic_min_bars=10,
    )
    weights = compute_ensemble(panel, close, params).signal_weights
    first_ic_bar = horizon + 10 - 1  # first completed h-bar return at bar h, then 10 of them
    np.testing.assert_allclose(weights.iloc[:first_ic_bar], 0.5)  # warm-up: equal-weight fallback
    np.testing.assert_allclose(weights["trend"].iloc[first_ic_bar:], 1.0)
    np.testing.assert_allclose(weights["momentum"].iloc[first_ic_bar:], 0.0)  # IC -1 floored at 0


def test_adaptive_ic_with_negative_floor_keeps_signed_weights_and_zero_fallback():
    panel, close = oracle_panel()
    params = EnsembleParams(
        method="adaptive_ic",
        signals=TWO,
        ic_floor=-1.0,
        ic_fallback="zero",
        ic_window_bars=20,
        ic_min_bars=10,
    )
    result = compute_ensemble(panel, close, params)
    np.testing.assert_allclose(result.signal_weights.iloc[:10], 0.0)
    np.testing.assert_allclose(result.signal_weights["trend"].iloc[10:], 0.5)
    np.testing.assert_allclose(result.signal_weights["momentum"].iloc[10:], -0.5)
    np.testing.assert_allclose(result.scores.iloc[:10], 0.0)
    pd.testing.assert_frame_equal(result.scores.iloc[10:], panel["trend"].iloc[10:], rtol=1e-12)


@pytest.mark.parametrize("method", ["equal_weight", "rank_average", "adaptive_ic"])
def test_contributions_always_sum_to_the_score(method):
    panel, close = oracle_panel()
    rng = np.random.default_rng(9)
    panel["volume"] = panel["trend"] * 0.0 + rng.normal(size=panel["trend"].shape)
    params = EnsembleParams(method=method, signals=("trend", "momentum", "volume"), ic_min_bars=5)
    result = compute_ensemble(panel, close, params)
    total = sum(result.contributions.values())
    pd.testing.assert_frame_equal(total, result.scores, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.signal_weights.abs().sum(axis=1), 1.0)


def test_missing_signal_and_misaligned_frames_are_data_errors():
    panel, close = oracle_panel(bars=10)
    with pytest.raises(DataError, match=r"signal panel lacks \['volume'\]"):
        compute_ensemble(panel, close, EnsembleParams(signals=("trend", "volume")))
    with pytest.raises(DataError, match="share one time index"):
        compute_ensemble(panel, close.iloc[:-1], EnsembleParams(signals=TWO))
    with pytest.raises(DataError, match="share one time index"):
        compute_ensemble(panel, close.drop(columns="A/USDT"), EnsembleParams(signals=TWO))
    with pytest.raises(DataError, match="share one time index"):
        compute_ensemble(panel, close, EnsembleParams(signals=TWO), eligible=close.iloc[:, :2].notna())


BAD_PARAMS = [
    ({"method": "best_guess"}, "ensemble.method must be one of"),
    ({"ic_method": "kendall"}, "ensemble.ic_method must be one of"),
    ({"ic_fallback": "cash"}, "ensemble.ic_fallback must be one of"),
    ({"signals": ()}, "ensemble.signals"),
    ({"signals": ("trend", "trend")}, "ensemble.signals"),
    ({"signals": ("trend", "carry")}, "ensemble.signals"),
    ({"ic_horizon_bars": 0}, "ensemble.ic_horizon_bars must be >= 1"),
    ({"ic_min_bars": 1}, "ensemble.ic_min_bars"),
    ({"ic_window_bars": 20, "ic_min_bars": 30}, "ensemble.ic_min_bars"),
    ({"ic_min_assets": 1}, "ensemble.ic_min_assets must be >= 2"),
    ({"ic_floor": 0.1}, r"ensemble.ic_floor must be in \[-1, 0\]"),
    ({"ic_floor": -1.5}, r"ensemble.ic_floor must be in \[-1, 0\]"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_PARAMS)
def test_bad_ensemble_params_raise_config_error_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        EnsembleParams(**overrides)


REAL_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "DOGE/USDT", "ADA/USDT")


@pytest.mark.realdata
def test_real_daily_candles_give_finite_signals_and_scores(shared_data_dir):
    candles = {
        s: pd.read_parquet(shared_data_dir / "market" / "1d" / f"{to_slug(s)}.parquet") for s in REAL_SYMBOLS
    }
    params = SignalParams()
    panel = compute_signal_panel(candles, params)
    for name in SIGNAL_NAMES:
        values = panel[name].to_numpy()
        defined = values[~np.isnan(values)]
        assert defined.size > 3000, name
        assert np.isfinite(defined).all() and (np.abs(defined) <= params.score_clip).all(), name
        assert panel[name].iloc[-1].notna().all(), name
    close = pd.DataFrame({s: f.set_index("timestamp")["close"] for s, f in candles.items()}).reindex(
        panel["trend"].index
    )
    volume = pd.DataFrame({s: f.set_index("timestamp")["volume"] for s, f in candles.items()}).reindex(
        close.index
    )
    eligible = eligible_mask(close, volume, UniverseParams())
    assert eligible.iloc[-1].all()
    for method in ("equal_weight", "rank_average", "adaptive_ic"):
        result = compute_ensemble(panel, close, EnsembleParams(method=method), eligible=eligible)
        assert result.scores.iloc[-1].notna().all(), method
        assert np.isfinite(result.scores.to_numpy()[eligible.to_numpy()]).mean() > 0.8, method
        pd.testing.assert_frame_equal(sum(result.contributions.values()), result.scores, atol=1e-12)

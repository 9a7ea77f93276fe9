"""Unit tests for lib/research/portfolio.py: hand-computed weights, invariants, regime causality."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.research.portfolio import (
    PerpParams,
    SpotParams,
    apply_no_trade_band,
    compute_regime,
    perp_target_weight_frame,
    perp_target_weights,
    rebalance_positions,
    spot_target_weight_frame,
    spot_target_weights,
)

SYMBOLS = ["A/USDT", "B/USDT", "C/USDT", "D/USDT", "E/USDT", "F/USDT"]


def _series(values: list[float], symbols: list[str] | None = None) -> pd.Series:
    return pd.Series(values, index=(symbols or SYMBOLS)[: len(values)], dtype=float)


# ---- spot ---------------------------------------------------------------------------------------


def test_spot_top_n_score_times_inverse_vol() -> None:
    scores = _series([2.0, 1.0, 0.5, -1.0, np.nan])
    vol = _series([0.5, 0.5, 1.0, 0.5, 0.5])
    params = SpotParams(top_n=2, max_asset_weight_frac=1.0, target_vol_annual_frac=0.0)
    weights = spot_target_weights(scores, vol, True, params)
    # raw = score / vol: A 4, B 2 -> 4/6, 2/6; C is outside the top 2; D negative; E no score
    assert weights.to_dict() == pytest.approx(
        {"A/USDT": 4 / 6, "B/USDT": 2 / 6, "C/USDT": 0.0, "D/USDT": 0.0, "E/USDT": 0.0}
    )


def test_spot_inverse_vol_only_ignores_score_size() -> None:
    scores = _series([5.0, 0.1])
    vol = _series([0.2, 0.6])
    params = SpotParams(weighting="inverse_vol", max_asset_weight_frac=1.0, target_vol_annual_frac=0.0)
    weights = spot_target_weights(scores, vol, True, params)
    assert weights.tolist() == pytest.approx([0.75, 0.25])  # 1/0.2 : 1/0.6 = 5 : 5/3


def test_spot_cap_redistributes_excess_to_uncapped_names() -> None:
    scores = _series([4.0, 2.0, 1.0])
    vol = _series([1.0, 1.0, 1.0])
    params = SpotParams(top_n=3, max_asset_weight_frac=0.5, target_vol_annual_frac=0.0)
    weights = spot_target_weights(scores, vol, True, params)
    # 4/7 > 0.5 -> A pinned at 0.5; the other 0.5 split 2:1
    assert weights.tolist() == pytest.approx([0.5, 1 / 3, 1 / 6])


def test_spot_cap_leaves_cash_when_every_name_is_capped() -> None:
    weights = spot_target_weights(
        _series([3.0, 1.0]),
        _series([1.0, 1.0]),
        True,
        SpotParams(max_asset_weight_frac=0.25, target_vol_annual_frac=0.0),
    )
    assert weights.tolist() == pytest.approx([0.25, 0.25])


def test_spot_vol_target_scales_book_down_to_target_with_constant_correlation() -> None:
    params = SpotParams(
        weighting="inverse_vol",
        max_asset_weight_frac=1.0,
        target_vol_annual_frac=0.4,
        assumed_correlation=0.5,
    )
    weights = spot_target_weights(_series([1.0, 1.0]), _series([0.8, 0.8]), True, params)
    # 50/50 book: var = (1 - 0.5) * (0.4^2 + 0.4^2) + 0.5 * 0.8^2 = 0.16 + 0.32 = 0.48
    scale = 0.4 / math.sqrt(0.48)
    assert weights.tolist() == pytest.approx([0.5 * scale, 0.5 * scale])


def test_spot_vol_target_never_levers_up() -> None:
    params = SpotParams(weighting="inverse_vol", max_asset_weight_frac=1.0, target_vol_annual_frac=2.0)
    weights = spot_target_weights(_series([1.0, 1.0]), _series([0.1, 0.1]), True, params)
    assert weights.sum() == pytest.approx(1.0)


def test_spot_vol_target_uses_covariance_when_given() -> None:
    params = SpotParams(weighting="inverse_vol", max_asset_weight_frac=1.0, target_vol_annual_frac=0.4)
    symbols = SYMBOLS[:2]
    covariance = pd.DataFrame([[0.64, 0.0], [0.0, 0.64]], index=symbols, columns=symbols)
    weights = spot_target_weights(
        _series([1.0, 1.0]), _series([0.8, 0.8]), True, params, covariance=covariance
    )
    book_vol = math.sqrt(0.25 * 0.64 * 2)  # uncorrelated 50/50
    assert weights.tolist() == pytest.approx([0.5 * 0.4 / book_vol] * 2)


@pytest.mark.parametrize(("bear_exposure", "expected"), [(0.0, [0.0, 0.0]), (0.3, [0.3 * 0.75, 0.3 * 0.25])])
def test_spot_bearish_regime_moves_to_cash_or_residual(bear_exposure: float, expected: list[float]) -> None:
    params = SpotParams(
        weighting="inverse_vol",
        max_asset_weight_frac=1.0,
        target_vol_annual_frac=0.0,
        bear_exposure_frac=bear_exposure,
    )
    weights = spot_target_weights(_series([1.0, 1.0]), _series([0.2, 0.6]), False, params)
    assert weights.tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("scores", "vols"),
    [
        ([np.nan, np.nan], [0.5, 0.5]),  # no data
        ([-1.0, 0.0], [0.5, 0.5]),  # nothing positive
        ([1.0, 2.0], [np.nan, 0.0]),  # no usable volatility
    ],
)
def test_spot_nothing_eligible_is_all_cash(scores: list[float], vols: list[float]) -> None:
    weights = spot_target_weights(_series(scores), _series(vols), True, SpotParams())
    assert weights.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("seed", range(20))
def test_spot_invariants_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = pd.Series(rng.normal(0, 1, 12))
    scores[rng.random(12) < 0.2] = np.nan
    vol = pd.Series(rng.uniform(0.05, 2.0, 12))
    params = SpotParams(
        top_n=int(rng.integers(1, 8)),
        max_asset_weight_frac=float(rng.uniform(0.05, 1.0)),
        target_vol_annual_frac=float(rng.uniform(0.0, 1.0)),
    )
    weights = spot_target_weights(scores, vol, bool(rng.integers(0, 2)), params)
    assert np.isfinite(weights).all()
    assert (weights >= 0).all()
    assert weights.sum() <= 1.0 + 1e-12
    assert (weights <= params.max_asset_weight_frac + 1e-12).all()
    assert (weights > 0).sum() <= params.top_n
    # scaling every score by a positive constant changes nothing
    scaled = spot_target_weights(scores * 7.0, vol, True, params)
    unscaled = spot_target_weights(scores, vol, True, params)
    np.testing.assert_allclose(scaled.to_numpy(), unscaled.to_numpy(), rtol=1e-12, atol=1e-15)


# ---- regime -------------------------------------------------------------------------------------


def test_regime_is_close_above_its_sma() -> None:
    close = pd.Series([1.0, 2.0, 3.0, 2.0, 1.0, 5.0])
    regime = compute_regime(close, SpotParams(regime_sma_bars=3))
    # SMA3 from bar 2: 2, 7/3, 2, 8/3 ; the first two bars have no full window -> bearish
    assert regime.tolist() == [False, False, True, False, False, True]


def test_regime_filter_off_is_always_bullish() -> None:
    regime = compute_regime(pd.Series([3.0, 2.0, 1.0]), SpotParams(regime_filter=False, regime_sma_bars=2))
    assert regime.tolist() == [True, True, True]


def test_regime_from_wide_frame_uses_equal_weight_index() -> None:
    close = pd.DataFrame({"A/USDT": [10.0, 11.0, 12.1, 6.05], "B/USDT": [np.nan, 20.0, 22.0, 11.0]})
    regime = compute_regime(close, SpotParams(regime_sma_bars=2))
    # bar returns: A +10%, then A +10% & B +10%, then both -50% -> index 1, 1.1, 1.21, 0.605
    assert regime.tolist() == [False, True, True, False]


def test_regime_is_causal() -> None:
    rng = np.random.default_rng(3)
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 300))))
    params = SpotParams(regime_sma_bars=50)
    full = compute_regime(close, params)
    for cut in (60, 150, 299):
        pd.testing.assert_series_equal(full.iloc[:cut], compute_regime(close.iloc[:cut], params))


# ---- perps --------------------------------------------------------------------------------------


def test_perp_equal_weight_long_top_short_bottom() -> None:
    scores = _series([3.0, 2.0, 1.0, -1.0, -2.0, -3.0])
    vol = _series([1.0] * 6)
    params = PerpParams(top_k=2, weighting="equal", max_gross_leverage=1.0, max_asset_weight_frac=0.5)
    weights = perp_target_weights(scores, vol, params)
    assert weights.tolist() == pytest.approx([0.25, 0.25, 0.0, 0.0, -0.25, -0.25])


def test_perp_inverse_vol_within_each_side() -> None:
    scores = _series([3.0, 2.0, 1.0, -1.0, -2.0, -3.0])
    vol = _series([0.5, 1.0, 1.0, 1.0, 0.25, 0.75])
    params = PerpParams(top_k=2, max_gross_leverage=1.0, max_asset_weight_frac=0.4)
    weights = perp_target_weights(scores, vol, params)
    # longs A,B raw 2:1 -> 1/3, 1/6 ; shorts E,F raw 4:4/3 -> 3/8, 1/8 (side total 0.5 each)
    assert weights.tolist() == pytest.approx([1 / 3, 1 / 6, 0.0, 0.0, -3 / 8, -1 / 8])


def test_perp_cap_binds_and_book_stays_dollar_neutral() -> None:
    scores = _series([3.0, 2.0, -2.0, -3.0])
    params = PerpParams(top_k=2, weighting="equal", max_gross_leverage=2.0, max_asset_weight_frac=0.3)
    weights = perp_target_weights(scores, _series([1.0] * 4), params)
    assert weights.tolist() == pytest.approx([0.3, 0.3, -0.3, -0.3])


@pytest.mark.parametrize(("n_eligible", "expected_k"), [(1, 0), (2, 1), (3, 1), (5, 2)])
def test_perp_k_shrinks_to_half_the_eligible_names(n_eligible: int, expected_k: int) -> None:
    scores = _series([5.0, 4.0, 3.0, 2.0, 1.0, 0.0][:n_eligible] + [np.nan] * (6 - n_eligible))
    weights = perp_target_weights(scores, _series([1.0] * 6), PerpParams(top_k=3, weighting="equal"))
    assert (weights > 0).sum() == expected_k
    assert (weights < 0).sum() == expected_k


def test_perp_beta_neutral_book() -> None:
    scores = _series([3.0, 2.0, 1.0, -1.0, -2.0, -3.0])
    vol = _series([1.0] * 6)
    beta = _series([1.5, 1.0, 1.0, 1.0, 0.8, 1.2])
    params = PerpParams(
        top_k=3, weighting="equal", max_gross_leverage=1.0, max_asset_weight_frac=0.5, beta_neutral=True
    )
    weights = perp_target_weights(scores, vol, params, beta=beta)
    assert weights.sum() == pytest.approx(0.0, abs=1e-12)
    assert float(weights @ beta) == pytest.approx(0.0, abs=1e-12)
    assert np.abs(weights).sum() == pytest.approx(1.0)
    assert (weights.iloc[:3] >= 0).all() and (weights.iloc[3:] <= 0).all()


def test_perp_beta_neutral_without_betas_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="perp.beta_neutral"):
        perp_target_weights(_series([1.0, -1.0]), _series([1.0, 1.0]), PerpParams(beta_neutral=True))


@pytest.mark.parametrize("seed", range(20))
def test_perp_invariants_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    scores = pd.Series(rng.normal(0, 1, 15))
    scores[rng.random(15) < 0.2] = np.nan
    vol = pd.Series(rng.uniform(0.1, 2.0, 15))
    beta = pd.Series(rng.uniform(0.5, 1.8, 15))
    gross = float(rng.uniform(0.5, 3.0))
    params = PerpParams(
        top_k=int(rng.integers(1, 6)),
        max_gross_leverage=gross,
        max_asset_weight_frac=float(rng.uniform(0.05, gross)),
        beta_neutral=bool(seed % 2),
    )
    weights = perp_target_weights(scores, vol, params, beta=beta)
    assert np.isfinite(weights).all()
    assert weights.sum() == pytest.approx(0.0, abs=1e-12)
    assert np.abs(weights).sum() <= gross + 1e-12
    assert (np.abs(weights) <= params.max_asset_weight_frac + 1e-12).all()
    if params.beta_neutral:
        assert float(weights @ beta) == pytest.approx(0.0, abs=1e-12)


# ---- frames, schedule, band ---------------------------------------------------------------------


def _wide(rng: np.random.Generator, n_bars: int = 12) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = pd.Index(np.arange(n_bars, dtype=np.int64) * 86_400_000, name="timestamp")
    scores = pd.DataFrame(rng.normal(0, 1, (n_bars, 5)), index=index, columns=SYMBOLS[:5])
    scores.iloc[:2, 0] = np.nan
    vol = pd.DataFrame(rng.uniform(0.2, 1.5, (n_bars, 5)), index=index, columns=SYMBOLS[:5])
    return scores, vol


def test_spot_frame_matches_one_time_rule_on_ticks_and_is_nan_between() -> None:
    scores, vol = _wide(np.random.default_rng(7))
    regime = pd.Series([True, False] * 6, index=scores.index)
    params = SpotParams(top_n=3)
    frame = spot_target_weight_frame(scores, vol, regime, params, rebalance_every_bars=3)
    for row in range(len(scores)):
        if row % 3:
            assert frame.iloc[row].isna().all()
        else:
            expected = spot_target_weights(scores.iloc[row], vol.iloc[row], bool(regime.iloc[row]), params)
            np.testing.assert_allclose(frame.iloc[row].to_numpy(), expected.to_numpy(), rtol=0, atol=0)


def test_perp_frame_matches_one_time_rule_on_ticks() -> None:
    scores, vol = _wide(np.random.default_rng(8))
    beta = vol * 0 + 1.0
    params = PerpParams(top_k=2, beta_neutral=True)
    frame = perp_target_weight_frame(scores, vol, params, beta_wide=beta, rebalance_every_bars=2)
    for row in range(0, len(scores), 2):
        expected = perp_target_weights(scores.iloc[row], vol.iloc[row], params, beta=beta.iloc[row])
        np.testing.assert_allclose(frame.iloc[row].to_numpy(), expected.to_numpy(), rtol=0, atol=0)
    assert frame.iloc[1::2].isna().all().all()


def test_frame_rejects_misaligned_volatility() -> None:
    scores, vol = _wide(np.random.default_rng(9))
    with pytest.raises(DataError, match="volatility_wide"):
        spot_target_weight_frame(scores, vol.iloc[1:], pd.Series(True, index=scores.index), SpotParams())


def test_rebalance_positions() -> None:
    assert rebalance_positions(7, 3).tolist() == [0, 3, 6]
    with pytest.raises(ConfigError):
        rebalance_positions(7, 0)


@pytest.mark.parametrize(
    ("target", "current", "band", "expected"),
    [
        ([0.30, 0.20], [0.29, 0.25], 0.02, [0.29, 0.20]),  # inside the band: keep; outside: trade
        ([0.00, 0.10], [0.01, 0.10], 0.05, [0.00, 0.10]),  # a full exit always passes the band
        ([0.30, -0.2], [0.00, -0.19], 0.0, [0.30, -0.2]),  # no band: the target
        ([-0.2, 0.50], [-0.21, 0.45], 0.1, [-0.21, 0.45]),  # shorts too
    ],
)
def test_no_trade_band(target: list[float], current: list[float], band: float, expected: list[float]) -> None:
    result = apply_no_trade_band(np.array(target), np.array(current), band)
    assert result.tolist() == pytest.approx(expected)


def test_no_trade_band_on_series_aligns_by_symbol() -> None:
    target = pd.Series({"A/USDT": 0.3, "B/USDT": 0.2})
    current = pd.Series({"B/USDT": 0.21, "Z/USDT": 0.5})
    assert apply_no_trade_band(target, current, 0.02).to_dict() == {"A/USDT": 0.3, "B/USDT": 0.21}


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (SpotParams, {"top_n": 0}, "spot.top_n"),
        (SpotParams, {"min_score": -0.1}, "spot.min_score"),
        (SpotParams, {"max_asset_weight_frac": 1.5}, "spot.max_asset_weight_frac"),
        (SpotParams, {"target_vol_annual_frac": -1.0}, "spot.target_vol_annual_frac"),
        (SpotParams, {"assumed_correlation": 1.2}, "spot.assumed_correlation"),
        (SpotParams, {"regime_sma_bars": 1}, "spot.regime_sma_bars"),
        (SpotParams, {"bear_exposure_frac": 2.0}, "spot.bear_exposure_frac"),
        (SpotParams, {"weighting": "score"}, "spot.weighting"),
        (PerpParams, {"top_k": 0}, "perp.top_k"),
        (PerpParams, {"max_gross_leverage": 0.0}, "perp.max_gross_leverage"),
        (PerpParams, {"max_asset_weight_frac": 2.0}, "perp.max_asset_weight_frac"),
        (PerpParams, {"weighting": "score"}, "perp.weighting"),
    ],
)
def test_bad_params_raise_config_error(cls: type, kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cls(**kwargs)

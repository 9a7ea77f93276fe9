"""Pure: turn per-asset scores into target weights (long-only spot, market-neutral perps).

Each rule has ONE implementation working on numpy arrays for one rebalance time; the pandas
wrappers (`spot_target_weights`, `perp_target_weights`) and the whole-history frame builders
(`spot_target_weight_frame`, `perp_target_weight_frame`) all call it. Weights are fractions of
equity, signed (negative = short). Volatility inputs here are ANNUALIZED fractions (0.8 = 80 %/yr)
so that the spot volatility target is in the same unit. Nothing here shifts time: a weight built
from bar t's scores is traded at bar t+1's open by the backtester (and only after the candle
closed, live).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.research.portfolio_params import PerpParams, SpotParams


def apply_no_trade_band[Weights: (pd.Series, np.ndarray)](
    target: Weights, current: Weights, band_frac: float
) -> Weights:
    """Keep the current weight where the target is less than ``band_frac`` away from it.

    Why: small re-weightings cost fees and slippage and buy nothing. A full exit (target exactly 0)
    always passes the band so names that left the selection are closed (the min-notional rule of
    the order layer may still leave dust). Series are aligned on the target's index (missing
    current = 0); arrays must have the same shape.
    """
    if not (math.isfinite(band_frac) and band_frac >= 0):
        raise ConfigError(f"no-trade band must be finite and >= 0, got {band_frac}")
    if isinstance(target, pd.Series):
        held = pd.Series(current).reindex(target.index).fillna(0.0).to_numpy(dtype=float)
        kept = _band_array(target.to_numpy(dtype=float), held, band_frac)
        return pd.Series(kept, index=target.index, name=target.name)
    return _band_array(np.asarray(target, dtype=float), np.asarray(current, dtype=float), band_frac)


def _band_array(target: np.ndarray, current: np.ndarray, band_frac: float) -> np.ndarray:
    if band_frac == 0:
        return target
    inside = (np.abs(target - current) < band_frac) & (target != 0)
    return np.where(inside, current, target)


def _cap_and_fill(raw: np.ndarray, cap: float, total: float) -> np.ndarray:
    """Split ``total`` across names in proportion to ``raw`` (> 0) with every weight <= ``cap``.

    Names whose share would exceed the cap are pinned at it and the excess is re-spread over the
    others (water-filling); what no name can take stays unallocated (cash).
    """
    weights = total * raw / raw.sum()  # the first round below, when no name is capped yet
    if not (weights > cap).any():
        return weights
    weights = np.zeros_like(raw)
    capped = np.zeros(raw.shape, dtype=bool)
    for _ in range(raw.size + 1):
        free = ~capped
        left = total - cap * capped.sum()
        weights[capped] = cap
        if not free.any() or left <= 0:
            weights[free] = 0.0
            break
        weights[free] = left * raw[free] / raw[free].sum()
        newly = free & (weights > cap)
        if not newly.any():
            break
        capped |= newly
    return weights


def _book_volatility(weights: np.ndarray, vol: np.ndarray, rho: float, cov: np.ndarray | None) -> float:
    """Annualized book volatility: w'Σw with Σ given, else a constant pairwise correlation rho.

    With constant correlation: var = (1 - rho) * sum((w*vol)^2) + rho * (sum(w*vol))^2.
    """
    if cov is not None:
        return float(np.sqrt(max(weights @ cov @ weights, 0.0)))
    risk = weights * vol
    return float(np.sqrt((1 - rho) * np.sum(risk**2) + rho * np.sum(risk) ** 2))


def _spot_weights_array(
    scores: np.ndarray, vol: np.ndarray, is_bullish: bool, params: SpotParams, cov: np.ndarray | None
) -> np.ndarray:
    """The spot rule on arrays: top-N, score x inverse vol, cap, vol target (down only), regime."""
    eligible = np.isfinite(scores) & np.isfinite(vol) & (vol > 0) & (scores > params.min_score)
    return _spot_row(scores, vol, np.nan_to_num(vol), eligible, is_bullish, params, cov)


def _spot_row(
    scores: np.ndarray,
    vol: np.ndarray,
    finite_vol: np.ndarray,
    eligible: np.ndarray,
    is_bullish: bool,
    params: SpotParams,
    cov: np.ndarray | None,
) -> np.ndarray:
    """``_spot_weights_array`` given ``eligible`` and ``finite_vol`` (= nan_to_num(vol)), which a
    history computes once for all rows."""
    weights = np.zeros(scores.size)
    candidates = np.flatnonzero(eligible)
    if candidates.size == 0:
        return weights
    chosen = candidates[np.argsort(-scores[candidates], kind="stable")][: params.top_n]
    raw = 1.0 / vol[chosen]
    if params.weighting == "score_inverse_vol":
        raw = raw * scores[chosen]
    weights[chosen] = _cap_and_fill(raw, params.max_asset_weight_frac, 1.0)
    if params.target_vol_annual_frac > 0:
        book_vol = _book_volatility(weights, finite_vol, params.assumed_correlation, cov)
        if book_vol > params.target_vol_annual_frac:
            weights *= params.target_vol_annual_frac / book_vol
    if not is_bullish:
        weights *= params.bear_exposure_frac
    return weights


def spot_target_weights(
    scores: pd.Series,
    volatility: pd.Series,
    regime_is_bullish: bool,
    params: SpotParams,
    *,
    covariance: pd.DataFrame | None = None,
) -> pd.Series:
    """Long-only target weights for one rebalance time, indexed like ``scores``.

    ``volatility`` is annualized per asset (aligned by symbol; missing = not eligible). The book's
    volatility uses ``covariance`` (annualized, symbols x symbols) when given, otherwise a constant
    pairwise correlation ``params.assumed_correlation``; the book is only ever scaled DOWN to the
    target (no leverage). Invariants: weights >= 0, finite, each <= cap, sum <= 1.
    """
    vol = volatility.reindex(scores.index).to_numpy(dtype=float)
    cov = None if covariance is None else covariance.reindex(index=scores.index, columns=scores.index)
    cov_arr = None if cov is None else cov.fillna(0.0).to_numpy(dtype=float)
    weights = _spot_weights_array(scores.to_numpy(dtype=float), vol, bool(regime_is_bullish), params, cov_arr)
    return pd.Series(weights, index=scores.index, name="weight")


def compute_regime(close: pd.Series | pd.DataFrame, params: SpotParams) -> pd.Series:
    """True where the market is bullish: the level is above its ``regime_sma_bars`` SMA at bar t.

    A Series is used as the benchmark level (e.g. BTC/USDT close); a wide frame becomes an
    equal-weight index (mean of the available assets' bar returns, compounded). Causal: bar t uses
    bars <= t. Before the SMA has a full window the regime is False (stay in cash when unsure).
    """
    if isinstance(close, pd.DataFrame):
        bar_returns = close.pct_change(fill_method=None).mean(axis=1, skipna=True).fillna(0.0)
        level = (1.0 + bar_returns).cumprod()
        level[close.notna().sum(axis=1).cumsum() == 0] = np.nan  # no asset has a price yet
    else:
        level = close.astype(float)
    if not params.regime_filter:
        return pd.Series(True, index=level.index, name="is_bullish")
    sma = level.rolling(params.regime_sma_bars, min_periods=params.regime_sma_bars).mean()
    return (level > sma).rename("is_bullish")


def _perp_weights_array(
    scores: np.ndarray, vol: np.ndarray, params: PerpParams, beta: np.ndarray | None
) -> np.ndarray:
    """The perp rule on arrays: long top-k / short bottom-k, equal $ per side, caps, optional beta."""
    weights = np.zeros(scores.size)
    eligible = np.isfinite(scores) & np.isfinite(vol) & (vol > 0)
    if params.beta_neutral:
        if beta is None:
            raise ConfigError("perp.beta_neutral is true but no betas were given")
        eligible &= np.isfinite(beta)
    candidates = np.flatnonzero(eligible)
    k = min(params.top_k, candidates.size // 2)
    if k == 0:
        return weights
    ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
    longs, shorts = ranked[:k], ranked[-k:]
    raw = 1.0 / vol if params.weighting == "inverse_vol" else np.ones(scores.size)
    cap = params.max_asset_weight_frac
    side_total = min(params.max_gross_leverage / 2, k * cap)
    weights[longs] = _cap_and_fill(raw[longs], cap, side_total)
    weights[shorts] = -_cap_and_fill(raw[shorts], cap, side_total)
    if params.beta_neutral and beta is not None:
        weights = _beta_neutralize(weights, beta, np.concatenate([longs, shorts]))
    gross = np.abs(weights).sum()
    if gross <= 0:
        return weights
    # Uniform scaling keeps both neutralities; it restores the gross target, bounded by the cap.
    return weights * min(params.max_gross_leverage / gross, cap / np.abs(weights).max())


def _beta_neutralize(weights: np.ndarray, beta: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Smallest change to the weights making sum(w) = 0 and sum(w * beta) = 0, keeping each sign.

    Names whose sign would flip are dropped and the projection redone; if no valid book is left
    (fewer than 3 names or degenerate betas) the result is flat: an unhedged book is not traded.
    """
    signs = np.sign(weights)
    flat = np.zeros_like(weights)
    while active.size >= 3:
        constraints = np.vstack([np.ones(active.size), beta[active]])
        gram = constraints @ constraints.T
        if abs(np.linalg.det(gram)) < 1e-12:
            return flat
        start = weights[active]
        projected = start - constraints.T @ np.linalg.solve(gram, constraints @ start)
        flipped = np.sign(projected) != signs[active]
        if not flipped.any():
            result = flat.copy()
            result[active] = projected
            return result
        active = active[~flipped]
    return flat


def perp_target_weights(
    scores: pd.Series, volatility: pd.Series, params: PerpParams, *, beta: pd.Series | None = None
) -> pd.Series:
    """Market-neutral target weights for one rebalance time, indexed like ``scores``.

    Long the ``top_k`` best scores, short the ``top_k`` worst (k shrinks to half the eligible
    count), each side inverse-vol (or equal) weighted to the same dollar size. Invariants:
    sum(w) = 0, sum|w| <= max_gross_leverage, |w| <= max_asset_weight_frac, and with
    ``beta_neutral`` also sum(w * beta) = 0 (``beta`` to BTC, aligned by symbol); when no book
    keeps every long long and every short short under both constraints, the result is all zero.
    """
    vol = volatility.reindex(scores.index).to_numpy(dtype=float)
    beta_arr = None if beta is None else beta.reindex(scores.index).to_numpy(dtype=float)
    weights = _perp_weights_array(scores.to_numpy(dtype=float), vol, params, beta_arr)
    return pd.Series(weights, index=scores.index, name="weight")


def rebalance_positions(n_bars: int, every_bars: int) -> np.ndarray:
    """Row positions of the rebalance ticks: 0, every, 2*every, ... counted from the first bar."""
    if every_bars < 1:
        raise ConfigError(f"rebalance_every_bars must be >= 1, got {every_bars}")
    return np.arange(0, n_bars, every_bars)


def _aligned(frame: pd.DataFrame, like: pd.DataFrame, name: str) -> np.ndarray:
    """``frame`` as an array with ``like``'s columns (missing symbol = NaN); the index must match."""
    if not frame.index.equals(like.index):
        raise DataError(f"{name} index does not match the scores index")
    return frame.reindex(columns=like.columns).to_numpy(dtype=float)


def spot_target_weight_frame(
    scores_wide: pd.DataFrame,
    volatility_wide: pd.DataFrame,
    regime: pd.Series,
    params: SpotParams,
    *,
    rebalance_every_bars: int = 1,
) -> pd.DataFrame:
    """Spot target weights for every rebalance tick of a history (time x symbol).

    Rows on the schedule hold the weights decided at that bar's close (all finite); rows between
    ticks are all-NaN, meaning "no new decision" to the backtester. ``regime`` is reindexed to the
    scores' index (missing = bearish).
    """
    vol = _aligned(volatility_wide, scores_wide, "volatility_wide")
    bullish = regime.reindex(scores_wide.index).fillna(False).to_numpy(dtype=bool)
    score_arr = scores_wide.to_numpy(dtype=float)
    out = np.full(score_arr.shape, np.nan)
    rows = rebalance_positions(len(scores_wide), rebalance_every_bars)
    out[rows] = 0.0
    eligible = np.isfinite(score_arr) & np.isfinite(vol) & (vol > 0) & (score_arr > params.min_score)
    finite_vol = np.nan_to_num(vol)
    on_tick = slice(None, None, rebalance_every_bars)  # the rows of ``rows``, as views
    sized = _spot_rows_to_size(score_arr[on_tick], vol[on_tick], bullish[on_tick], params)
    for row in rows[sized].tolist():
        out[row] = _spot_row(
            score_arr[row], vol[row], finite_vol[row], eligible[row], bool(bullish[row]), params, None
        )
    return pd.DataFrame(out, index=scores_wide.index, columns=scores_wide.columns)


def _spot_rows_to_size(scores: np.ndarray, vol: np.ndarray, bullish: np.ndarray, params: SpotParams) -> np.ndarray:
    """Rows (time x symbol arrays) whose spot weights may be non-zero; every other row is exactly 0.

    Why: sizing row by row in Python is the slow part on hourly histories, and most rows are
    warm-up (no candidate) or bearish with ``bear_exposure_frac`` 0. A bearish row is all zero
    because ``_spot_weights_array`` scales finite weights by 0.0; weights are finite when every
    candidate's raw size is in (0, max / (n + 1)] (no 0/0, no overflowing sum). Rows that could
    break this rule are sized the long way.
    """
    eligible = np.isfinite(scores) & np.isfinite(vol) & (vol > 0) & (scores > params.min_score)
    has_candidate = eligible.any(axis=1)
    if params.bear_exposure_frac != 0:
        return has_candidate
    with np.errstate(over="ignore"):  # an overflow only sends its row the long way
        raw = np.where(eligible, vol, 1.0)
        np.divide(1.0, raw, out=raw)
        if params.weighting == "score_inverse_vol":
            raw *= np.where(eligible, scores, 1.0)
    limit = np.finfo(float).max / (scores.shape[1] + 1)
    finite_sizes = ((raw > 0) & (raw <= limit) | ~eligible).all(axis=1)
    return has_candidate & (bullish | ~finite_sizes)


def perp_target_weight_frame(
    scores_wide: pd.DataFrame,
    volatility_wide: pd.DataFrame,
    params: PerpParams,
    *,
    beta_wide: pd.DataFrame | None = None,
    rebalance_every_bars: int = 1,
) -> pd.DataFrame:
    """Perp target weights for every rebalance tick (same row convention as the spot frame)."""
    vol = _aligned(volatility_wide, scores_wide, "volatility_wide")
    beta = None if beta_wide is None else _aligned(beta_wide, scores_wide, "beta_wide")
    score_arr = scores_wide.to_numpy(dtype=float)
    out = np.full(score_arr.shape, np.nan)
    rows = rebalance_positions(len(scores_wide), rebalance_every_bars)
    if not (params.beta_neutral and beta is None):  # else the first row raises, as documented
        # fewer than 2 candidates -> k = 0 -> an all-zero row (see _perp_weights_array)
        eligible = np.isfinite(score_arr[rows]) & np.isfinite(vol[rows]) & (vol[rows] > 0)
        if params.beta_neutral and beta is not None:
            eligible &= np.isfinite(beta[rows])
        out[rows] = 0.0
        rows = rows[eligible.sum(axis=1) >= 2]
    for row in rows.tolist():
        row_beta = None if beta is None else beta[row]
        out[row] = _perp_weights_array(score_arr[row], vol[row], params, row_beta)
    return pd.DataFrame(out, index=scores_wide.index, columns=scores_wide.columns)

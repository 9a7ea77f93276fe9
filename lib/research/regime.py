"""Pure: a causal Gaussian-HMM market regime (P(calm state at t | data <= t)) and exposure scalers.

The HMM sees two features per bar, both known at the bar's close: the log return and the log of its
EWMA volatility, standardized with the training window's own mean and std (the scaler is part of the
fit; unscaled returns would drown in hmmlearn's ``min_covar``). It is refitted every ``refit_every``
bars on a grid anchored at the first feature bar, on an expanding or rolling window ending at the
refit bar, from a deterministic EM start. States are relabelled after each fit in a fixed order (ascending
volatility of the return feature, or descending mean return), so state 0 is always the calm/bull
state and label switching between refits cannot flip the signal. The probability at t is the
FILTERED (forward-algorithm) probability under the latest fit, run from the fit window's start
through t; hmmlearn's ``predict_proba`` is forward-backward (smoothed) and would use the future.
A fit that raises or yields non-finite parameters is discarded and the previous fit kept.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError
from lib.core.timeframes import periods_per_year
from lib.research.volatility import RISKMETRICS_LAMBDA, ewma_volatility, refit_positions

LabelBy = Literal["volatility", "mean_return"]


def regime_features(returns: pd.Series, *, lam: float = RISKMETRICS_LAMBDA, min_periods: int = 20) -> pd.DataFrame:
    """Columns ``ret`` (the bar's log return) and ``log_vol`` (log EWMA volatility through the bar)."""
    vol = ewma_volatility(returns, lam=lam, min_periods=min_periods)
    return pd.DataFrame({"ret": returns.astype(float), "log_vol": np.log(vol.where(vol > 0))}, index=returns.index)


@dataclass(frozen=True)
class HmmParams:
    """One fit, states already in label order (0 = calm/bull); features are standardized by mean/std."""

    end_position: int
    start_position: int
    feature_mean: np.ndarray
    feature_std: np.ndarray
    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray  # standardized feature units
    covars: np.ndarray  # full covariance matrices, standardized units
    log_likelihood: float


@dataclass(frozen=True)
class RegimeResult:
    """``probabilities``: filtered P(state k at t | data <= t), column k in label order (NaN before the
    first fit); ``bull_probability`` is column 0; ``fits`` the good fits; failed refits by position."""

    probabilities: pd.DataFrame
    bull_probability: pd.Series
    fits: tuple[HmmParams, ...]
    failed_fit_positions: tuple[int, ...]


def _label_order(means: np.ndarray, covars: np.ndarray, std: np.ndarray, label_by: LabelBy) -> np.ndarray:
    if label_by == "volatility":
        return np.argsort(covars[:, 0, 0] * std[0] ** 2, kind="stable")
    return np.argsort(-means[:, 0], kind="stable")


def _initial_means(scaled: np.ndarray, n_states: int) -> np.ndarray:
    """Deterministic start: the mean feature row of each volatility quantile bucket (no k-means, no RNG)."""
    buckets = np.array_split(np.argsort(scaled[:, 1], kind="stable"), n_states)
    return np.array([scaled[bucket].mean(axis=0) for bucket in buckets])


def fit_hmm(
    features: np.ndarray, *, end_position: int, start_position: int, n_states: int = 2, seed: int = 0,
    n_iter: int = 100, label_by: LabelBy = "volatility",
) -> HmmParams | None:
    """Fit a full-covariance GaussianHMM on raw ``features`` rows (no NaN); None when unusable.

    The EM start is deterministic (means of volatility-quantile buckets, persistent transitions,
    uniform start); ``seed`` only fixes hmmlearn's own generator. One thread: the fit is small and
    the machine's cores are better left to other work than to BLAS/OpenMP contention.
    """
    from hmmlearn.hmm import GaussianHMM  # heavy import, only for callers that fit
    from threadpoolctl import threadpool_limits

    mean, std = features.mean(axis=0), features.std(axis=0)
    if len(features) < 10 * n_states or not np.all(std > 0):
        return None
    scaled = (features - mean) / std
    model = GaussianHMM(n_components=n_states, covariance_type="full", n_iter=n_iter, random_state=seed,
                        init_params="c")
    model.startprob_ = np.full(n_states, 1.0 / n_states)
    stay = 0.95 if n_states > 1 else 1.0
    model.transmat_ = np.full((n_states, n_states), (1.0 - stay) / max(n_states - 1, 1)) + np.eye(n_states) * (
        stay - (1.0 - stay) / max(n_states - 1, 1))
    model.means_ = _initial_means(scaled, n_states)
    try:
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore")
            model.fit(scaled)
            score = float(model.score(scaled))
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not np.isfinite(score):
        return None
    covars = np.asarray(model.covars_)
    order = _label_order(model.means_, covars, std, label_by)
    params = HmmParams(
        end_position=end_position, start_position=start_position, feature_mean=mean, feature_std=std,
        startprob=model.startprob_[order], transmat=model.transmat_[np.ix_(order, order)],
        means=model.means_[order], covars=covars[order], log_likelihood=score,
    )
    finite = all(np.all(np.isfinite(a)) for a in (params.startprob, params.transmat, params.means, params.covars))
    return params if finite else None


def gaussian_logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Multivariate normal log density of each row of ``x`` (numpy only: no scipy import at run time)."""
    diff = x - mean
    _, logdet = np.linalg.slogdet(cov)
    mahalanobis = np.einsum("ij,ij->i", diff @ np.linalg.inv(cov), diff)
    return -0.5 * (x.shape[1] * np.log(2.0 * np.pi) + logdet + mahalanobis)


def params_to_dict(params: HmmParams) -> dict[str, object]:
    """JSON-ready form of a fit, for a research step to store and compute_signals to read."""
    return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in vars(params).items()}


def params_from_dict(document: dict[str, object]) -> HmmParams:
    arrays = {"feature_mean", "feature_std", "startprob", "transmat", "means", "covars"}
    values = {key: np.asarray(value, dtype=float) if key in arrays else value for key, value in document.items()}
    return HmmParams(**values)  # type: ignore[arg-type]


def filtered_probabilities(features: np.ndarray, params: HmmParams) -> np.ndarray:
    """Forward-algorithm P(state | rows 0..t) for each row t of raw ``features`` (no NaN) under ``params``."""
    scaled = (features - params.feature_mean) / params.feature_std
    log_emission = np.column_stack([gaussian_logpdf(scaled, params.means[k], params.covars[k])
                                    for k in range(len(params.means))])
    emission = np.exp(log_emission - log_emission.max(axis=1, keepdims=True))  # per-row constant cancels
    out = np.empty_like(emission)
    prior = params.startprob
    for t in range(len(emission)):
        joint = prior * emission[t]
        total = joint.sum()
        out[t] = joint / total if total > 0 and np.isfinite(total) else prior
        prior = out[t] @ params.transmat
    return out


def hmm_regime(
    returns: pd.Series, *, n_states: int = 2, min_train: int = 500, refit_every: int = 30,
    window: int | None = None, seed: int = 0, n_iter: int = 100,
    label_by: LabelBy = "volatility", lam: float = RISKMETRICS_LAMBDA,
) -> RegimeResult:
    """Causal filtered regime probabilities of a return series (see the module docstring).

    Bars before the first complete feature row, and the first ``min_train - 1`` feature rows, are NaN; a
    missing return after that counts as 0. Fit positions (``end_position``, ``start_position``) are
    positions in ``returns``: a stored fit is replayed with ``filtered_probabilities`` on the feature
    rows from ``start_position`` on.
    """
    features = regime_features(returns, lam=lam)
    complete = features.notna().all(axis=1).to_numpy()
    first = int(np.argmax(complete)) if complete.any() else len(complete)
    rows = features.to_numpy(dtype=float)[first:].copy()  # writable under copy-on-write (pandas-ta turns it on)
    rows[:, 0] = np.nan_to_num(rows[:, 0], nan=0.0)  # a missing bar: no news (its EWMA vol carries over)
    probs = np.full((len(features), n_states), np.nan)
    fits: list[HmmParams] = []
    failed: list[int] = []
    positions = refit_positions(len(rows), min_train=min_train, refit_every=refit_every)
    for index, end in enumerate(positions):
        start = 0 if window is None else max(0, end + 1 - window)
        fitted = fit_hmm(rows[start:end + 1], end_position=first + end, start_position=first + start,
                         n_states=n_states, seed=seed, n_iter=n_iter, label_by=label_by)
        if fitted is None:
            failed.append(first + end)
            fitted = fits[-1] if fits else None
        else:
            fits.append(fitted)
        if fitted is None:
            continue
        stop = positions[index + 1] if index + 1 < len(positions) else len(rows)
        filter_start = fitted.start_position - first
        filtered = filtered_probabilities(rows[filter_start:stop], fitted)
        probs[first + end:first + stop] = filtered[end - filter_start:]
    frame = pd.DataFrame(probs, index=returns.index, columns=[f"state_{k}" for k in range(n_states)])
    return RegimeResult(probabilities=frame, bull_probability=frame["state_0"].rename("bull_probability"),
                        fits=tuple(fits), failed_fit_positions=tuple(failed))


def vol_target_scale(sigma: pd.Series, *, target_vol_annual: float, timeframe: str, cap: float = 1.0) -> pd.Series:
    """``min(cap, target / annualized sigma)``; 0 where the forecast is missing or not positive (fail closed)."""
    if target_vol_annual <= 0 or cap <= 0:
        raise ConfigError(f"target volatility and cap must be positive, got {target_vol_annual}, {cap}")
    annual = sigma.astype(float) * float(np.sqrt(periods_per_year(timeframe)))
    scale = (target_vol_annual / annual.where(annual > 0)).clip(upper=cap)
    return scale.fillna(0.0)


def regime_scale(
    probability: pd.Series, *, mode: Literal["linear", "step"] = "linear", floor: float = 0.0,
    threshold: float = 0.5, missing: float = 0.0,
) -> pd.Series:
    """Exposure multiplier in [floor, 1] from P(calm/bull): linear ``floor + (1 - floor) * p``, or 1 when
    ``p >= threshold`` else ``floor``. A missing probability gives ``missing`` (default 0: fail closed)."""
    if not 0.0 <= floor <= 1.0 or not 0.0 <= missing <= 1.0:
        raise ConfigError(f"floor and missing must be in [0, 1], got {floor}, {missing}")
    p = probability.astype(float)
    if mode == "linear":
        scale = floor + (1.0 - floor) * p
    else:
        scale = pd.Series(np.where(p >= threshold, 1.0, floor), index=p.index)
    return scale.where(p.notna(), missing)

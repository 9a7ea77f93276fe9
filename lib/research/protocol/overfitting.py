"""Pure: how much of a backtest's best result is selection luck — the probability of backtest
overfitting (PBO, by combinatorially symmetric cross-validation) and the deflated Sharpe ratio (DSR).

PBO (Bailey, Borwein, Lopez de Prado, Zhu 2017, "The probability of backtest overfitting"): the rows are cut
into S contiguous blocks; for each of the C(S, S/2) ways to call half of them in-sample, the configuration
with the best in-sample Sharpe is found and its out-of-sample Sharpe ranked among ALL configurations:
omega = rank / (N + 1), logit = ln(omega / (1 - omega)). PBO = share of combinations with logit <= 0,
i.e. where the in-sample winner is no better than the median out of sample. Noise configurations give ~0.5;
one configuration that truly dominates gives ~0. Ties are ranked by their average rank.

DSR (Bailey & Lopez de Prado 2014, "The deflated Sharpe ratio"): the probability that the true Sharpe
exceeds SR0, the Sharpe the best of N unskilled trials would show by luck,
    SR0 = sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e))),   g = Euler-Mascheroni,
    DSR = Z((SR - SR0) * sqrt(T - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2)),
with SR, SR0 and V (the variance of the trials' Sharpes) per period (daily), kurtosis non-excess (normal =
3) and T the number of returns. With one trial (or no spread among trials) SR0 = 0: DSR is then the
probabilistic Sharpe ratio against zero.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
from scipy import stats

from lib.core.errors import ConfigError, DataError
from lib.research.protocol.frame import ANNUALIZE, check_returns_matrix, ratio_or_flat, sharpe_per_period

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class PboOutcome:
    """``pbo``: the probability; ``logits``: one per combination; ``oos_sharpe_of_best_annual`` and
    ``is_sharpe_of_best_annual``: the in-sample winner's Sharpe out of / in sample, per combination."""

    pbo: float
    logits: np.ndarray
    is_sharpe_of_best_annual: np.ndarray
    oos_sharpe_of_best_annual: np.ndarray
    blocks: int

    def summary(self) -> dict[str, float]:
        slope = (float(np.polyfit(self.is_sharpe_of_best_annual, self.oos_sharpe_of_best_annual, 1)[0])
                 if np.ptp(self.is_sharpe_of_best_annual) > 0 else float("nan"))
        return {
            "pbo": self.pbo, "combinations": float(len(self.logits)), "blocks": float(self.blocks),
            "logit_median": float(np.median(self.logits)),
            "prob_oos_sharpe_not_positive": float((self.oos_sharpe_of_best_annual <= 0).mean()),
            "is_sharpe_of_best_median": float(np.median(self.is_sharpe_of_best_annual)),
            "oos_sharpe_of_best_median": float(np.median(self.oos_sharpe_of_best_annual)),
            "degradation_slope": slope,
        }  # fmt: skip


def probability_of_backtest_overfitting(returns: pd.DataFrame, *, blocks: int = 16) -> PboOutcome:
    """PBO of choosing the best-Sharpe column of ``returns`` (ALL configurations tried), CSCV with
    ``blocks`` contiguous blocks (even; the rows are split as evenly as possible).

    Raises:
        ConfigError: ``blocks`` odd or < 2. DataError: fewer than 2 columns, or fewer than 2 rows a block.
    """
    check_returns_matrix(returns)
    if blocks < 2 or blocks % 2:
        raise ConfigError(f"pbo blocks must be an even number >= 2, got {blocks}")
    values = returns.to_numpy(dtype=float)
    n_rows, n_configs = values.shape
    if n_configs < 2:
        raise DataError("pbo needs >= 2 configurations")
    if n_rows < 2 * blocks:
        raise DataError(f"pbo: {n_rows} rows are too few for {blocks} blocks")
    parts = np.array_split(np.arange(n_rows), blocks)
    count = np.array([len(part) for part in parts], dtype=float)
    total = np.stack([values[part].sum(axis=0) for part in parts])
    squares = np.stack([(values[part] ** 2).sum(axis=0) for part in parts])
    combos = np.array(list(itertools.combinations(range(blocks), blocks // 2)))
    in_sample = np.zeros((len(combos), blocks))
    in_sample[np.arange(len(combos))[:, None], combos] = 1.0
    is_sharpe = _pooled_sharpe(in_sample, count, total, squares)
    oos_sharpe = _pooled_sharpe(1.0 - in_sample, count, total, squares)
    best = np.argmax(np.where(np.isfinite(is_sharpe), is_sharpe, -np.inf), axis=1)
    ranks = stats.rankdata(np.where(np.isfinite(oos_sharpe), oos_sharpe, -np.inf), axis=1)
    omega = ranks[np.arange(len(combos)), best] / (n_configs + 1)
    logits = np.log(omega / (1.0 - omega))
    rows = np.arange(len(combos))
    return PboOutcome(pbo=float((logits <= 0).mean()), logits=logits, blocks=blocks,
                      is_sharpe_of_best_annual=is_sharpe[rows, best] * ANNUALIZE,
                      oos_sharpe_of_best_annual=oos_sharpe[rows, best] * ANNUALIZE)


def _pooled_sharpe(member: np.ndarray, count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Per-period Sharpe (ddof=1) of the rows of the blocks flagged in ``member`` (combos x blocks)."""
    n = member @ count
    mean = (member @ total) / n[:, None]
    variance = ((member @ squares) - n[:, None] * mean**2) / (n[:, None] - 1)
    return ratio_or_flat(mean, np.sqrt(np.clip(variance, 0.0, None)))


def expected_max_sharpe(n_trials: int, trial_sharpe_variance: float) -> float:
    """SR0: the expected maximum per-period Sharpe of ``n_trials`` unskilled trials (0 for one trial)."""
    if n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1 or not trial_sharpe_variance > 0:
        return 0.0
    first = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    second = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(trial_sharpe_variance) * ((1.0 - EULER_GAMMA) * first + EULER_GAMMA * second)


def deflated_sharpe_ratio(sharpe: float, *, n_obs: int, skew: float, kurtosis: float, sr0: float) -> float:
    """DSR = Z((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurtosis - 1)/4 SR^2)), per-period SRs."""
    if n_obs < 2 or not math.isfinite(sharpe):
        return float("nan")
    spread = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not spread > 0:
        return float("nan")
    return _NORMAL.cdf((sharpe - sr0) * math.sqrt(n_obs - 1) / math.sqrt(spread))


def deflated_sharpe_report(
    selected: pd.Series, returns: pd.DataFrame, *, n_trials: int | None = None
) -> dict[str, float]:
    """DSR of ``selected`` (daily returns of the chosen configuration) given ALL trials in ``returns``:
    N = column count (or ``n_trials``: every configuration the project tried, including runs whose returns
    are not in ``returns``; at least the column count), V = variance (ddof=1) of the columns' per-period Sharpes.

    Raises:
        ConfigError: ``n_trials`` below the column count.
    """
    count = returns.shape[1] if n_trials is None else n_trials
    if count < returns.shape[1]:
        raise ConfigError(f"n_trials {n_trials} is below the {returns.shape[1]} trials in the returns matrix")
    trial_sharpes = sharpe_per_period(returns.to_numpy(dtype=float))
    finite = trial_sharpes[np.isfinite(trial_sharpes)]
    variance = float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0
    values = selected.to_numpy(dtype=float)
    sharpe = float(sharpe_per_period(values))
    skew, kurtosis = float(stats.skew(values)), float(stats.kurtosis(values, fisher=False))
    sr0 = expected_max_sharpe(count, variance)
    return {
        "dsr": deflated_sharpe_ratio(sharpe, n_obs=len(values), skew=skew, kurtosis=kurtosis, sr0=sr0),
        "sharpe_per_period": sharpe, "sharpe_annual": sharpe * ANNUALIZE, "sr0_per_period": sr0,
        "sr0_annual": sr0 * ANNUALIZE, "n_trials": float(count), "trial_sharpe_variance": variance,
        "skew": skew, "kurtosis": kurtosis, "n_obs": float(len(values)),
    }  # fmt: skip

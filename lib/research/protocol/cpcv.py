"""Pure: combinatorial purged cross-validation (Lopez de Prado) of "pick the in-sample best" over a
returns matrix, with skfolio's maintained ``CombinatorialPurgedCV`` doing the splitting.

Each split trains on ``n_folds - n_test_folds`` folds (purged and embargoed around the test folds, in
rows = days) and tests on the rest. On every split the configuration with the best train Sharpe is
chosen; its returns on each test fold are assigned to the backtest PATH skfolio says that fold belongs to
(``get_path_ids``), so each of the ``n_test_paths`` paths is a full out-of-sample history of the
selection procedure. The distribution of their Sharpes is the CPCV answer; one number alone is not.

Also per configuration: its Sharpe on each split's test days (the test folds joined), whose median is a
robust full-period estimate that no single regime dominates (the selection rule uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from skfolio.model_selection import CombinatorialPurgedCV

from lib.core.errors import ConfigError, DataError
from lib.research.protocol.frame import ANNUALIZE, check_returns_matrix, sharpe_per_period
from lib.research.protocol.walkforward import best_column


@dataclass(frozen=True, slots=True, kw_only=True)
class CpcvParams:
    """Fold layout (rows are days): with 6 folds and 2 test folds, 15 splits recombine into 5 paths."""

    n_folds: int = 6
    n_test_folds: int = 2
    purged_size: int = 1
    embargo_size: int = 5

    def __post_init__(self) -> None:
        if self.n_folds < 3 or not 2 <= self.n_test_folds < self.n_folds:
            raise ConfigError("cpcv needs n_folds >= 3 and 2 <= n_test_folds < n_folds")
        if self.purged_size < 0 or self.embargo_size < 0:
            raise ConfigError("cpcv purged_size and embargo_size must be >= 0")


@dataclass(frozen=True, slots=True)
class CpcvOutcome:
    """``path_returns``: one column per path (the stitched OOS returns of the per-split choices);
    ``path_sharpe_annual``: their annualized Sharpes; ``splits``: per split, the chosen column and its
    train/test Sharpe; ``config_test_sharpe_annual``: split x configuration Sharpe on the test days."""

    path_returns: pd.DataFrame
    path_sharpe_annual: pd.Series
    splits: pd.DataFrame
    config_test_sharpe_annual: pd.DataFrame

    def distribution(self) -> dict[str, float]:
        """Median, quartiles, min/max of the path Sharpes and the share of paths with Sharpe <= 0."""
        sharpe = self.path_sharpe_annual.to_numpy(dtype=float)
        quantiles = np.quantile(sharpe, [0.0, 0.25, 0.5, 0.75, 1.0])
        keys = ("min", "q25", "median", "q75", "max")
        return {**dict(zip(keys, map(float, quantiles), strict=True)),
                "mean": float(sharpe.mean()), "share_not_positive": float((sharpe <= 0).mean()),
                "paths": float(len(sharpe))}  # fmt: skip


def make_cv(params: CpcvParams) -> CombinatorialPurgedCV:
    return CombinatorialPurgedCV(n_folds=params.n_folds, n_test_folds=params.n_test_folds,
                                 purged_size=params.purged_size, embargo_size=params.embargo_size)


def run_cpcv(returns: pd.DataFrame, params: CpcvParams, *, tie_break: pd.Series | None = None) -> CpcvOutcome:
    """CPCV of in-sample-best selection by per-period Sharpe (see the module docstring).

    Raises:
        DataError: the matrix is too short for the fold layout with its purge and embargo.
    """
    check_returns_matrix(returns)
    cv = make_cv(params)
    values = returns.to_numpy(dtype=float)
    path_ids = cv.get_path_ids()
    paths = np.full((len(returns), cv.n_test_paths), np.nan)
    split_rows, config_rows = [], []
    try:
        splits = list(cv.split(values))
    except ValueError as error:
        raise DataError(f"cpcv: {error}") from None
    for number, (train_rows, test_folds) in enumerate(splits):
        scores = pd.Series(sharpe_per_period(values[train_rows]), index=returns.columns)
        chosen = best_column(scores, tie_break)
        column = returns.columns.get_loc(chosen)
        for fold_rows, path in zip(test_folds, path_ids[number], strict=True):
            paths[fold_rows, path] = values[fold_rows, column]
        test_rows = np.concatenate(test_folds)
        test_sharpe = sharpe_per_period(values[test_rows]) * ANNUALIZE
        config_rows.append(test_sharpe)
        split_rows.append({
            "split": number, "chosen": chosen, "train_days": len(train_rows), "test_days": len(test_rows),
            "train_sharpe_annual": float(scores[chosen] * ANNUALIZE),
            "test_sharpe_annual": float(test_sharpe[column]),
        })  # fmt: skip
    if np.isnan(paths).any():
        raise DataError("cpcv: a path has days no split tested (skfolio layout changed?)")
    path_frame = pd.DataFrame(paths, index=returns.index, columns=[f"path_{k}" for k in range(paths.shape[1])])
    return CpcvOutcome(
        path_returns=path_frame,
        path_sharpe_annual=pd.Series(sharpe_per_period(paths) * ANNUALIZE, index=path_frame.columns),
        splits=pd.DataFrame(split_rows),
        config_test_sharpe_annual=pd.DataFrame(config_rows, columns=returns.columns),
    )

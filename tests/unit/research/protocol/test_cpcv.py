"""CPCV through skfolio: purge/embargo keep test days (and their neighbours) out of train; each path is a
full out-of-sample history of the in-sample-best choice; a dominant configuration wins every split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lib.core.errors import DataError
from lib.research.protocol.cpcv import CpcvParams, make_cv, run_cpcv
from tests.unit.research.protocol.helpers import noise


def test_purge_and_embargo_keep_test_days_and_their_neighbours_out_of_train() -> None:
    params = CpcvParams(n_folds=6, n_test_folds=2, purged_size=2, embargo_size=3)
    rows = np.arange(300)
    for train, test_folds in make_cv(params).split(rows.reshape(-1, 1)):
        train_set = set(train.tolist())
        for fold in test_folds:
            assert not train_set & set(fold.tolist())
            before = set(range(fold[0] - params.purged_size, fold[0]))
            after = set(range(fold[-1] + 1, fold[-1] + 1 + params.purged_size + params.embargo_size))
            assert not train_set & before and not train_set & after


def test_split_and_path_counts_and_paths_cover_every_day() -> None:
    returns = noise(300, 4, seed=2)
    outcome = run_cpcv(returns, CpcvParams(n_folds=6, n_test_folds=2))
    assert len(outcome.splits) == math.comb(6, 2) == 15
    assert outcome.path_returns.shape == (300, 5)  # C(6,2) * 2 / 6 = 5 paths
    assert not outcome.path_returns.isna().any().any()
    # every path day is the day's return of SOME configuration
    for day in (0, 150, 299):
        assert all(np.isclose(returns.iloc[day].to_numpy(), value).any()
                   for value in outcome.path_returns.iloc[day])
    assert outcome.config_test_sharpe_annual.shape == (15, 4)


def test_a_dominant_configuration_is_chosen_on_every_split() -> None:
    returns = noise(300, 5, seed=3)
    returns["c2"] += 0.01
    outcome = run_cpcv(returns, CpcvParams(n_folds=5, n_test_folds=2, purged_size=1, embargo_size=2))
    assert set(outcome.splits["chosen"]) == {"c2"}
    for column in outcome.path_returns:
        np.testing.assert_allclose(outcome.path_returns[column].to_numpy(), returns["c2"].to_numpy())
    assert outcome.distribution()["share_not_positive"] == 0.0


def test_too_short_for_the_purge_is_refused() -> None:
    with pytest.raises(DataError):
        run_cpcv(noise(30, 2, seed=1), CpcvParams(n_folds=6, n_test_folds=2, purged_size=2, embargo_size=3))

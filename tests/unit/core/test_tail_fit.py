"""lib.core.tail_fit: the pre-trade tail rule (fit_book, moved from lib.execution.tail_risk_checks) and its
vectorized form for many books (book_scales, fitting_scales) against hand-computed cases and fit_to_limits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import DataError
from lib.core.tail_fit import book_scales, fit_book, fitting_scales, limit_scales, worst_var_cvar_rows
from lib.core.tail_limits import fit_to_limits, worst_var_cvar

# 19 days of +1 % and one of -10 % (as tests/unit/core/test_tail_limits.py): historical 99 % VaR = CVaR = 10 %,
# Gaussian 5.27 % / 6.11 %, so a book of weight w has VaR = CVaR = w x 10 %: limits 8 % / 12 % -> k = 0.8 / w.
CRASH = [0.01] * 19 + [-0.10]


def _closes(returns: list[float]) -> pd.Series:
    return pd.Series(100.0 * np.cumprod([1.0] + [1.0 + r for r in returns]))


def test_book_scales_hand_computed() -> None:
    returns = np.array([CRASH, CRASH]).T  # two assets that moved alike
    books = np.array([[1.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 2.0], [0.0, 0.0]])
    scales = book_scales(returns, books, max_var=0.08, max_cvar=0.12)
    np.testing.assert_allclose(scales, [0.8, 1.0, 0.8, 0.4, 1.0], rtol=1e-12)
    # CVaR binds: limits 20 % / 5 % on VaR = CVaR = 10 % -> k = 0.5
    assert book_scales(returns[:, :1], np.array([[1.0]]), max_var=0.2, max_cvar=0.05)[0] == pytest.approx(0.5)


def test_an_unknown_risk_is_nan_as_fit_book_raises() -> None:
    returns = np.array([CRASH, [np.nan] * 12 + CRASH[-8:]]).T  # B: 8 returns only (a new listing)
    scales = book_scales(returns, np.array([[1.0, 0.0], [0.5, 0.1], [0.0, 0.0]]), max_var=0.08, max_cvar=0.12)
    assert scales[0] == pytest.approx(0.8) and np.isnan(scales[1]) and scales[2] == 1.0
    short = book_scales(returns[:10], np.array([[1.0, 0.0], [0.0, 0.0]]), max_var=0.08, max_cvar=0.12)
    assert np.isnan(short[0]) and short[1] == 1.0  # 10 days: no estimate; an empty book is no risk
    closes = {"A": _closes(CRASH), "B": _closes(CRASH[-8:]).set_axis(range(12, 21))}
    with pytest.raises(DataError, match=r"fewer than 20 daily returns for \['B'\]"):
        fit_book({"A": 0.5, "B": 0.1}, closes, fixed={}, max_var=0.08, max_cvar=0.12, lookback_days=365)
    check, days = fit_book({"A": 1.0}, closes, fixed={}, max_var=0.08, max_cvar=0.12, lookback_days=365)
    assert check.scale == pytest.approx(0.8) and days == 20


def test_limits_must_be_positive() -> None:
    with pytest.raises(DataError, match="must be > 0"):
        limit_scales(np.array([0.1]), np.array([0.1]), max_var=0.0, max_cvar=0.1)


def _random_case(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_days, n_assets = int(rng.integers(20, 400)), 6
    returns = rng.standard_t(3, size=(n_days, n_assets)) * rng.uniform(0.01, 0.06, n_assets)
    returns[rng.random(returns.shape) < 0.05] = np.nan  # gaps: a missing day counts as 0
    books = rng.uniform(-0.5, 1.0, size=(12, n_assets)) * (rng.random((12, n_assets)) < 0.6)
    return pd.DataFrame(returns, columns=[f"S{a}" for a in range(n_assets)]), books


@pytest.mark.parametrize("seed", range(8))
def test_many_books_at_once_equal_fit_to_limits_one_by_one(seed: int) -> None:
    frame, books = _random_case(seed)
    scales = book_scales(frame.to_numpy(), books, max_var=0.05, max_cvar=0.07)
    for book, scale in zip(books, scales, strict=True):
        weights = {s: float(w) for s, w in zip(frame.columns, book, strict=True) if w != 0}
        if not weights:
            assert scale == 1.0
            continue
        assert scale == pytest.approx(fit_to_limits(weights, frame, max_var=0.05, max_cvar=0.07).scale, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_the_shortcut_gives_the_full_evaluations_factors(seed: int) -> None:
    frame, books = _random_case(seed)
    book_returns = books @ np.nan_to_num(frame.to_numpy()).T
    var, cvar = worst_var_cvar_rows(book_returns)
    for row, v, c in zip(book_returns, var, cvar, strict=True):
        assert (v, c) == pytest.approx(worst_var_cvar(pd.Series(row)), rel=1e-12)
    for max_var, max_cvar in ((0.05, 0.07), (0.5, 0.7), (0.01, 0.2)):  # all, none and some books fitting
        np.testing.assert_allclose(fitting_scales(book_returns, max_var=max_var, max_cvar=max_cvar),
                                   limit_scales(var, cvar, max_var=max_var, max_cvar=max_cvar), rtol=1e-12)

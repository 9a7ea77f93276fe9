"""Turnover control: entries, exits, bands, material change and no leverage, bar by bar (by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from lib.core.errors import ConfigError
from lib.research.sleeves.turnover import (
    ENTRY,
    EXIT,
    KEPT_BY_BAND,
    RESIZED,
    UNCHANGED,
    TurnoverParams,
    control_row,
    control_turnover,
)

PARAMS = TurnoverParams(min_weight_frac=0.01, band_abs_frac=0.02, band_rel_frac=0.25, min_rebalance_frac=0.05)


def test_entries_exits_and_bands():
    previous = np.array([0.0, 0.20, 0.20, 0.10, 0.0])
    raw = np.array([0.05, 0.0, 0.24, 0.30, 0.005])
    targets, reasons = control_row(raw, previous, PARAMS)
    # entry at 0.05; exit; 0.20 -> 0.24: |0.04| < 0.02 + 0.25 x 0.2 = 0.07 -> kept; 0.10 -> 0.30: 0.2 >= 0.045
    # -> resized; 0.005 < min weight -> stays out
    np.testing.assert_allclose(targets, [0.05, 0.0, 0.20, 0.30, 0.0])
    assert reasons.tolist() == [ENTRY, EXIT, KEPT_BY_BAND, RESIZED, UNCHANGED]


def test_small_total_change_is_not_traded():
    previous = np.array([0.10, 0.30])
    raw = np.array([0.146, 0.30])  # 0.046 >= 0.02 + 0.025: a move, but the book changes by 0.046 < 0.05
    targets, reasons = control_row(raw, previous, PARAMS)
    np.testing.assert_allclose(targets, previous)
    assert reasons.tolist() == [KEPT_BY_BAND, UNCHANGED]
    raw = np.array([0.16, 0.30])  # 0.06 >= 0.05: traded
    targets, reasons = control_row(raw, previous, PARAMS)
    np.testing.assert_allclose(targets, [0.16, 0.30])
    assert reasons.tolist() == [RESIZED, UNCHANGED]


def test_kept_weights_never_lever_the_book():
    previous = np.array([0.60, 0.0])
    raw = np.array([0.55, 0.50])  # 0.60 kept (inside its band) + a 0.50 entry = 1.10 -> scaled to 1
    targets, _ = control_row(raw, previous, PARAMS)
    np.testing.assert_allclose(targets, [0.60 / 1.1, 0.50 / 1.1])


def test_history_starts_from_cash_and_zero_params_follow_raw():
    raw = np.array([[0.0, 0.0], [0.30, 0.0], [0.31, 0.10], [0.0, 0.10], [0.0, np.nan]])
    targets, reasons = control_turnover(raw, PARAMS)
    np.testing.assert_allclose(targets, [[0, 0], [0.30, 0], [0.30, 0.10], [0.0, 0.10], [0.0, 0.0]])
    assert reasons[2].tolist() == [KEPT_BY_BAND, ENTRY] and reasons[4].tolist() == [UNCHANGED, EXIT]
    off = TurnoverParams(min_weight_frac=0.0, band_abs_frac=0.0, band_rel_frac=0.0, min_rebalance_frac=0.0)
    np.testing.assert_allclose(control_turnover(raw, off)[0], np.nan_to_num(raw))


def test_bands_cut_turnover_on_a_noisy_target():
    rng = np.random.default_rng(0)
    raw = np.clip(0.2 + rng.normal(0, 0.01, size=(500, 3)), 0, None)
    targets, _ = control_turnover(raw, PARAMS)
    traded = np.abs(np.diff(targets, axis=0)).sum()
    assert traded == 0.0  # noise of +-1 % never leaves the band after the first entries
    assert np.abs(np.diff(raw, axis=0)).sum() > 15


@pytest.mark.parametrize("key", ["min_weight_frac", "band_abs_frac", "band_rel_frac", "min_rebalance_frac"])
def test_turnover_params_reject_nonsense(key):
    with pytest.raises(ConfigError):
        TurnoverParams(**{key: -0.1})

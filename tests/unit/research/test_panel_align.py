"""lib/research/panel_align.py: a frame on a panel's labels, aligned as pandas aligns, not copied when they match."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.research.panel_align import on_panel


def test_a_frame_on_the_panels_labels_is_itself() -> None:
    close = pd.DataFrame(np.ones((3, 2)), index=[10, 20, 30], columns=["A", "B"])
    same = pd.DataFrame([[True, False]] * 3, index=[10, 20, 30], columns=["A", "B"])
    assert on_panel(same, close, missing=False) is same


def test_other_labels_are_aligned_and_missing_values_filled_as_asked() -> None:
    """A missing eligibility must read False (NaN would read True as a bool), a missing conviction NaN."""
    close = pd.DataFrame(np.ones((3, 2)), index=[10, 20, 30], columns=["A", "B"])
    partial = pd.DataFrame([[True], [True]], index=[30, 10], columns=["B"])
    np.testing.assert_array_equal(on_panel(partial, close, missing=False).to_numpy(dtype=bool),
                                  [[False, True], [False, False], [False, True]])
    conviction = pd.DataFrame([[0.5]], index=[20], columns=["A"])
    np.testing.assert_array_equal(on_panel(conviction, close).to_numpy(dtype=float),
                                  [[np.nan, np.nan], [0.5, np.nan], [np.nan, np.nan]])

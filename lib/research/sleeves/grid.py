"""Pure: the sleeve books' candidate grids for the research protocol (every entry is a counted trial).

Each entry is a settings override ``{"section.field": value}`` on the config's settings, simplest (the
defaults) first; they are the configurations of docs/research_log.md, chosen for an economic reason each
(trend horizon length, volatility target, sizing rule, correlation handling, turnover bands, hysteresis),
not fished. ``lib.research.candidates`` (research protocol) registers them as the ``trend_core`` and
``combined`` families.
"""

from __future__ import annotations

from typing import Any

_BANDS_OFF = {"turnover.min_weight_frac": 0.0, "turnover.band_abs_frac": 0.0, "turnover.band_rel_frac": 0.0,
              "turnover.min_rebalance_frac": 0.0}

TREND_CORE_GRID: tuple[dict[str, Any], ...] = (
    {},
    {"trend.horizons_bars": (10, 30, 90)},
    {"trend.horizons_bars": (50, 100, 200)},
    {"sizing.target_vol_annual_frac": 0.3},
    {"sizing.target_vol_annual_frac": 0.6},
    {"sizing.method": "inverse_vol"},
    {"sizing.cluster_aware": False},
    {"sizing.cluster_correlation": 0.5},
    {"sizing.cluster_correlation": 0.85},  # v1's pick; protocol v2 chose 0.7 (the first default) again
    {"sizing.kelly_fraction": 0.0},
    {"sizing.refresh_every_bars": 1},
    _BANDS_OFF,
    {"turnover.band_abs_frac": 0.05, "turnover.band_rel_frac": 0.5},
    {"trend.entry_buffer_frac": 0.0},
    {"trend.entry_buffer_frac": 0.05},
)
"""trend_core: the defaults, then one economically motivated change at a time."""

XSECTION_MOMENTUM_GRID: tuple[dict[str, Any], ...] = ({},)
"""xsection_momentum alone (lib.research.xsection defaults: 30-bar return skipping 3, top 5, positive only)."""

COMBINED_GRID: tuple[dict[str, Any], ...] = (
    {},
    {"combiner.budgets": (0.5, 0.5)},
    {"combiner.sleeves": ("trend_core", "ensemble")},
    {"combiner.sleeves": ("trend_core", "ensemble"), "combiner.budgets": (0.5, 0.5)},
)
"""combined: trend_core + xsection_momentum at 0.7/0.3 and 0.5/0.5, then trend_core + the legacy spot
ensemble as a sleeve (the first default, research-log trials 14 and 19)."""

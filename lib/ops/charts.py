"""Edge (rendering): precomputed frames -> matplotlib Figure (Agg) -> PNG bytes. The only matplotlib importer.

Computes nothing: curves and drawdowns arrive ready (lib.ops.reporting / the backtest build them with
lib.research.metrics). Uses ``matplotlib.figure.Figure`` with the Agg canvas directly, never pyplot, so there is
no global figure state, no display backend and nothing to close; the PNG carries no timestamp metadata,
so the same frames give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The first 8 bytes of every PNG file."""
FIGURE_SIZE_IN = (9.0, 6.0)
DPI = 100


def render_equity_chart(curves_quote: pd.DataFrame, drawdowns_frac: pd.DataFrame, *, title: str,
                        quote: str = "USDT") -> bytes:
    """Two panels sharing the time axis: each curve of ``curves_quote`` (one column per line, legend =
    column name) and each column of ``drawdowns_frac`` (fractions <= 0, drawn as percent).

    Both frames are indexed by time (a DatetimeIndex, or numbers). A single row is drawn as markers.
    """
    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    marker = "o" if len(curves_quote) == 1 else None
    for name, curve in curves_quote.items():
        top.plot(curves_quote.index, curve.to_numpy(dtype="float64"), label=str(name), linewidth=1.4,
                 marker=marker)
    top.set_title(title)
    top.set_ylabel(quote)
    top.grid(alpha=0.3)
    if len(curves_quote.columns):
        top.legend(loc="upper left", fontsize="small")
    for name, drawdown in drawdowns_frac.items():
        bottom.plot(drawdowns_frac.index, drawdown.to_numpy(dtype="float64"), label=str(name), linewidth=1.0,
                    marker=marker)
    bottom.set_ylabel("drawdown")
    bottom.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    bottom.grid(alpha=0.3)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Backtest chart (appended by the backtest engineer; used by scripts/backtest.py). Computes nothing either:
# the curves, drawdowns and exposures come from lib.research.study.chart_data.chart_frames.
# ---------------------------------------------------------------------------------------------------------

BACKTEST_FIGURE_SIZE_IN = (10.0, 8.0)


def render_backtest_chart(curves_quote: pd.DataFrame, drawdowns_frac: pd.DataFrame,
                          exposure_frac: pd.DataFrame, *, title: str, quote: str = "USDT") -> bytes:
    """Three panels sharing the time axis: equity curves on a LOG scale (strategy and benchmarks, one
    line per column), their drawdowns (fractions <= 0, drawn as percent) and the strategy's exposure
    (one line per column of ``exposure_frac``, e.g. gross and net, as percent of equity).

    Why log: strategies and benchmarks that differ by 10x stay readable, and equal slopes mean equal
    growth rates. Non-positive values (a wiped-out book) are not drawn on the log panel.
    """
    figure = Figure(figsize=BACKTEST_FIGURE_SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    top, middle, bottom = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1.2, 1)})
    for name, curve in curves_quote.items():
        values = curve.to_numpy(dtype="float64", copy=True)
        values[~(values > 0)] = float("nan")
        top.plot(curves_quote.index, values, label=str(name), linewidth=1.6 if name == "strategy" else 1.0)
    top.set_yscale("log")
    top.set_title(title)
    top.set_ylabel(f"{quote} (log)")
    top.grid(alpha=0.3, which="both")
    if len(curves_quote.columns):
        top.legend(loc="upper left", fontsize="small")
    for name, drawdown in drawdowns_frac.items():
        middle.plot(drawdowns_frac.index, drawdown.to_numpy(dtype="float64"), label=str(name), linewidth=1.0)
    middle.set_ylabel("drawdown")
    middle.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    middle.grid(alpha=0.3)
    for name, exposure in exposure_frac.items():
        bottom.plot(exposure_frac.index, exposure.to_numpy(dtype="float64"), label=str(name), linewidth=1.0)
    bottom.set_ylabel("exposure")
    bottom.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    bottom.grid(alpha=0.3)
    if len(exposure_frac.columns):
        bottom.legend(loc="upper left", fontsize="small")
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Research-protocol chart (scripts/research.py): histograms of Sharpe ratios / PBO logits, with reference lines.
# ---------------------------------------------------------------------------------------------------------


def render_distribution_chart(panels: Mapping[str, tuple[Sequence[float], Mapping[str, float]]], *,
                              title: str) -> bytes:
    """One histogram panel per entry of ``panels`` (panel title -> (values, {line label: x})), stacked;
    each reference line is a dashed vertical line with its label in the legend. NaN values are skipped."""
    figure = Figure(figsize=BACKTEST_FIGURE_SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    for axis, (name, (values, lines)) in zip(axes, panels.items(), strict=False):
        finite = [float(value) for value in values if math.isfinite(float(value))]
        axis.hist(finite, bins=min(40, max(5, len(finite) // 3)), color="tab:blue", alpha=0.7)
        for (label, x), color in zip(lines.items(), ("tab:red", "tab:green", "tab:orange", "black"), strict=False):
            if math.isfinite(x):
                axis.axvline(x, color=color, linestyle="--", linewidth=1.2, label=f"{label} ({x:.2f})")
        axis.set_title(f"{name} (n = {len(finite)})", fontsize="medium")
        axis.grid(alpha=0.3)
        if lines:
            axis.legend(loc="upper left", fontsize="small")
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()

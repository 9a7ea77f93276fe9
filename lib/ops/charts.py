"""Edge (rendering): precomputed frames -> matplotlib Figure (Agg) -> PNG bytes. The only matplotlib importer,
and only when a chart is drawn (matplotlib costs ~0.3 s and ~30 MB: a backtest loads it after its peak).

Computes nothing: curves and drawdowns arrive ready (lib.ops.reporting / the backtest build them with
lib.research.metrics). Uses ``matplotlib.figure.Figure`` with the Agg canvas directly, never pyplot, so there is
no global figure state, no display backend and nothing to close; the PNG carries no timestamp metadata,
so the same frames give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The first 8 bytes of every PNG file."""
FIGURE_SIZE_IN = (9.0, 6.0)
DPI = 100


def _figure(size_in: tuple[float, float], *, constrained: bool = True) -> Figure:
    """A figure on its own Agg canvas (matplotlib is imported here, on first use); constrained layout, or fixed
    margins (the solver costs ~0.15 s a chart: charts of a known shape fix them)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size_in, dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(figure)
    return figure


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


def _date_numbers(index: pd.Index) -> Any:
    """A UTC DatetimeIndex as matplotlib date numbers in one vectorized step (matplotlib's unit converter walks
    the index element by element); other indexes unchanged."""
    if not isinstance(index, pd.DatetimeIndex):
        return index
    from matplotlib.dates import date2num

    return date2num((index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index).to_numpy())


def render_equity_chart(curves_quote: pd.DataFrame, drawdowns_frac: pd.DataFrame, *, title: str,
                        quote: str = "USDT") -> bytes:
    """Two panels sharing the time axis: each curve of ``curves_quote`` (one column per line, legend =
    column name) and each column of ``drawdowns_frac`` (fractions <= 0, drawn as percent).

    Both frames are indexed by time (a DatetimeIndex, or numbers). A single row is drawn as markers.
    """
    figure = _figure(FIGURE_SIZE_IN)
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
    _percent_axis(bottom)
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
BACKTEST_MARGINS = {"left": 0.085, "right": 0.985, "top": 0.955, "bottom": 0.075, "hspace": 0.08}


def render_backtest_chart(curves_quote: pd.DataFrame, drawdowns_frac: pd.DataFrame,
                          exposure_frac: pd.DataFrame, *, title: str, quote: str = "USDT") -> bytes:
    """Three panels sharing the time axis: equity curves on a LOG scale (strategy and benchmarks, one
    line per column), their drawdowns (fractions <= 0, drawn as percent) and the strategy's exposure
    (one line per column of ``exposure_frac``, e.g. gross and net, as percent of equity).

    Why log: strategies and benchmarks that differ by 10x stay readable, and equal slopes mean equal
    growth rates. Non-positive values (a wiped-out book) are not drawn on the log panel.
    """
    figure = _figure(BACKTEST_FIGURE_SIZE_IN, constrained=False)
    top, middle, bottom = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1.2, 1)})
    figure.subplots_adjust(**BACKTEST_MARGINS)
    dated = isinstance(curves_quote.index, pd.DatetimeIndex)
    for name, curve in curves_quote.items():
        values = curve.to_numpy(dtype="float64", copy=True)
        values[~(values > 0)] = float("nan")
        top.plot(_date_numbers(curves_quote.index), values, label=str(name),
                 linewidth=1.6 if name == "strategy" else 1.0)
    if dated:
        top.xaxis_date("UTC")
    top.set_yscale("log")
    _plain_log_labels(top)
    top.set_title(title)
    top.set_ylabel(f"{quote} (log)")
    top.grid(alpha=0.3, which="both")
    if len(curves_quote.columns):
        top.legend(loc="upper left", fontsize="small")
    for name, drawdown in drawdowns_frac.items():
        middle.plot(_date_numbers(drawdowns_frac.index), drawdown.to_numpy(dtype="float64"), label=str(name),
                    linewidth=1.0)
    middle.set_ylabel("drawdown")
    _percent_axis(middle)
    middle.grid(alpha=0.3)
    for name, exposure in exposure_frac.items():
        bottom.plot(_date_numbers(exposure_frac.index), exposure.to_numpy(dtype="float64"), label=str(name),
                    linewidth=1.0)
    bottom.set_ylabel("exposure")
    _percent_axis(bottom)
    bottom.grid(alpha=0.3)
    if len(exposure_frac.columns):
        bottom.legend(loc="upper left", fontsize="small")
    figure.autofmt_xdate(bottom=BACKTEST_MARGINS["bottom"])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _plain_log_labels(axis: Any) -> None:
    """Log-axis tick labels as plain numbers (matplotlib's default writes them as TeX, whose parser costs
    ~0.1 s to set up)."""
    from matplotlib.ticker import LogFormatter

    axis.yaxis.set_major_formatter(LogFormatter())
    axis.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


# ---------------------------------------------------------------------------------------------------------
# Research-protocol chart (scripts/research.py): histograms of Sharpe ratios / PBO logits, with reference lines.
# ---------------------------------------------------------------------------------------------------------


def render_distribution_chart(panels: Mapping[str, tuple[Sequence[float], Mapping[str, float]]], *,
                              title: str) -> bytes:
    """One histogram panel per entry of ``panels`` (panel title -> (values, {line label: x})), stacked;
    each reference line is a dashed vertical line with its label in the legend. NaN values are skipped."""
    figure = _figure(BACKTEST_FIGURE_SIZE_IN)
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

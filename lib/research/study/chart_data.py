"""Pure: what the backtest chart draws (curves, drawdowns, exposure), thinned for long runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lib.research.metrics import drawdown_series
from lib.research.study.simulation import Frame

MAX_CHART_POINTS = 3000  # more points than pixels only slows the PNG down (hourly runs have ~35k bars)


def chart_frames(equity_frame: Frame, weights: Frame) -> tuple[Frame, Frame, Frame]:
    """What the backtest chart draws, indexed by UTC time: equity curves, their drawdowns (<= 0),
    and the strategy's gross and net exposure (fractions of equity).

    Long runs are thinned to ~MAX_CHART_POINTS blocks (last value; worst drawdown; mean exposure).
    """
    time = pd.DatetimeIndex(pd.to_datetime(equity_frame["timestamp"], unit="ms", utc=True))
    curves = equity_frame.drop(columns="timestamp").set_axis(time)
    drawdowns = curves.apply(drawdown_series)
    held = weights.reindex(equity_frame["timestamp"].to_numpy()).fillna(0.0)
    exposure = pd.DataFrame({"gross": held.abs().sum(axis=1).to_numpy(), "net": held.sum(axis=1).to_numpy()})
    exposure.index = time
    step = math.ceil(len(time) / MAX_CHART_POINTS)
    if step <= 1:
        return curves, drawdowns, exposure
    blocks = np.arange(len(time)) // step
    at = pd.DatetimeIndex(pd.Series(time).groupby(blocks).last())
    return (curves.groupby(blocks).last().set_axis(at), drawdowns.groupby(blocks).min().set_axis(at),
            exposure.groupby(blocks).mean().set_axis(at))

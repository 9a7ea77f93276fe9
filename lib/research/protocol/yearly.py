"""Pure: descriptive tables of a research run's returns matrix that choose nothing: each calendar year's
return and worst drawdown within it, and the paired bootstrap of one candidate's Sharpe against another's
(protocol v3 compares the combined carry book with trend_core alone this way; docs/RESULTS.md)."""

from __future__ import annotations

import pandas as pd

from lib.research.protocol.bootstrap import BootstrapParams, sharpe_difference_interval
from lib.research.protocol.frame import max_drawdown_frac, sharpe_annual


def per_year(returns: pd.DataFrame) -> pd.DataFrame:
    """(year, column) rows: compounded return of the year, its worst drawdown (from a peak within the year, the
    year's starting level included), annualized Sharpe and the number of days. ``returns``: daily, UTC index."""
    rows = []
    for year, days in returns.groupby(returns.index.year):
        for column in returns.columns:
            series = days[column].astype(float)
            rows.append({"year": int(year), "series": column, "return_frac": float((1.0 + series).prod() - 1.0),
                         "max_drawdown_frac": max_drawdown_frac(series), "sharpe": float(sharpe_annual(series)),
                         "days": len(series)})
    return pd.DataFrame(rows).set_index(["year", "series"])


def sharpe_difference(returns: pd.DataFrame, candidate: str, reference: str, params: BootstrapParams
                      ) -> dict[str, float]:
    """Sharpe(candidate) - Sharpe(reference) on the same days with its paired stationary-bootstrap interval."""
    return sharpe_difference_interval(returns[candidate], returns[reference], params)

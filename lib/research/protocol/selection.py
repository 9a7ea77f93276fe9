"""Pure: the selection rule, stated before any result is seen, that chooses the configuration which ships.

RULE (default parameters):
  1. Eligible: configurations whose max drawdown over the research period is at most
     ``max_drawdown_vs_btc`` (0.5) times BTC buy-and-hold's on the same days.
  2. Among the eligible, the highest MEDIAN CPCV test Sharpe (the Sharpe on each CPCV split's test days;
     the median is robust to one lucky regime, unlike the full-period Sharpe).
  3. Ties (medians within ``tie_tolerance`` Sharpe of the best) go to the lowest ``cost`` (annual
     turnover: cheaper to run, less exposed to cost error), then to the earlier configuration in the
     registry (families list their simplest settings first).
  4. If nothing is eligible, the same ranking over ALL configurations chooses, and the result says
     plainly that the drawdown condition was not met (the best honest configuration, not a pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.research.protocol.frame import max_drawdown_frac

RULE_TEXT = (
    "eligible: max drawdown <= {ratio:g} x BTC buy-and-hold's over the research period; choose the highest "
    "median CPCV test Sharpe among the eligible; medians within {tolerance:g} of the best tie and go to the "
    "lowest annual turnover, then to registry order; if none is eligible, rank all and say so"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectionRule:
    max_drawdown_vs_btc: float = 0.5
    tie_tolerance: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.max_drawdown_vs_btc <= 1 or not 0 <= self.tie_tolerance < 1:
            raise ConfigError("selection: 0 < max_drawdown_vs_btc <= 1 and 0 <= tie_tolerance < 1")

    def text(self) -> str:
        return RULE_TEXT.format(ratio=self.max_drawdown_vs_btc, tolerance=self.tie_tolerance)


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen column, whether it met the drawdown condition, why, and the table every config ranks in."""

    chosen: str
    eligible: bool
    reason: str
    table: pd.DataFrame


def select(
    returns: pd.DataFrame, benchmark: pd.Series, median_test_sharpe: pd.Series, rule: SelectionRule, *,
    cost: pd.Series | None = None,
) -> Selection:  # fmt: skip
    """Apply ``rule`` (module docstring) to every column of ``returns``.

    ``median_test_sharpe``: per column (CPCV, annualized); ``cost``: per column, lower is better (NaN =
    unknown, ranks last among ties).
    """
    if not median_test_sharpe.index.equals(returns.columns):
        raise DataError("selection: median_test_sharpe must have one value per returns column, in order")
    btc_drawdown = max_drawdown_frac(benchmark)
    drawdown = pd.Series({name: max_drawdown_frac(returns[name]) for name in returns.columns})
    costs = (cost.reindex(returns.columns) if cost is not None else pd.Series(np.nan, index=returns.columns))
    table = pd.DataFrame({
        "median_cpcv_test_sharpe": median_test_sharpe.astype(float), "max_drawdown_frac": drawdown,
        "drawdown_vs_btc": drawdown / btc_drawdown if btc_drawdown > 0 else np.inf,
        "cost": costs.astype(float), "order": np.arange(len(returns.columns)),
    })  # fmt: skip
    table["eligible"] = table["drawdown_vs_btc"] <= rule.max_drawdown_vs_btc
    pool = table[table["eligible"]] if table["eligible"].any() else table
    score = pool["median_cpcv_test_sharpe"].where(np.isfinite(pool["median_cpcv_test_sharpe"]), -np.inf)
    tied = pool[score >= score.max() - rule.tie_tolerance]
    ordered = tied.assign(cost_key=tied["cost"].fillna(np.inf)).sort_values(["cost_key", "order"])
    chosen = str(ordered.index[0])
    row = table.loc[chosen]
    eligible = bool(row["eligible"])
    why = (f"{chosen}: median CPCV test Sharpe {row['median_cpcv_test_sharpe']:.2f}, max drawdown "
           f"{row['max_drawdown_frac']:.1%} = {row['drawdown_vs_btc']:.2f} x BTC's {btc_drawdown:.1%}")
    if len(tied) > 1:
        why += f"; {len(tied)} configurations tied within {rule.tie_tolerance:g}, lowest cost/registry order won"
    if eligible:
        reason = f"{why}; best of {int(table['eligible'].sum())} eligible of {len(table)}"
    else:
        reason = (f"NO configuration met the drawdown condition (<= {rule.max_drawdown_vs_btc:g} x BTC's); "
                  f"best honest one by the same ranking over all {len(table)}: {why}")
    table["rank"] = table["median_cpcv_test_sharpe"].rank(ascending=False, method="min")
    return Selection(chosen=chosen, eligible=eligible, reason=reason, table=table.drop(columns="order"))

"""Pure: the buy-and-hold benchmarks a study is compared with, and the equity frame that holds them."""

from __future__ import annotations

import pandas as pd

from lib.core.timeframes import MS_PER_DAY, timeframe_ms
from lib.research.metrics import buy_and_hold_equity, equal_weight_equity
from lib.research.study.sections import StudyParams
from lib.research.study.simulation import Frame

STRATEGY_COLUMN = "strategy"
BTC_BENCHMARK = "btc_buy_and_hold"
EQUAL_WEIGHT_BENCHMARK = "equal_weight_buy_and_hold"  # the basket priced at the first bar, never rebalanced
EQUAL_WEIGHT_REBALANCED_BENCHMARK = "equal_weight_rebalanced"  # reset every N days; new listings join


def benchmark_equity(
    close_wide: Frame, benchmark: str | None, *, timeframe: str, study: StudyParams, capital_quote: float
) -> Frame:
    """Buy-and-hold equity curves over ``close_wide``'s bars (no costs), one column per benchmark;
    BTC (``benchmark``) is left out when it is not in the data."""
    every_bars = max(1, study.equal_weight_rebalance_days * MS_PER_DAY // timeframe_ms(timeframe))
    curves: dict[str, pd.Series] = {}
    if benchmark is not None:
        btc_close = close_wide[benchmark]
        curves[BTC_BENCHMARK] = buy_and_hold_equity(btc_close, starting_capital_quote=capital_quote)
    curves[EQUAL_WEIGHT_BENCHMARK] = equal_weight_equity(close_wide, starting_capital_quote=capital_quote)
    curves[EQUAL_WEIGHT_REBALANCED_BENCHMARK] = equal_weight_equity(
        close_wide, starting_capital_quote=capital_quote, rebalance_every_bars=every_bars)
    return pd.DataFrame(curves, index=close_wide.index)

def to_equity_frame(equity: pd.Series, benchmarks: Frame) -> Frame:
    """``timestamp`` (int64 ms) + strategy + benchmark columns: the equity.parquet schema."""
    frame = benchmarks.reindex(equity.index).assign(**{STRATEGY_COLUMN: equity})
    return frame[[STRATEGY_COLUMN, *benchmarks.columns]].rename_axis("timestamp").reset_index()

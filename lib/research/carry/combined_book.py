"""Pure: the backtest of the combined book with the funding-carry sleeve (lib.research.carry.combined), built from
its two sub-books, each simulated by its own simulator on its capital share:

- the directional part: the spot sleeves' book (lib.research.backtester, ``strategy.timeframe`` bars: fees,
  slippage, no-trade band, minimum notional, the live risk layer);
- the carry part: the carry book (lib.research.carry.book, hourly: both legs' fees and slippage, funding at each
  settlement, basis, isolated margin from the Binance tiers, transfers, liquidation), its targets decided only at
  the closes of the directional bars (``decision_weights``: as live decides both parts in the same run).

Live re-splits the capital every run (every weight is a fraction of the whole book), so the book is the two
sub-books re-balanced to their budgets at each directional close. With directional return r_d and carry return
r_c over a period, the budgets (1 - b, b) drift by b(1 - b)|r_d - r_c| of the book; moving that back trades the
sub-books' positions pro rata: each quote moved costs ``cost`` (fee + slippage) per unit of the directional
part's gross weight g_d and twice per unit of the carry part's spot-leg weight g_c (both legs). Per period:

    r = (1 - b) r_d + b r_c - b (1 - b) |r_d - r_c| x cost x (g_d + 2 g_c)

Approximations (stated in README): a coin held by both parts is one spot holding live, so their spot orders net
(the sub-books pay both: costs slightly overstated); the carry book's own re-sizing checks (drift band, hedge,
collateral, liquidation guard) run hourly in its simulator, live only at each run; the carry part's minimum trade
is on its own share of capital; each part stays within its own share here (the carry collateral notional / leverage,
without live's ``carry.collateral_buffer_frac``), so live's cash cap on the directional buys
(lib.execution.carry_combo_cash) never binds in the backtest: where live is cash short it holds less directional.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.core.timeframes import MS_PER_HOUR, timeframe_ms
from lib.research.carry.combined import CarrySplit

MONEY_COLUMNS = ("funding", "price_pnl", "fees", "slippage", "liquidation_loss")


def decision_weights(weights: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """The carry targets as the combined book trades them: the row decided at the close of each directional bar
    (hourly bar opening at close - 1 h), held until the next one; nothing decided before the first such close."""
    stamps = weights.index.to_numpy(dtype=np.int64)
    decided = (stamps + MS_PER_HOUR) % timeframe_ms(timeframe) == 0
    return weights.where(pd.Series(decided, index=weights.index), axis=0).ffill().fillna(0.0)


@dataclass(frozen=True, slots=True)
class CombinedBook:
    """At each directional bar (index: bar open ms, equity at its close): the book's ``equity``, its period
    ``returns`` and the re-split ``resplit_cost_frac`` in them; the sub-books' period returns; and the carry part's
    money flows in the book's quote (``carry_flows``: funding, price (basis) P&L, fees, slippage, liquidations)."""

    equity: pd.Series
    returns: pd.Series
    resplit_cost_frac: pd.Series
    directional_returns: pd.Series
    carry_returns: pd.Series
    carry_flows: pd.DataFrame


def combine_books(directional_equity: pd.Series, directional_gross: pd.Series, carry_ledger: pd.DataFrame,
                  carry_gross: pd.Series, split: CarrySplit, *, timeframe: str, cost: float,
                  capital_quote: float) -> CombinedBook:
    """The combined book over the bars both sub-books cover. ``directional_*``: per directional bar (open ms);
    ``carry_*``: per hourly bar (open ms; the ledger's cumulative money columns and ``equity``)."""
    if not (0 <= cost < 1 and capital_quote > 0):
        raise DataError(f"combine_books: cost {cost} must be in [0, 1) and capital {capital_quote} > 0")
    hours = directional_equity.index.to_numpy(dtype=np.int64) + timeframe_ms(timeframe) - MS_PER_HOUR
    at_close = carry_ledger.reindex(hours)
    at_close.index = directional_equity.index
    gross_c = carry_gross.reindex(hours).to_numpy(dtype=float)
    both = at_close["equity"].notna() & directional_equity.notna()
    if int(both.sum()) < 2:
        raise DataError("the directional and carry sub-books share fewer than 2 bars: nothing to combine")
    first = both.idxmax()
    frame = pd.DataFrame({"d": directional_equity, "c": at_close["equity"],
                          "g_d": directional_gross.reindex(directional_equity.index).fillna(0.0),
                          "g_c": np.nan_to_num(gross_c)}, index=directional_equity.index).loc[first:]
    frame = frame[frame["d"].notna() & frame["c"].notna()]
    r_d, r_c = frame["d"].pct_change().fillna(0.0), frame["c"].pct_change().fillna(0.0)
    b = split.carry_frac
    gross = frame["g_d"].shift(1).fillna(0.0) + 2.0 * frame["g_c"].shift(1).fillna(0.0)  # held over the period
    resplit = b * (1.0 - b) * (r_d - r_c).abs() * cost * gross
    returns = (1.0 - b) * r_d + b * r_c - resplit
    equity = capital_quote * (1.0 + returns).cumprod()
    flows = at_close.loc[frame.index, list(MONEY_COLUMNS)].diff().fillna(0.0)
    carry_before = frame["c"].shift(1)
    book_before = equity.shift(1).fillna(capital_quote)
    in_book = flows.div(carry_before, axis=0).fillna(0.0).mul(b * book_before, axis=0)
    return CombinedBook(equity=equity.rename("equity"), returns=returns, resplit_cost_frac=resplit,
                        directional_returns=r_d, carry_returns=r_c, carry_flows=in_book)

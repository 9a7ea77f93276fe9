"""Pure: the combined book with the funding-carry sleeve from an already simulated directional part: the carry
book on the same span (targets decided at the directional closes) and the two re-split to their budgets at each
bar, through ``combine_with_carry``, which ``backtest --strategy combined`` (lib.ops.combo_backtest) calls too: carry
targets (lib.research.carry.sleeve) -> decision times (combined_book.decision_weights) -> the carry book's
simulator (carry.book.simulate_book) -> combined_book.combine_books. The research protocol's ``trend_carry``
family (lib.research.candidates) evaluates its candidates through this; a unit test checks it equals the backtest.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lib.core.errors import DataError
from lib.core.timeframes import MS_PER_DAY
from lib.research.backtester import BacktestResult
from lib.research.carry.book import CarryBookResult, simulate_book
from lib.research.carry.combined import CarrySplit
from lib.research.carry.combined_book import CombinedBook, combine_books, decision_weights
from lib.research.carry.market import CarryMarket, slice_market
from lib.research.carry.sleeve import CarryParams, carry_weights, perp_daily_volatility


@dataclass(frozen=True, slots=True)
class CombinedCarryRun:
    """The combined ``book`` and its sub-books' own results; ``traded_quote``: notional traded in the book's quote
    over the span (the directional part's trades scaled to its share, both carry legs, the re-split trades)."""

    book: CombinedBook
    carry: CarryBookResult
    traded_quote: float


def first_carry_day_ms(market: CarryMarket) -> int:
    """The first day (00:00 UTC, ms) at or after the carry market's first hourly bar: the combined book cannot
    start before the carry part has a bar at that day's close."""
    first = int(market.index[0])
    return -(-first // MS_PER_DAY) * MS_PER_DAY


def combined_carry_run(directional: BacktestResult, market: CarryMarket, split: CarrySplit, params: CarryParams, *,
                       timeframe: str, capital_quote: float) -> CombinedCarryRun:
    """The combined book over the bars both parts cover. ``directional``: the spot sleeves' backtest on the whole
    capital (its equity and held weights per ``timeframe`` bar); ``market``: hourly, cut at the research end by the
    caller (the carry targets read the whole of it causally: row t uses bars <= t)."""
    _require_carry(split)
    book, carry = combine_with_carry(directional.equity, directional.weights.abs().sum(axis=1), market, split, params,
                                     timeframe=timeframe, capital_quote=capital_quote)
    cost = params.fee_rate + params.slippage_rate
    return CombinedCarryRun(book=book, carry=carry, traded_quote=_traded_quote(directional, carry, book, split, cost))


def combine_with_carry(directional_equity: pd.Series, directional_gross: pd.Series, market: CarryMarket,
                       split: CarrySplit, params: CarryParams, *, timeframe: str, capital_quote: float
                       ) -> tuple[CombinedBook, CarryBookResult]:
    """The carry book simulated on the directional part's span (its targets decided at the directional closes) and
    the two re-split to their budgets at each bar. ``directional_equity`` / ``_gross``: the spot sleeves' run on the
    whole capital (equity and gross held weight per ``timeframe`` bar)."""
    _require_carry(split)
    weights = decision_weights(carry_weights(market, params)[0], timeframe)
    window = slice_market(market, start_ms=max(int(directional_equity.index[0]), int(market.index[0])))
    start = window.index[0]
    carry = simulate_book(window, weights.loc[start:], params, capital_quote=capital_quote * split.carry_frac,
                          perp_volatility=perp_daily_volatility(market, params).loc[start:])
    book = combine_books(directional_equity, directional_gross, carry.ledger, carry.spot_weights.sum(axis=1), split,
                         timeframe=timeframe, cost=params.fee_rate + params.slippage_rate, capital_quote=capital_quote)
    return book, carry


def _require_carry(split: CarrySplit) -> None:
    if split.carry_frac <= 0:
        raise DataError("the combined book: the carry budget must be > 0 (budget 0 is the directional book alone)")


def _traded_quote(directional: BacktestResult, carry: CarryBookResult, book: CombinedBook, split: CarrySplit,
                  cost: float) -> float:
    """Directional trades x its share (it ran on the whole capital), carry trades (on its own share already),
    and the re-split trades (their cost / (fee + slippage)), all within the combined span."""
    first, last = int(book.equity.index[0]), int(book.equity.index[-1])
    trades = directional.trades
    stamps = trades["timestamp"].to_numpy()
    inside = (stamps >= first) & (stamps <= last)
    directional_quote = float(trades.loc[inside, "notional_quote"].sum()) * split.directional_frac
    carry_quote = float(carry.trades["notional_quote"].sum())
    before = book.equity.shift(1).fillna(book.equity.iloc[0])
    resplit_quote = float((book.resplit_cost_frac * before).sum()) / cost if cost > 0 else 0.0
    return directional_quote + carry_quote + resplit_quote


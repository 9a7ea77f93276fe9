"""Pure: the report's risk lines: 1-day VaR / CVaR (95 % and 99 %; historical, Gaussian, Cornish-Fisher) of
the current book and of each sleeve of the targets, and the margin of each perp short (margin ratio,
liquidation price, 24 h liquidation probability), from the stored candles' daily closes.

Sleeves: targets.json's breakdown keeps each symbol's per-sleeve contribution (``breakdown[symbol]
["sleeves"]``, lib.research.sleeves.book); a sleeve's weights are those contributions. The shorts' margin
balance is positions.json's ``cash_quote`` (a perp account's margin balance at the rebalance marks) moved by
the perps' PnL to the report prices, as lib.ops.reporting.compute_mark_to_market values them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from lib.core.daily_returns import daily_closes, daily_returns
from lib.core.errors import CoinbotError
from lib.core.ewma import ewma_volatility, log_returns
from lib.core.short_margin import assess_shorts
from lib.core.state import Positions, Targets
from lib.core.symbols import is_perpetual
from lib.core.tail_risk import LEVELS, book_tail_risk
from lib.core.timeframes import timeframe_ms
from lib.execution.risk import RiskLimits


def sleeve_weights(targets: Targets | None) -> dict[str, dict[str, float]]:
    """sleeve -> {symbol: its contribution to the target weight}; {} for a book without sleeves."""
    sleeves: dict[str, dict[str, float]] = {}
    for symbol, entry in sorted((targets.breakdown if targets else {}).items()):
        parts = entry.get("sleeves") if isinstance(entry, dict) else None
        for name, weight in (parts or {}).items():
            if isinstance(weight, int | float) and math.isfinite(weight) and weight != 0:
                sleeves.setdefault(name, {})[symbol] = float(weight)
    return sleeves


def tail_lines(name: str, weights: Mapping[str, float], closes: Mapping[str, pd.Series], *,
               lookback_days: int) -> list[str]:
    """One line per level: ``VaR/CVaR`` by historical | Gaussian | Cornish-Fisher, fractions of equity."""
    if not any(weights.values()):
        return [f"  {name}: no position"]
    try:
        returns = daily_returns({s: closes[s] for s in weights if s in closes}, lookback_days=lookback_days)
        risks = book_tail_risk(weights, returns, LEVELS)
    except CoinbotError as error:
        return [f"  {name}: n/a ({error})"]
    return [f"  {name} {level:.0%}: hist {r.historical_var:.2%}/{r.historical_cvar:.2%} | gauss "
            f"{r.gaussian_var:.2%}/{r.gaussian_cvar:.2%} | CF {r.cornish_fisher_var:.2%}/{r.cornish_fisher_cvar:.2%}"
            for level, r in risks.items()]


def margin_lines(positions: Positions, prices: Mapping[str, float], closes: Mapping[str, pd.Series], *,
                 max_probability: float, fallback_rate: float) -> list[str]:
    """One line per perp short: margin ratio, liquidation price, 24 h liquidation probability."""
    perps = {s: a for s, a in positions.amounts_base.items() if is_perpetual(s) and a != 0}
    if not any(a < 0 for a in perps.values()):
        return []
    priced = {s: prices.get(s, positions.marks.get(s, math.nan)) for s in perps}
    balance = positions.cash_quote + sum(a * (priced[s] - positions.marks.get(s, priced[s])) for s, a in perps.items())
    vols = {s: float(v) for s in perps if s in closes
            for v in [ewma_volatility(log_returns(closes[s])).iloc[-1]] if math.isfinite(v)}
    try:
        shorts = assess_shorts(perps, priced, balance, vols, max_probability=max_probability,
                               fallback_rate=fallback_rate)
    except CoinbotError as error:
        return [f"  perp shorts: n/a ({error})"]
    return [f"  {s.symbol} short {s.quantity:g}: margin ratio {s.margin_ratio:.4f}, liquidation price "
            f"{s.liquidation_price:g} ({s.liquidation_price / s.price - 1:+.1%}), P(24 h) {s.liquidation_prob_24h:.3%}"
            + (" OVER THE LIMIT" if s.breaches else "") for s in shorts]


def risk_lines(*, book_weights: Mapping[str, float], sleeves: Mapping[str, Mapping[str, float]],
               closes: Mapping[str, pd.Series], lookback_days: int, margin: list[str]) -> list[str]:
    """The report's risk block: book, then each sleeve (targets), then the perp shorts' margin."""
    lines = [f"1-day VaR/CVaR ({lookback_days} d of daily closes, % of equity)"]
    lines += tail_lines("book", book_weights, closes, lookback_days=lookback_days)
    for name, weights in sorted(sleeves.items()):
        lines += tail_lines(f"sleeve {name} (target)", weights, closes, lookback_days=lookback_days)
    if margin:
        lines += ["perp shorts (cross margin)", *margin]
    return lines


def report_risk(positions: Positions, *, values_quote: Mapping[str, float], equity_quote: float,
                prices: Mapping[str, float], candles: Mapping[str, pd.DataFrame | None], timeframe: str,
                targets_document: object, limits: RiskLimits) -> list[str]:
    """The risk block from what report already holds: the marked book, its candles, targets.json as read."""
    closes = {s: daily_closes(frame, timeframe_ms=timeframe_ms(timeframe)) for s, frame in candles.items()
              if frame is not None and not frame.empty}
    try:
        targets = Targets.from_dict(targets_document) if targets_document is not None else None
    except CoinbotError:
        targets = None  # doctor reports a bad targets.json; the report shows the book without sleeves
    weights = {s: v / equity_quote for s, v in values_quote.items()} if equity_quote > 0 else {}
    margin = margin_lines(positions, prices, closes, max_probability=limits.max_liquidation_prob_24h,
                          fallback_rate=limits.fallback_maintenance_rate)
    return risk_lines(book_weights=weights, sleeves=sleeve_weights(targets), closes=closes,
                      lookback_days=limits.var_lookback_days, margin=margin)

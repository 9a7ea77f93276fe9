"""Pure: the report's view of the combined book with the funding-carry sleeve (``strategy.name = "combined"`` with
``funding_carry`` in ``combiner.sleeves``): a coin's ONE spot holding split into the carry pair's spot leg and the
directional part, each part's trading P&L and fees, the directional part's lines and the whole book's VaR/CVaR.

Attribution (one spot order per coin serves both parts, so the split is a rule, stated here):
- the carry spot leg mirrors the short: in each rebalance run (``run_id``) it changes by minus the perp fills' net
  amount, priced at that run's spot fills' volume-weighted price of the coin (no spot fill in it: the perp fills'
  price, an internal transfer between the parts that is zero for the book); it holds minus the short;
- the directional part is the rest: the coin's spot P&L minus the carry leg's, holding the spot beyond the short;
- a run's spot fees of the coin are shared in proportion to each part's absolute change in it.
A run killed between a pair's legs moves spot between the parts at two runs' prices: the book's total is exact, the
split between the parts is off by that price difference.
The carry report (lib.ops.carry_report) then takes the carry leg's share as the pair's spot leg.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from lib.core.symbols import is_perpetual, to_perpetual, to_spot
from lib.execution.journal import JournalEvent
from lib.ops.risk_report import tail_lines


@dataclass(frozen=True, slots=True)
class SpotSplit:
    """One coin's spot holding split into the carry spot leg and the directional part (quote; amounts in base)."""

    carry_pnl: float
    carry_fee: float
    directional_pnl: float
    directional_fee: float
    carry_base: float
    directional_base: float


def _signed(fill: JournalEvent) -> float:
    return (-1.0 if fill.requested_side == "sell" else 1.0) * float(fill.filled_amount_base or 0)


def _vwap(fills: list[JournalEvent]) -> float:
    amount = sum(float(f.filled_amount_base or 0) for f in fills)
    return sum(float(f.filled_amount_base or 0) * (f.average_price or 0.0) for f in fills) / amount if amount else 0.0


def split_spot(fills: Iterable[JournalEvent], pnl: Mapping[str, float], fees: Mapping[str, float],
               held: Mapping[str, float], marks: Mapping[str, float]) -> dict[str, SpotSplit]:
    """Per spot coin traded or held: its carry leg and directional part (see the module docstring). ``pnl`` and
    ``fees``: each symbol's trading P&L at ``marks`` and fees (lib.ops.carry_report.leg_pnl / leg_fees)."""
    runs: dict[tuple[str, str], list[JournalEvent]] = defaultdict(list)
    for fill in fills:
        if fill.symbol and fill.filled_amount_base and fill.average_price:
            runs[(fill.run_id, to_spot(fill.symbol))].append(fill)
    carry_cash: dict[str, float] = defaultdict(float)
    carry_fee: dict[str, float] = defaultdict(float)
    for (_, coin), events in runs.items():
        spot = [e for e in events if not is_perpetual(e.symbol or "")]
        perp = [e for e in events if is_perpetual(e.symbol or "")]
        carry_change = -sum(_signed(e) for e in perp)
        directional_change = sum(_signed(e) for e in spot) - carry_change
        price = _vwap(spot) if spot else _vwap(perp)
        carry_cash[coin] -= carry_change * price
        moved = abs(carry_change) + abs(directional_change)
        if moved:
            carry_fee[coin] += sum(e.fee_quote or 0.0 for e in spot) * abs(carry_change) / moved
    coins = {s for s in (*pnl, *fees, *held) if not is_perpetual(s)} | {to_spot(s) for s in held if is_perpetual(s)}
    out = {}
    for coin in sorted(coins):
        short = max(-held.get(to_perpetual(coin), 0.0), 0.0)
        carry_pnl = carry_cash.get(coin, 0.0) + short * marks.get(coin, 0.0)
        out[coin] = SpotSplit(carry_pnl=carry_pnl, carry_fee=carry_fee.get(coin, 0.0),
                              directional_pnl=pnl.get(coin, 0.0) - carry_pnl,
                              directional_fee=fees.get(coin, 0.0) - carry_fee.get(coin, 0.0),
                              carry_base=short, directional_base=held.get(coin, 0.0) - short)
    return out


def directional_lines(split: Mapping[str, SpotSplit], marks: Mapping[str, float], closes: Mapping[str, pd.Series], *,
                      equity: float, quote: str, lookback_days: int) -> list[str]:
    """The directional part: what it holds (the spot beyond each short) at the marks, its P&L gross and net of its
    share of the fees, per coin and in all, and its 1-day VaR/CVaR."""
    coins = {c: s for c, s in split.items() if s.directional_base or s.directional_pnl or s.directional_fee}
    values = {c: s.directional_base * marks.get(c, 0.0) for c, s in coins.items()}
    pnl, fees = sum(s.directional_pnl for s in coins.values()), sum(s.directional_fee for s in coins.values())
    share = f" ({sum(values.values()) / equity:.1%} of equity)" if equity > 0 else ""
    lines = [f"directional part (at the marks of the last rebalance): holds {sum(values.values()):.2f} {quote}{share};"
             f" P&L {pnl:+.2f} gross / {pnl - fees:+.2f} net of fees {fees:.2f} {quote}"]
    lines += [f"  {c}: holds {s.directional_base:g} = {values[c]:.2f} {quote}; P&L {s.directional_pnl:+.2f} gross / "
              f"{s.directional_pnl - s.directional_fee:+.2f} net of fees {s.directional_fee:.2f} {quote}"
              for c, s in coins.items()]
    weights = {c: v / equity for c, v in values.items() if v} if equity > 0 else {}
    return lines + tail_lines("directional part (held)", weights, closes, lookback_days=lookback_days)


def carry_weights(split: Mapping[str, SpotSplit], marks: Mapping[str, float], equity: float) -> dict[str, float]:
    """The carry pairs' held weights: each spot leg (minus the short) and its perp, fractions of ``equity``."""
    weights: dict[str, float] = {}
    for coin, part in split.items():
        if part.carry_base and equity > 0:
            weights[coin] = part.carry_base * marks.get(coin, 0.0) / equity
            weights[to_perpetual(coin)] = -part.carry_base * marks.get(to_perpetual(coin), 0.0) / equity
    return weights


def book_lines(held: Mapping[str, float], marks: Mapping[str, float], closes: Mapping[str, pd.Series], *,
               equity: float, lookback_days: int) -> list[str]:
    """The whole book's 1-day VaR/CVaR (both parts, both venues' legs, held at the marks)."""
    weights = {s: a * marks.get(s, 0.0) / equity for s, a in held.items() if a} if equity > 0 else {}
    return [f"1-day VaR/CVaR ({lookback_days} d of daily closes, % of equity)",
            *tail_lines("book (both parts, both venues, held)", weights, closes, lookback_days=lookback_days)]

"""Pure: margin ratio, liquidation price and 24 h liquidation probability of each perp short of a cross-margin
account, and what keeps a short within a probability limit (a smaller short, or more collateral).

Cross margin (lib.execution.venue_session.PERP_MARGIN_MODE): the account's margin balance M (wallet +
unrealized PnL of every position) carries all positions. Binance's cross liquidation price of one position
holds the others fixed: the margin it may lose is M minus the other positions' maintenance margin. With
that balance, lib.core.perp_margin's formula L = (M_i + Q P + amount) / (Q (1 + MMR)) is Binance's one-way
cross formula (M_i + Q P = wallet + Q x entry price). Coins without kept tiers use ``fallback_rate`` (no
maintenance amount): a guess that errs toward a nearer liquidation.

The probability is lib.core.tail_risk.liquidation_probability on ln(L / P) with a daily volatility forecast.
Keeping it <= p needs L >= L* = P exp(b*), b* = buffer_for_probability(p, sigma):
- a short of Q' <= (M_i + amount) / (L* (1 + MMR) - P) units (reducing a short leaves M_i unchanged: its
  unrealized PnL is realized into the wallet; fees ignored), or
- collateral of max(0, L* Q (1 + MMR) - Q P - amount - M_i) more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from lib.core.errors import DataError
from lib.core.perp_margin import MARGIN_TIERS, tier_for
from lib.core.symbols import split_symbol
from lib.core.tail_risk import buffer_for_probability, liquidation_probability


@dataclass(frozen=True, slots=True)
class ShortMargin:
    """One perp short at this run's price (quantities in base units, money in the quote)."""

    symbol: str
    quantity: float
    price: float
    maintenance_rate: float
    maintenance_margin_quote: float
    margin_balance_quote: float  # what this short may lose: account balance - the others' maintenance margin
    margin_ratio: float  # maintenance margin / margin balance (>= 1: liquidated)
    liquidation_price: float  # <= 0: already under water
    daily_volatility: float
    liquidation_prob_24h: float
    safe_quantity: float  # the largest short within the probability limit at this margin (<= quantity)
    collateral_needed_quote: float  # margin to add instead, to keep the whole short within the limit

    @property
    def breaches(self) -> bool:
        return self.safe_quantity < self.quantity


def maintenance_terms(base: str, notional_quote: float, fallback_rate: float) -> tuple[float, float]:
    """(maintenance rate, maintenance amount) of a position of this notional."""
    if base not in MARGIN_TIERS:
        return fallback_rate, 0.0
    tier = tier_for(base, notional_quote)
    return tier.maintenance_rate, tier.maintenance_amount_quote


def liquidation_price(quantity: float, price: float, margin_balance_quote: float, rate: float,
                      amount_quote: float) -> float:
    return (margin_balance_quote + quantity * price + amount_quote) / (quantity * (1.0 + rate))


def assess_short(symbol: str, quantity: float, price: float, margin_balance_quote: float, daily_volatility: float,
                 *, max_probability: float, fallback_rate: float) -> ShortMargin:
    """One short of ``quantity`` > 0 units at ``price`` carried by ``margin_balance_quote``."""
    if not (quantity > 0 and price > 0 and math.isfinite(margin_balance_quote) and daily_volatility >= 0):
        raise DataError(f"{symbol}: bad short {quantity} @ {price}, margin {margin_balance_quote}, "
                        f"volatility {daily_volatility}")
    base = split_symbol(symbol)[0]
    rate, amount = maintenance_terms(base, quantity * price, fallback_rate)
    maintenance = quantity * price * rate - amount
    ratio = math.inf if margin_balance_quote <= 0 else maintenance / margin_balance_quote
    liquidation = liquidation_price(quantity, price, margin_balance_quote, rate, amount)
    probability = 1.0 if liquidation <= 0 else liquidation_probability(math.log(liquidation / price),
                                                                        daily_volatility)
    if probability <= max_probability:
        safe, collateral = quantity, 0.0
    else:
        target = price * math.exp(buffer_for_probability(max_probability, daily_volatility))
        safe = _safe_quantity(base, quantity, price, margin_balance_quote, target, rate, amount, fallback_rate)
        collateral = max(0.0, target * quantity * (1.0 + rate) - quantity * price - amount - margin_balance_quote)
    return ShortMargin(symbol, quantity, price, rate, maintenance, margin_balance_quote, ratio, liquidation,
                       daily_volatility, probability, safe, collateral)


def _safe_quantity(base: str, quantity: float, price: float, margin: float, target: float, rate: float,
                   amount: float, fallback_rate: float) -> float:
    """Largest Q' <= quantity with liquidation price >= target; the smaller position's tier is checked too."""
    if margin + amount <= 0:
        return 0.0
    safe = min(quantity, (margin + amount) / (target * (1.0 + rate) - price))
    smaller_rate, smaller_amount = maintenance_terms(base, safe * price, fallback_rate)
    if (smaller_rate, smaller_amount) != (rate, amount) and margin + smaller_amount > 0:
        safe = min(safe, (margin + smaller_amount) / (target * (1.0 + smaller_rate) - price))
    return max(0.0, safe)


def assess_shorts(amounts_base: Mapping[str, float], prices: Mapping[str, float], margin_balance_quote: float,
                  daily_volatility: Mapping[str, float], *, max_probability: float,
                  fallback_rate: float) -> list[ShortMargin]:
    """Every perp short (negative amount of a ``BASE/QUOTE:SETTLE`` symbol) of one cross-margin account.

    Raises DataError when a perp has no price or a short no volatility forecast (an unknown risk).
    """
    perps = {s: a for s, a in amounts_base.items() if ":" in s and a != 0}
    missing = sorted(s for s in perps if not (prices.get(s, 0) > 0))
    if missing:
        raise DataError(f"no price for perp position(s) {missing}")
    maintenance = {}
    for symbol, amount in perps.items():
        rate, extra = maintenance_terms(split_symbol(symbol)[0], abs(amount) * prices[symbol], fallback_rate)
        maintenance[symbol] = abs(amount) * prices[symbol] * rate - extra
    total = sum(maintenance.values())
    shorts = []
    for symbol, amount in sorted(perps.items()):
        if amount > 0:
            continue
        if symbol not in daily_volatility or not math.isfinite(daily_volatility[symbol]):
            raise DataError(f"no volatility forecast for the short {symbol}")
        own = margin_balance_quote - (total - maintenance[symbol])
        shorts.append(assess_short(symbol, -amount, prices[symbol], own, daily_volatility[symbol],
                                   max_probability=max_probability, fallback_rate=fallback_rate))
    return shorts

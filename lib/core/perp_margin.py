"""Pure: Binance USDT-M margin tiers at small notional, maintenance margin, margin ratio, liquidation price.

Tier values (position notional in USDT -> max leverage, maintenance margin rate, maintenance amount):
Binance's "Leverage and Margin of USDⓈ-M Futures" FAQ (binance.com/en/support/faq/360033162192, the
2020-2021 tables) and the 2021-03-18 announcement "Updates to Leverage and Margin Tiers of Binance
Futures Contracts" (BTCUSDT: 0-50k 125x MMR 0.40 %, 50k-250k 100x 0.50 %). The FAQ gives ETHUSDT 0-10k at
100x (initial 1.0 %) and 10k-100k at 75x (1.3 %), and the "75x contracts" (ADAUSDT, LTCUSDT, XRPUSDT among
them) 0-10k at 75x (1.3 %), 10k-50k at 50x (2.0 %); their maintenance rates are half the initial rate at
max leverage, Binance's rule in those tables (ETH 0.50 % / 0.65 %, 75x contracts 0.65 % / 1.00 %).
Maintenance amount of tier k = previous tier's amount + floor_k x (MMR_k - MMR_{k-1}) (continuity).
Binance changes these tables over time (e.g. XRPUSDT 0-5k at 0.50 % in 2024); only the two smallest
tiers are kept: a position beyond them raises (fail closed) instead of guessing.

Definitions (isolated margin, one-way mode): margin balance = isolated wallet + unrealized PnL;
maintenance margin = notional x MMR - maintenance amount; margin ratio = maintenance margin / margin
balance (liquidation at >= 1); the liquidation price of a short of Q units with margin balance M at price
P0 is (M + Q P0 + amount) / (Q (1 + MMR)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from lib.core.errors import DataError


@dataclass(frozen=True, slots=True)
class MarginTier:
    """One bracket: positions with notional in (floor, cap] USDT."""

    floor_quote: float
    cap_quote: float
    max_leverage: float
    maintenance_rate: float
    maintenance_amount_quote: float


def _tiers(rows: tuple[tuple[float, float, float, float], ...]) -> tuple[MarginTier, ...]:
    tiers: list[MarginTier] = []
    amount, previous_rate = 0.0, rows[0][3]
    for floor, cap, leverage, rate in rows:
        amount += floor * (rate - previous_rate)
        tiers.append(MarginTier(floor, cap, leverage, rate, amount))
        previous_rate = rate
    return tuple(tiers)


_SEVENTY_FIVE_X = _tiers(((0.0, 10_000.0, 75.0, 0.0065), (10_000.0, 50_000.0, 50.0, 0.01)))
MARGIN_TIERS: Mapping[str, tuple[MarginTier, ...]] = {
    "BTC": _tiers(((0.0, 50_000.0, 125.0, 0.004), (50_000.0, 250_000.0, 100.0, 0.005))),
    "ETH": _tiers(((0.0, 10_000.0, 100.0, 0.005), (10_000.0, 100_000.0, 75.0, 0.0065))),
    "ADA": _SEVENTY_FIVE_X,
    "LTC": _SEVENTY_FIVE_X,
    "XRP": _SEVENTY_FIVE_X,
}
"""Base asset of the <BASE>USDT perpetual -> its smallest tiers."""


def tier_for(base: str, notional_quote: float) -> MarginTier:
    """The bracket of a position of this notional; raises for an unknown coin or a notional beyond the table."""
    if base not in MARGIN_TIERS:
        raise DataError(f"no margin tiers for {base}USDT (known: {sorted(MARGIN_TIERS)})")
    if not (math.isfinite(notional_quote) and notional_quote >= 0):
        raise DataError(f"bad notional {notional_quote} for {base}USDT")
    for tier in MARGIN_TIERS[base]:
        if notional_quote <= tier.cap_quote:
            return tier
    cap = MARGIN_TIERS[base][-1].cap_quote
    raise DataError(f"{base}USDT notional {notional_quote:.0f} is beyond the tiers kept ({cap:.0f})")


def maintenance_margin(base: str, notional_quote: float) -> float:
    tier = tier_for(base, notional_quote)
    return notional_quote * tier.maintenance_rate - tier.maintenance_amount_quote


def margin_ratio(base: str, notional_quote: float, margin_balance_quote: float) -> float:
    """Maintenance margin / margin balance (0 = no position; >= 1 = liquidated; inf = balance gone)."""
    if notional_quote == 0:
        return 0.0
    if margin_balance_quote <= 0:
        return math.inf
    return maintenance_margin(base, notional_quote) / margin_balance_quote


def short_liquidation_price(base: str, quantity: float, price: float, margin_balance_quote: float) -> float:
    """Price at which an isolated short of ``quantity`` units, holding ``margin_balance_quote`` at ``price``,
    is liquidated (the tier of the current notional is assumed to hold up to there)."""
    if not (quantity > 0 and price > 0):
        raise DataError(f"short_liquidation_price needs quantity > 0 and price > 0, got {quantity}, {price}")
    tier = tier_for(base, quantity * price)
    return (margin_balance_quote + quantity * price + tier.maintenance_amount_quote) / (
        quantity * (1.0 + tier.maintenance_rate))


def check_leverage(base: str, notional_quote: float, leverage: float) -> None:
    """Raise when the chosen leverage exceeds what the bracket allows."""
    tier = tier_for(base, notional_quote)
    if not 0 < leverage <= tier.max_leverage:
        raise DataError(f"{base}USDT leverage {leverage} is outside (0, {tier.max_leverage}] "
                        f"at {notional_quote:.0f} USDT")

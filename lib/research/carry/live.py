"""Pure: the carry sleeve's live targets: the weights decided at the close of the last closed hourly bar, both legs
per coin (spot long, perp short of the same notional), with a per-leg breakdown, and the staleness gate.

No look-ahead: ``live_targets`` on a market cut at the decision bar gives exactly that bar's row of
``carry_weights`` on any longer history (the sleeve only looks back: rolling means, ffill, rolling std).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lib.core.errors import DataError
from lib.core.symbols import to_perpetual
from lib.core.timeframes import MS_PER_HOUR, format_ms
from lib.research.carry.market import CarryMarket
from lib.research.carry.sleeve import CarryParams, carry_weights, funding_forecast


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveCarryTargets:
    weights: dict[str, float]  # spot symbol: w >= 0, its perp: -w
    breakdown: dict[str, dict[str, Any]]
    book: dict[str, Any]


def check_fresh(market: CarryMarket, *, as_of_ms: int, now_ms: int, max_staleness_bars: int,
                max_funding_age_ms: int) -> None:
    """Every coin's spot and perp candle of a recent bar and a recent funding print, else DataError (fail closed)."""
    oldest_bar = as_of_ms - max_staleness_bars * MS_PER_HOUR
    stale = []
    for coin in market.coins:
        for leg, closes in (("spot", market.spot_close[coin]), ("perp", market.perp_close[coin])):
            known = closes.dropna()
            if known.empty or int(known.index[-1]) < oldest_bar:
                last = "none" if known.empty else format_ms(int(known.index[-1]))
                stale.append(f"{coin} {leg} candles (last {last})")
        prints = market.funding[coin]
        if prints.empty or int(prints.index[-1]) < now_ms - max_funding_age_ms:
            stale.append(f"{coin} funding (last {'none' if prints.empty else format_ms(int(prints.index[-1]))})")
    if stale:
        raise DataError(f"carry inputs are stale at {format_ms(as_of_ms)}: {', '.join(stale)}; no targets written "
                        "(run fetch_prices for the spot and the swap venue)")


def late_legs(market: CarryMarket, *, as_of_ms: int) -> dict[str, str]:
    """coin -> the legs ("spot", "perp") without a candle at ``as_of_ms`` (late within the staleness limit): such a
    pair has no price at the decision bar, so it is held as it is, not traded (as a late symbol of the directional
    book); only coins with a missing leg are listed."""
    late = {}
    for coin in market.coins:
        legs = [leg for leg, closes in (("spot", market.spot_close), ("perp", market.perp_close))
                if as_of_ms not in closes.index or not math.isfinite(closes.at[as_of_ms, coin])]
        if legs:
            late[coin] = " and ".join(legs)
    return late


def live_targets(market: CarryMarket, params: CarryParams, *, as_of_ms: int) -> LiveCarryTargets:
    """The weights of the bar opening at ``as_of_ms`` (decided at its close), both legs, and why."""
    if as_of_ms not in market.index:
        raise DataError(f"carry: no bar at {format_ms(as_of_ms)} in the stored candles")
    weights_frame, kelly_binds = carry_weights(market, params)
    forecast = funding_forecast(market, params).loc[as_of_ms]
    row = weights_frame.loc[as_of_ms]
    weights: dict[str, float] = {}
    breakdown: dict[str, dict[str, Any]] = {}
    for coin in market.coins:
        spot, perp = f"{coin}/USDT", to_perpetual(f"{coin}/USDT")
        weight = float(row[coin]) if math.isfinite(row[coin]) and row[coin] > 0 else 0.0
        expected = float(forecast[coin]) if math.isfinite(forecast[coin]) else None
        weights[spot], weights[perp] = weight, -weight if weight else 0.0
        common = {"coin": coin, "funding_forecast": expected, "eligible": weight > 0, "score": expected,
                  "pair_weight": weight}
        for symbol, leg, close in ((spot, "spot", market.spot_close.at[as_of_ms, coin]),
                                   (perp, "perp", market.perp_close.at[as_of_ms, coin])):
            breakdown[symbol] = {**common, "leg": leg, "weight": weights[symbol],
                                 "close": float(close) if math.isfinite(close) else None}
    book = {"carry": {"gross_spot_weight": sum(w for w in weights.values() if w > 0),
                      "kelly_binds": bool(kelly_binds.loc[as_of_ms]), "leverage": params.leverage}}
    return LiveCarryTargets(weights=weights, breakdown=breakdown, book=book)

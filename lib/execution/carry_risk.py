"""Edge: the carry book's pre-trade risk pass (lib.execution.carry_run calls it before any order): the per-asset
weight cap and exposure limits (lib.execution.risk), the 99 % 1-day VaR / CVaR of the HEDGED book, and the
liquidation guard of its short legs (collateral from the spot wallet first, else the pair is cut, both legs).

A hedged pair's risk is its basis, not the coin: the book's returns are the spot leg's weight x the spot candles'
daily returns plus the perp leg's (negative) weight x the perp candles' (the one file read here: both venues'
stored candles). The decisions are pure functions below; carry_run journals and alerts them once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal

import pandas as pd

from lib.core.errors import CoinbotError
from lib.core.paths import ProjectPaths
from lib.core.short_margin import ShortMargin, assess_shorts
from lib.core.symbols import is_perpetual
from lib.execution.carry_legs import CENT, PairTarget, pair_amount
from lib.execution.margin_guard import GUARD_OFF, LIQUIDATION_RISK, describe
from lib.execution.orders import round_down_to_step
from lib.execution.risk import RiskLimits, RiskRejection, check_exposure
from lib.execution.risk_targets import clip_target_weights
from lib.execution.tail_risk_checks import TAIL_RISK_REFUSED, daily_volatility, fit_tail, read_daily_closes

COLLATERAL_ADDED = "liquidation_risk_collateral"
"""``risk_rejected`` reason of a guard top-up: a short above the limit got collateral from the spot wallet."""


@dataclass(frozen=True, slots=True)
class CarryCandles:
    """Where the two legs' stored candles are: the spot venue and the USD-M venue (``<id>_swap``)."""

    spot: ProjectPaths
    perp: ProjectPaths
    timeframe: str


@dataclass(frozen=True, slots=True)
class CarryRisk:
    """What the pass decided: the pairs to trade toward, what it changed (journaled, one alert) and refusals
    (only risk-reducing orders go, then the run fails)."""

    pairs: dict[str, PairTarget]
    changed: tuple[RiskRejection, ...] = ()
    refusals: tuple[RiskRejection, ...] = ()


def leg_closes(candles: CarryCandles, symbols: Iterable[str]) -> dict[str, pd.Series]:
    """Daily closes of each leg from its own venue's stored candles (a missing file: left out)."""
    wanted = set(symbols)
    return {**read_daily_closes(candles.spot, candles.timeframe, [s for s in wanted if not is_perpetual(s)]),
            **read_daily_closes(candles.perp, candles.timeframe, [s for s in wanted if is_perpetual(s)])}


def leg_weights(pairs: Mapping[str, PairTarget]) -> dict[str, float]:
    """Both legs' weights: spot +w, perp -w."""
    weights: dict[str, float] = {}
    for pair in pairs.values():
        weights[pair.spot_symbol], weights[pair.perp_symbol] = pair.spot_weight, -pair.spot_weight
    return weights


def with_spot_weights(pairs: Mapping[str, PairTarget], spot_weights: Mapping[str, float]) -> dict[str, PairTarget]:
    return {s: replace(p, spot_weight=max(0.0, spot_weights.get(s, p.spot_weight))) for s, p in pairs.items()}


def reduce_only(pairs: Mapping[str, PairTarget], held: Mapping[str, Decimal]) -> dict[str, PairTarget]:
    """Every pair capped at the amount it holds per leg (``max_amount_base``): a refused book only shrinks, exits
    still go. A cap in base units, not a weight: equity moving during the run cannot size a held pair down."""
    return {s: replace(p, max_amount_base=held.get(s, Decimal(0)) if p.max_amount_base is None
                       else min(held.get(s, Decimal(0)), p.max_amount_base)) for s, p in pairs.items()}


def check_targets(pairs: Mapping[str, PairTarget], closes: Mapping[str, pd.Series], limits: RiskLimits,
                  current: Mapping[str, float], held: Mapping[str, Decimal] | None = None) -> CarryRisk:
    """Per-asset cap (clipped, both legs alike), exposure limits (a growing breach is refused), then the hedged
    book fitted to the tail limits (scaled both legs alike, or refused). ``current``: spot weights held now,
    ``held``: spot amounts held now (a refused pair is capped there)."""
    weights, changed = clip_target_weights(leg_weights(pairs), limits)
    fitted = with_spot_weights(pairs, {s: weights[s] for s in pairs})
    baseline = {**{s: w for s, w in current.items()}, **{p.perp_symbol: -current.get(s, 0.0)
                                                         for s, p in pairs.items()}}
    refusals = check_exposure(leg_weights(fitted), limits, baseline=baseline)
    if limits.tail_risk_action != "off":
        tail, scaled, refused = fit_tail(leg_weights(fitted), closes, fixed=set(), limits=limits)
        fitted = with_spot_weights(fitted, {s: tail.get(s, 0.0) for s in fitted})
        changed, refusals = changed + scaled, refusals + refused
    if refusals:
        fitted = reduce_only(fitted, held or {})
    return CarryRisk(pairs=fitted, changed=tuple(changed), refusals=tuple(refusals))


def guard_on(limits: RiskLimits) -> bool:
    return limits.max_liquidation_prob_24h < GUARD_OFF


def held_shorts(held: Mapping[str, Decimal], prices: Mapping[str, float], margin_balance_quote: Decimal,
                volatility: Mapping[str, float], limits: RiskLimits) -> list[ShortMargin]:
    """Short legs (negative perp amounts) assessed on the futures wallet's margin balance (cross margin)."""
    amounts = {s: float(a) for s, a in held.items() if is_perpetual(s) and a < 0}
    if not amounts:
        return []
    return assess_shorts(amounts, prices, float(margin_balance_quote), volatility,
                         max_probability=limits.max_liquidation_prob_24h,
                         fallback_rate=limits.fallback_maintenance_rate)


def guard_top_up(shorts: Iterable[ShortMargin], *, buffer_frac: float, min_quote: Decimal) -> Decimal:
    """Collateral to add so that every held short meets the limit: cross margin, so the largest single need
    (adding C raises every short's margin by C), x (1 + the carry buffer) so a small move does not breach
    again next run, at least the transfer minimum; 0 when no short breaches."""
    needs = [s.collateral_needed_quote for s in shorts if s.breaches]
    if not needs:
        return Decimal(0)
    need = max(needs) * (1.0 + buffer_frac)
    if not math.isfinite(need):
        return Decimal(0)
    return max(Decimal(repr(need)).quantize(CENT, rounding=ROUND_CEILING) + CENT, min_quote)


def cut_unsafe(pairs: Mapping[str, PairTarget], shorts: Iterable[ShortMargin], *, prices: Mapping[str, float],
               sizing_quote: float, steps: Mapping[str, Decimal],
               limit: float) -> tuple[dict[str, PairTarget], list[RiskRejection]]:
    """The pairs whose short (the larger of held and target, assessed at the margin after any top-up) is still above
    the limit, cut to the safe size rounded DOWN to the pair's common lot step: both legs, since the spot weight
    drives both. One rejection per cut pair."""
    spot_of = {p.perp_symbol: s for s, p in pairs.items()}
    weights: dict[str, float] = {}
    caps: dict[str, Decimal] = {}
    cuts = []
    for short in shorts:
        spot = spot_of.get(short.symbol)
        if not short.breaches or spot is None:
            continue
        safe = round_down_to_step(Decimal(repr(max(short.safe_quantity, 0.0))), steps[spot])
        weights[spot] = min(pairs[spot].spot_weight, float(safe) * prices[spot] / sizing_quote)
        cap = pairs[spot].max_amount_base
        caps[spot] = safe if cap is None else min(safe, cap)
        cuts.append(RiskRejection(check=LIQUIDATION_RISK, symbol=short.symbol,
                                  detail=f"{describe(short, limit)}; the pair cut to {safe} per leg"))
    cut = with_spot_weights(pairs, weights)
    return {s: replace(p, max_amount_base=caps[s]) if s in caps else p for s, p in cut.items()}, cuts


def would_hold(pairs: Mapping[str, PairTarget], held: Mapping[str, Decimal], *, sizing_quote: float,
               prices: Mapping[str, float], steps: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Each short leg this run may hold: the larger of the one held and the target (on the lot grid), negative."""
    amounts = {}
    for spot, pair in pairs.items():
        target = pair_amount(pair, sizing_quote=sizing_quote, spot_price=prices[spot], step=steps[spot])
        amounts[pair.perp_symbol] = -max(target, -held.get(pair.perp_symbol, Decimal(0)))
    return {**{s: a for s, a in held.items() if is_perpetual(s) and a < 0}, **amounts}


def unknown_liquidation_risk(error: CoinbotError) -> RiskRejection:
    return RiskRejection(check=LIQUIDATION_RISK, symbol=None,
                         detail=f"liquidation risk of the carry shorts unknown ({error}): only risk-reducing orders")


def perp_volatility(closes: Mapping[str, pd.Series]) -> dict[str, float]:
    """The EWMA daily volatility forecast of each perp leg from its own candles."""
    return daily_volatility({s: c for s, c in closes.items() if is_perpetual(s)})


__all__ = ["COLLATERAL_ADDED", "TAIL_RISK_REFUSED", "CarryCandles", "CarryRisk", "check_targets", "cut_unsafe",
           "guard_on", "guard_top_up", "held_shorts", "would_hold", "leg_closes", "perp_volatility", "reduce_only",
           "unknown_liquidation_risk"]

"""Edge: the combined carry book's tail-risk pass over BOTH parts (lib.execution.carry_combo): the 99 % 1-day
VaR / CVaR of the whole target book (directional spot + carry spot legs at their spot candles' returns, the carry
shorts at their perp candles'), from both venues' stored candles, against ``risk.max_var_99_frac`` /
``max_cvar_99_frac`` (lib.execution.tail_risk_checks.fit_tail, the function every book uses). Over the limit: the
whole book scaled alike (``tail_risk_action = "scale"``: each coin's directional part and carry pair by the same
factor, so every pair stays hedged), or refused (``"refuse"``, or a risk that cannot be assessed): the caller then
lets nothing grow. The carry pass before it (lib.execution.carry_guard) sees the carry pairs alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from lib.execution.carry_legs import PairTarget
from lib.execution.carry_risk import CarryCandles, leg_closes
from lib.execution.carry_state import RunState, journal_risk
from lib.execution.tail_risk_checks import fit_tail


def book_weights(pairs: Mapping[str, PairTarget], spot_only: Mapping[str, PairTarget]) -> dict[str, float]:
    """The whole book's weights: spot = directional + carry leg, perp = - carry leg (zeros left out)."""
    weights: dict[str, float] = {}
    for pair in (*pairs.values(), *spot_only.values()):
        weights[pair.spot_symbol] = pair.directional_weight + pair.spot_weight
        weights[pair.perp_symbol] = -pair.spot_weight
    return {s: w for s, w in weights.items() if w}


def fit_combined(state: RunState, pairs: dict[str, PairTarget], spot_only: dict[str, PairTarget],
                 candles: CarryCandles) -> tuple[dict[str, PairTarget], dict[str, PairTarget], bool]:
    """(pairs, directional-only coins, refused). Scaling and refusals are journaled ``risk_rejected`` and named in
    the run's one alert (a refusal fails the run after the risk-reducing orders)."""
    limits = state.settings.risk
    weights = book_weights(pairs, spot_only)
    if limits.tail_risk_action == "off" or not weights:
        return pairs, spot_only, False
    fitted, scaled, refused = fit_tail(weights, leg_closes(candles, weights), fixed=set(), limits=limits)
    journal_risk(state, [*scaled, *refused])
    if refused:
        state.refused += [f"{r.check}: {r.detail}" for r in refused]
        return pairs, spot_only, True
    if not scaled:
        return pairs, spot_only, False

    def scale(target: PairTarget) -> PairTarget:
        factor = fitted[target.spot_symbol] / weights[target.spot_symbol]
        return replace(target, spot_weight=target.spot_weight * factor,
                       directional_weight=target.directional_weight * factor)

    return ({s: scale(p) if s in weights else p for s, p in pairs.items()},
            {s: scale(p) if s in weights else p for s, p in spot_only.items()}, False)

"""Pure: doctor's hedge rows for the two-account carry books at the last rebalance (positions.json): is each perp
short covered by the spot that hedges it? ``funding_carry``: the coin's whole spot; the combined book with the
funding_carry sleeve: the spot above the coin's directional target amount (lib.execution.carry_combo.hedge_spot:
directional weight of the targets the last rebalance traded x its equity / the coin's mark).

FAIL: the spot does not cover the short, or (targets of the last rebalance known, no risk pass changed them) the
spot above the directional target leaves more than ``carry.max_unhedged_quote`` of the short uncovered: what a
rebalance never leaves (such a run failed and alerted). WARN: the directional target alone leaves it uncovered but
the last rebalance's risk pass scaled or refused the targets (its directional amounts were smaller). The directional
amount is not floored to the lot step here (doctor reads no market rules): up to one spot lot may show as uncovered.
"""

from __future__ import annotations

from collections.abc import Mapping

from lib.core.findings import Finding
from lib.core.state import Positions
from lib.core.symbols import is_perpetual, to_spot

CHECK = "carry hedge"
FIX = ("run rebalance (it hedges the difference or unwinds the pair); if this repeats, compare both wallets on the "
       "exchange with state/positions.json")


def check_hedges(positions: Positions, directional_weights: Mapping[str, float] | None, *, max_unhedged_quote: float,
                 quote: str, risk_changed: bool = False) -> list[Finding]:
    """One row per perp short. ``directional_weights``: spot symbol -> the directional target weight the last
    rebalance traded ({} for funding_carry; None: not known, the short is judged on the coin's whole spot);
    ``risk_changed``: that rebalance's risk pass scaled or refused its targets."""
    rows = []
    for perp, amount in sorted(positions.amounts_base.items()):
        if not is_perpetual(perp) or amount >= 0:
            continue
        coin, short = to_spot(perp), -amount
        spot, price = positions.amounts_base.get(coin, 0.0), positions.marks.get(coin, 0.0)
        bare = max(short - spot, 0.0) * price  # not covered by any spot at all
        weight = (directional_weights or {}).get(coin, 0.0)
        directional = weight * positions.equity_quote / price if price > 0 else 0.0
        hedge = max(spot - directional, 0.0)
        uncovered = max(short - hedge, 0.0) * price
        detail = (f"{coin}: short {short:g}, spot {spot:g} = directional target {directional:g} + hedge {hedge:g} "
                  f"(marks of the last rebalance): {uncovered:.2f} {quote} of the short uncovered")
        if directional_weights is None:
            detail = (f"{coin}: short {short:g}, spot {spot:g} (directional target unknown: targets.json is not the "
                      f"last rebalance's): {bare:.2f} {quote} of the short uncovered by any spot")
        if bare > max_unhedged_quote:
            rows.append(Finding(CHECK, "fail", f"{detail}; the spot does not cover it (> carry.max_unhedged_quote "
                                               f"{max_unhedged_quote:g})", FIX))
        elif directional_weights is not None and uncovered > max_unhedged_quote:
            over = f"{detail} > carry.max_unhedged_quote {max_unhedged_quote:g}"
            rows.append(Finding(CHECK, "warn", f"{over} (the last rebalance's risk pass scaled its targets: its "
                                               "directional amounts were smaller)", FIX) if risk_changed
                        else Finding(CHECK, "fail", over, FIX))
        else:
            rows.append(Finding(CHECK, "ok", detail))
    return rows

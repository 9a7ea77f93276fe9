"""Pure: doctor's hedge rows for the two-account carry books at the last rebalance (positions.json, not the live
exchange): is each perp short covered by the spot that hedges it? ``funding_carry``: the coin's whole spot; the
combined book with the funding_carry sleeve: the spot above the coin's directional target amount
(lib.execution.carry_combo.hedge_spot: directional weight of the targets the last rebalance traded x its equity /
the coin's mark).

FAIL: the spot does not cover the short, or (targets of the last rebalance known, no risk pass changed them) the
spot above the directional target leaves more than ``carry.max_unhedged_quote`` of the short uncovered: what a
rebalance never leaves (such a run failed and alerted). WARN: the directional target alone leaves it uncovered but
the last rebalance's risk pass scaled or refused the targets (its directional amounts were smaller).

Lots: a gap smaller than one lot (the larger of the spot and perp markets' amount steps) cannot be traded away, and
the directional amount here is not floored to the spot lot as the rebalance floors it: such a gap counts as covered
("within one lot"), whatever its value; one lot or more is judged as above. Without the markets' steps (exchange
unreachable) gaps are judged without that tolerance, and the row says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from lib.core.findings import Finding
from lib.core.state import Positions
from lib.core.symbols import is_perpetual, to_spot
from lib.core.timeframes import format_ms

CHECK = "carry hedge"
FIX = ("run rebalance (it hedges the difference or unwinds the pair); if this repeats, compare both wallets on the "
       "exchange with state/positions.json")


def check_hedges(positions: Positions, directional_weights: Mapping[str, float] | None, *, max_unhedged_quote: float,
                 quote: str, risk_changed: bool = False, amount_steps: Mapping[str, Decimal] | None = None,
                 steps_unknown: str = "") -> list[Finding]:
    """One row per perp short. ``directional_weights``: spot symbol -> the directional target weight the last
    rebalance traded ({} for funding_carry; None: not known, the short is judged on the coin's whole spot);
    ``risk_changed``: that rebalance's risk pass scaled or refused its targets; ``amount_steps``: symbol -> its
    market's amount step in base units (spot and perp of each coin; a coin missing either: no lot tolerance,
    ``steps_unknown`` says why)."""
    rows = []
    source = f"per positions.json (last rebalance {format_ms(positions.updated_ms)}; not the live exchange)"
    for perp, amount in sorted(positions.amounts_base.items()):
        if not is_perpetual(perp) or amount >= 0:
            continue
        coin, short = to_spot(perp), -amount
        spot, price = positions.amounts_base.get(coin, 0.0), positions.marks.get(coin, 0.0)
        bare_base = max(_exact(short) - _exact(spot), Decimal(0))  # not covered by any spot at all
        bare = float(bare_base) * price
        weight = (directional_weights or {}).get(coin, 0.0)
        directional = weight * positions.equity_quote / price if price > 0 else 0.0
        hedge = max(spot - directional, 0.0)
        uncovered_base = max(_exact(short) - _exact(hedge), Decimal(0))
        uncovered = float(uncovered_base) * price
        detail = (f"{coin}: {source}: short {short:g}, spot {spot:g} = directional target {directional:g} + hedge "
                  f"{hedge:g} (its marks): {uncovered:.2f} {quote} of the short uncovered")
        gap_base = uncovered_base
        if directional_weights is None:
            detail = (f"{coin}: {source}: short {short:g}, spot {spot:g} (directional target unknown: targets.json is "
                      f"not the last rebalance's): {bare:.2f} {quote} of the short uncovered by any spot")
            gap_base = bare_base
        lot = _lot(amount_steps or {}, coin, perp)
        if lot is None and gap_base > 0:
            detail += f" (lot steps unknown: {steps_unknown or 'market not listed'}; judged without a lot tolerance)"
        elif lot is not None and 0 < gap_base < lot:
            detail += (f", within one lot ({lot.normalize():f} = the larger amount step of {coin} and {perp}): "
                       "cannot be traded, counted as covered")
        bare_fails = bare > max_unhedged_quote and not _within_lot(bare_base, lot)
        uncovered_fails = uncovered > max_unhedged_quote and not _within_lot(uncovered_base, lot)
        if bare_fails:
            rows.append(Finding(CHECK, "fail", f"{detail}; the spot does not cover it (> carry.max_unhedged_quote "
                                               f"{max_unhedged_quote:g})", FIX))
        elif directional_weights is not None and uncovered_fails:
            over = f"{detail} > carry.max_unhedged_quote {max_unhedged_quote:g}"
            rows.append(Finding(CHECK, "warn", f"{over} (the last rebalance's risk pass scaled its targets: its "
                                               "directional amounts were smaller)", FIX) if risk_changed
                        else Finding(CHECK, "fail", over, FIX))
        else:
            rows.append(Finding(CHECK, "ok", detail))
    return rows


def _exact(amount: float) -> Decimal:
    """A positions.json amount as the decimal it was written from (0.013 - 0.012 is 0.001, not 0.0010000000000000009),
    so a gap of exactly one lot is not read as just below or above it."""
    return Decimal(repr(float(amount)))


def _lot(steps: Mapping[str, Decimal], coin: str, perp: str) -> Decimal | None:
    """The larger of the two markets' amount steps; None when either is unknown."""
    spot_step, perp_step = steps.get(coin), steps.get(perp)
    return None if spot_step is None or perp_step is None else max(spot_step, perp_step)


def _within_lot(gap_base: Decimal, lot: Decimal | None) -> bool:
    return lot is not None and gap_base < lot

"""Pure: the combined book with the funding-carry sleeve: its capital split and its one set of target weights.

``combiner.sleeves`` may name ``funding_carry`` next to spot sleeves. Its normalized budget ``b`` is a CAPITAL
share of the whole book (spot wallet + futures wallet): the carry pairs are sized as the carry book would size
them on an equity of ``b`` x equity, and the spot sleeves (the directional part) are the book of the remaining
sleeves (their budgets renormalized among themselves; one sleeve = exactly that sleeve's own book) sized on
``(1 - b)`` x equity. Every run re-splits: the weights are fractions of the whole book's equity, so a sleeve that
drifted is brought back to its share by the run's orders (the backtest costs these re-split trades).

Per coin: spot weight = directional part + carry spot leg; the perpetual = minus the carry spot leg. A coin held
by both has ONE spot holding: its hedge (the carry's spot leg) is the spot amount minus the directional target,
never the directional part itself (lib.execution.carry_run).

Decision time: the directional part is decided at the close of its bar (``strategy.timeframe``); the carry part
at the close of the hourly bar that closes at the same moment (``carry_decision_ms``), so both parts use data up
to the same instant and no later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from lib.core.errors import DataError
from lib.core.symbols import is_perpetual, to_perpetual
from lib.core.timeframes import MS_PER_HOUR, timeframe_ms
from lib.research.sleeves.combiner import normalized_budgets
from lib.research.sleeves.params import CARRY_SLEEVE, CombinerParams
from lib.research.strategy_params import COMBINED

QUOTE = "USDT"


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrySplit:
    """``carry_frac``: the carry sleeve's capital share; the directional part is the book ``directional_name``
    with ``directional`` (the other sleeves, budgets renormalized) on the rest."""

    carry_frac: float
    directional_name: str
    directional: CombinerParams

    @property
    def directional_frac(self) -> float:
        return 1.0 - self.carry_frac


def carry_split(strategy_name: str, combiner: CombinerParams) -> CarrySplit | None:
    """The split of a ``combined`` book whose sleeves include ``funding_carry``; None for every other book."""
    if strategy_name != COMBINED or CARRY_SLEEVE not in combiner.sleeves:
        return None
    budgets = normalized_budgets(combiner.sleeves, combiner.budgets)
    carry = budgets.pop(CARRY_SLEEVE)
    names = tuple(budgets)
    directional = replace(combiner, sleeves=names, budgets=tuple(budgets[name] for name in names))
    return CarrySplit(carry_frac=carry, directional_name=names[0] if len(names) == 1 else COMBINED,
                      directional=directional)


def carry_decision_ms(as_of_ms: int, timeframe: str) -> int:
    """Open of the hourly bar that closes when the directional bar opening at ``as_of_ms`` closes."""
    return as_of_ms + timeframe_ms(timeframe) - MS_PER_HOUR


def combine_weights(directional: Mapping[str, float], carry: Mapping[str, float], split: CarrySplit
                    ) -> dict[str, float]:
    """One book: spot symbol -> (1 - b) x directional + b x carry spot leg; perp -> b x carry perp leg (<= 0).

    ``directional``: the spot sleeves' own weights (spot symbols, >= 0); ``carry``: the carry book's own weights
    (spot leg w >= 0, its perp -w)."""
    if any(is_perpetual(s) for s in directional):
        raise DataError("the directional sleeves are spot: a perpetual weight among them")
    weights = {s: split.directional_frac * float(w) for s, w in directional.items()}
    for symbol, weight in carry.items():
        weights[symbol] = weights.get(symbol, 0.0) + split.carry_frac * float(weight)
    for symbol, weight in weights.items():
        if not (weight == weight) or (weight < 0 and not is_perpetual(symbol)):
            raise DataError(f"combined weight of {symbol} is {weight}: spot weights must be finite and >= 0")
    return {s: w + 0.0 for s, w in sorted(weights.items())}


def combine_breakdown(directional: Mapping[str, float], carry: Mapping[str, float], split: CarrySplit, *,
                      directional_breakdown: Mapping[str, dict[str, Any]],
                      carry_breakdown: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Why each weight is what it is: the directional part and the carry leg (book fractions) that add up to it,
    and each part's own breakdown (the sleeve book's per-asset entry; the carry leg's forecast and pair weight)."""
    weights = combine_weights(directional, carry, split)
    out: dict[str, dict[str, Any]] = {}
    for symbol, weight in weights.items():
        own = directional_breakdown.get(symbol, {})
        leg = carry_breakdown.get(symbol)
        directional_part = split.directional_frac * float(directional.get(symbol, 0.0))
        carry_part = split.carry_frac * float(carry.get(symbol, 0.0))
        close = own.get("close") if own.get("close") is not None else (leg or {}).get("close")
        out[symbol] = {**own, "weight": weight, "close": close,
                       "eligible": bool(own.get("eligible")) or bool((leg or {}).get("eligible")),
                       "parts": {"directional": directional_part, CARRY_SLEEVE: carry_part},
                       "carry": None if leg is None else {**leg, "book_weight": carry_part}}
    return out


def combine_frames(directional: pd.DataFrame, carry: pd.DataFrame, split: CarrySplit, timeframe: str
                   ) -> pd.DataFrame:
    """The combined weights over history, at the directional bars: ``directional`` (time x spot symbol, bars of
    ``timeframe``), ``carry`` (hourly, time x coin: spot-leg weights). Row t uses the carry row decided at the
    same close (``carry_decision_ms``): no later data. Columns: spot symbols and the carry coins' perps."""
    hours = directional.index.map(lambda t: carry_decision_ms(int(t), timeframe))
    legs = carry.reindex(hours).fillna(0.0)
    legs.index = directional.index
    spot = directional.fillna(0.0) * split.directional_frac
    for coin in legs.columns:
        symbol = f"{coin}/{QUOTE}"
        spot[symbol] = spot.get(symbol, 0.0) + split.carry_frac * legs[coin]
        spot[to_perpetual(symbol)] = -split.carry_frac * legs[coin] + 0.0
    return spot

"""Pure: funding on the paper account's perp positions, settled between two runs.

Binance USD-M settles funding every 8 h: a long pays ``amount x mark x rate`` (a short receives it; a negative
rate reverses both). The paper account held the same positions from the previous run to this one (positions
only change inside a run), so every settlement in ``(previous run, this run]`` is charged on them, at this
run's price (the mark at each settlement is not kept: an approximation of a few basis points of the payment).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal

from lib.core.errors import DataError
from lib.execution.paper import PaperSnapshot


def accrue_funding(snapshot: PaperSnapshot, *, rates: Mapping[str, Sequence[tuple[int, float]]],
                   prices: Mapping[str, float], since_ms: int, until_ms: int) -> tuple[PaperSnapshot, Decimal]:
    """(the snapshot with funding paid from / credited to its cash, the net amount paid: > 0 = paid).

    Raises:
        DataError: a perp position without a price or a rate that is not a finite number (fail closed).
    """
    paid = Decimal(0)
    for symbol, amount in sorted(snapshot.amounts_base.items()):
        if ":" not in symbol:
            continue
        price = prices.get(symbol)
        if price is None or not math.isfinite(price) or price <= 0:
            raise DataError(f"paper funding: no valid price for {symbol} ({price!r})")
        for time_ms, rate in rates.get(symbol, ()):
            if not since_ms < time_ms <= until_ms:
                continue
            if not math.isfinite(rate):
                raise DataError(f"paper funding: rate of {symbol} at {time_ms} is {rate!r}")
            paid += amount * Decimal(repr(float(price))) * Decimal(repr(float(rate)))
    return dataclasses.replace(snapshot, cash_quote=snapshot.cash_quote - paid), paid

"""Pure: the funding-coverage policy of perp studies: which symbols have a funding history, what a symbol
without one is charged (``StudyParams.missing_funding``), and from when every symbol is tradeable."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from lib.research.study.sections import MissingFunding
from lib.research.study.simulation import Frame


def build_funding_wide(
    funding_by_symbol: Mapping[str, Frame | None], *, policy: MissingFunding
) -> tuple[Frame | None, list[str]]:
    """Funding rates as a wide frame (settlement time x symbol) and the symbols to drop.

    ``funding_by_symbol`` has every traded symbol; None or empty = no funding history. Policies: see
    ``StudyParams.missing_funding`` (``proxy``: the mean rate of the others at each settlement).
    """
    known = {symbol: frame for symbol, frame in funding_by_symbol.items() if frame is not None and len(frame)}
    missing = sorted(set(funding_by_symbol) - set(known))
    dropped = missing if policy == "drop" else []
    if not known:
        return None, dropped
    wide = pd.DataFrame({symbol: frame.set_index("timestamp")["rate"] for symbol, frame in known.items()})
    wide = wide.sort_index()
    if policy == "proxy" and missing:
        wide = wide.assign(**dict.fromkeys(missing, wide.mean(axis=1, skipna=True)))
    wide.index = wide.index.astype("int64")
    return wide, dropped

def first_funding_ms(funding_by_symbol: Mapping[str, Frame | None]) -> int:
    """The first settlement at which EVERY symbol with a funding history has one, 0 if none (why: a
    perpetual without any funding print yet was not listed, so a backtest must not trade it)."""
    frames = [frame for frame in funding_by_symbol.values() if frame is not None and len(frame)]
    return max((int(frame["timestamp"].iloc[0]) for frame in frames), default=0)

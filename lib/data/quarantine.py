"""Pure: a price jump that fetch_prices kept is QUARANTINED: not used for signals until decided.

One bad print on the benchmark flips the regime and trades the whole book, so a close more than
``max_jump_frac`` away from the last trusted close is decided before any signal may use it. Per series,
oldest first, on the CLOSED candles up to the run's bar (so an ``--as-of`` run never looks ahead):

- ``trusted`` is the last accepted close; a close within ±max_jump_frac of it is accepted.
- a close beyond is a JUMP, decided by the next ``confirm_bars`` candles once they exist:
  CONFIRMED when every one of them is nearer (log distance) to the jump's close than to ``trusted``: a real
  move that held -> accepted. REFUTED when every one is nearer to ``trusted``: a print the market never
  traded at -> that one candle is left out (treated as missing). Otherwise (mixed) a person decides; if
  nobody does, it counts as market history once it is ``2 * confirm_bars + 2`` candles old (real volatile
  moves look like this: BNB 2018-01-06 and DOGE 2020-07-08 on Binance daily candles).
- while a jump is undecided the series is CUT before it: the symbol is held (not traded on suspect data)
  and a benchmark's regime is carried from its last trusted candle.
- a person's decision overrides (state/jump_decisions.json, written by ``python -m scripts.confirm_jump``):
  ``confirm`` -> accepted, ``reject`` -> left out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lib.core.errors import StateError
from lib.data.ohlcv import format_ms

DECISIONS_SCHEMA_VERSION = 1
DECISIONS = ("confirm", "reject")


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineResult:
    candles: pd.DataFrame  # what signals may use
    cut_at_ms: int | None  # open time of the undecided jump the series was cut before (None: not cut)
    notes: tuple[str, ...]  # every decision about a recent jump, and why a series was cut


def apply_quarantine(candles: pd.DataFrame, *, symbol: str, max_jump_frac: float, confirm_bars: int,
                     confirmed: Collection[int] = (), rejected: Collection[int] = (),
                     recent_bars: int | None = None) -> QuarantineResult:
    """``candles`` with refuted/rejected jumps left out and cut before an undecided one (see the module doc).

    ``confirmed``/``rejected``: candle open times a person decided. Notes cover jumps among the last
    ``recent_bars`` candles (default 2 * confirm_bars + 2), so old, settled history does not repeat forever;
    an undecided (mixed) jump older than that is used as history.
    """
    close = candles["close"].to_numpy(dtype=float)
    times = candles["timestamp"].to_numpy()
    moves = np.abs(close[1:] / close[:-1] - 1) if len(close) > 1 else np.array([])
    if not (moves > max_jump_frac).any():
        return QuarantineResult(candles=candles, cut_at_ms=None, notes=())
    window = recent_bars if recent_bars is not None else 2 * confirm_bars + 2
    recent_from = len(close) - window
    notes: list[str] = []
    dropped: list[int] = []
    trusted = close[0]
    for i in range(1, len(close)):
        x, when = close[i], int(times[i])
        if abs(x / trusted - 1) <= max_jump_frac or when in confirmed:
            if when in confirmed and i >= recent_from:
                notes.append(f"{symbol} jump at {format_ms(when)} confirmed by a person: used")
            trusted = x
            continue
        what = f"{symbol} jump at {format_ms(when)}: close {x:g} vs trusted {trusted:g} ({x / trusted - 1:+.1%})"
        if when in rejected:
            dropped.append(i)
            if i >= recent_from:
                notes.append(f"{what} rejected by a person: left out")
            continue
        later = close[i + 1:i + 1 + confirm_bars]
        if len(later) < confirm_bars:
            notes.append(f"{what} QUARANTINED until {confirm_bars} later candle(s) confirm it ({len(later)} so "
                         f"far) or a person decides (scripts.confirm_jump): series cut before it, symbol held")
            return _result(candles, dropped, cut=i, notes=notes)
        nearer_new = np.abs(np.log(later / x)) < np.abs(np.log(later / trusted))
        if nearer_new.all():
            trusted = x
            if i >= recent_from:
                notes.append(f"{what} confirmed by the next {confirm_bars} candle(s): used")
        elif not nearer_new.any():
            dropped.append(i)
            if i >= recent_from:
                notes.append(f"{what} refuted by the next {confirm_bars} candle(s) (the price went back): "
                             "left out as a bad print")
        elif i < recent_from:  # undecided but old: the market traded around it for days; history, used
            trusted = x
        else:
            notes.append(f"{what} QUARANTINED: the next {confirm_bars} candle(s) neither confirm nor refute it; "
                         f"a person decides (scripts.confirm_jump), else it is used once {window} candles old: "
                         "series cut before it, symbol held")
            return _result(candles, dropped, cut=i, notes=notes)
    return _result(candles, dropped, cut=None, notes=notes)


def _result(candles: pd.DataFrame, dropped: list[int], *, cut: int | None, notes: list[str]) -> QuarantineResult:
    keep = np.ones(len(candles), dtype=bool)
    keep[dropped] = False
    cut_at_ms = None
    if cut is not None:
        cut_at_ms = int(candles["timestamp"].iloc[cut])
        keep[cut:] = False
    return QuarantineResult(candles=candles.loc[keep].reset_index(drop=True), cut_at_ms=cut_at_ms,
                            notes=tuple(notes))


def parse_decisions(raw: Any) -> dict[tuple[str, str], dict[str, set[int]]]:
    """state/jump_decisions.json -> {(symbol, timeframe): {"confirm": {open_ms}, "reject": {open_ms}}}.

    Raises:
        StateError: a file this version did not write (never guessed at: it decides what is traded on).
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict) or raw.get("schema_version") != DECISIONS_SCHEMA_VERSION \
            or not isinstance(raw.get("decisions"), list):
        raise StateError(f"jump_decisions.json: not a schema_version {DECISIONS_SCHEMA_VERSION} file with a "
                         "decisions list; fix or delete it")
    found: dict[tuple[str, str], dict[str, set[int]]] = {}
    for entry in raw["decisions"]:
        ok = isinstance(entry, Mapping) and entry.get("decision") in DECISIONS and isinstance(
            entry.get("symbol"), str) and isinstance(entry.get("timeframe"), str) and isinstance(
            entry.get("open_ms"), int) and not isinstance(entry.get("open_ms"), bool)
        if not ok:
            raise StateError(f"jump_decisions.json: invalid entry {entry!r}")
        slot = found.setdefault((entry["symbol"], entry["timeframe"]), {"confirm": set(), "reject": set()})
        slot[entry["decision"]].add(entry["open_ms"])
    return found

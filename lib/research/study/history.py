"""Pure: the bars a study run covers: candles cut at ``--end``, the ``--start``/``--end`` arguments, and the
first tradeable bar."""

from __future__ import annotations

from collections.abc import Mapping

from lib.core import timeframes
from lib.core.errors import DataError
from lib.core.timeframes import MS_PER_DAY
from lib.research.study.simulation import Frame, SimulationInputs


def cut_candles(candles_by_symbol: Mapping[str, Frame], *, end_ms: int | None) -> dict[str, Frame]:
    """Candles cut at ``end_ms`` (inclusive); symbols left without any are dropped (DataError if all)."""
    cut = {symbol: frame if end_ms is None else frame[frame["timestamp"] <= end_ms].reset_index(drop=True)
           for symbol, frame in candles_by_symbol.items()}
    kept = {symbol: frame for symbol, frame in cut.items() if len(frame)}
    if not kept:
        raise DataError(f"no candles at or before {end_ms}; check --end and the data directory")
    return kept

def parse_time_ms(text: str, *, is_end: bool) -> int:
    """ISO date/time (UTC) or epoch ms -> ms (ConfigError otherwise). A bare date as an END means the
    whole day (its last ms)."""
    time_ms = timeframes.parse_time_ms(text, what="--end" if is_end else "--start")
    return time_ms + MS_PER_DAY - 1 if is_end and len(text) == len("2024-01-01") else time_ms

def default_start_ms(inputs: SimulationInputs, *, not_before_ms: int = 0) -> int:
    """The first bar at or after ``not_before_ms`` at which the universe is non-empty: benchmarks
    then start with the strategy, not during its indicator warm-up. DataError if there is none."""
    tradeable = inputs.is_tradeable[inputs.is_tradeable.index >= not_before_ms]
    if not tradeable.any():
        raise DataError("no bar has a tradeable symbol (universe.min_history_bars too long for the data?)")
    return int(tradeable.idxmax())

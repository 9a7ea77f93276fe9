"""Pure: the aligned panels the carry sleeve runs on: spot and perpetual candles of each coin, funding prints.

Rows are hourly bar OPEN times (int ms, the union of every leg's bars); columns are base assets
("BTC"). Missing bars stay NaN: a missing open blocks trading that coin on that bar, a missing
close is marked at the last close. Funding is kept as the raw prints (settlement time -> rate),
because a print is known only from its settlement time on; ``funding_at_bar`` puts each print on
the bar that OPENS at its settlement time (the settlement happens at that instant).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.core.timeframes import MS_PER_HOUR


@dataclass(frozen=True, slots=True)
class CarryMarket:
    """Wide frames on one hourly index (open ms) x coins; ``funding`` maps coin -> prints Series."""

    spot_open: pd.DataFrame
    spot_close: pd.DataFrame
    perp_open: pd.DataFrame
    perp_high: pd.DataFrame
    perp_close: pd.DataFrame
    funding: Mapping[str, pd.Series]
    benchmark_close: pd.Series  # spot close of the beta benchmark (BTC) on the same index
    spot_high: pd.DataFrame  # for the mark-price proxy of the short's worst intrabar point

    @property
    def coins(self) -> list[str]:
        return list(self.spot_open.columns)

    @property
    def index(self) -> pd.Index:
        return self.spot_open.index


def build_market(spot: Mapping[str, pd.DataFrame], perp: Mapping[str, pd.DataFrame],
                 funding: Mapping[str, pd.DataFrame], *, benchmark: str = "BTC",
                 benchmark_spot: pd.DataFrame | None = None) -> CarryMarket:
    """Align hourly candle frames (timestamp, open, high, low, close, ...) and funding frames (timestamp, rate).

    Only coins with all three inputs are kept. ``benchmark_spot`` defaults to ``spot[benchmark]``.
    Raises when nothing is left, or when a timestamp is off the hourly grid.
    """
    coins = sorted(set(spot) & set(perp) & set(funding))
    if not coins:
        raise DataError(f"no coin has spot, perpetual and funding data (spot {sorted(spot)}, perp {sorted(perp)}, "
                        f"funding {sorted(funding)})")
    frames = [spot[coin] for coin in coins] + [perp[coin] for coin in coins]
    stamps = np.unique(np.concatenate([frame["timestamp"].to_numpy(dtype=np.int64) for frame in frames]))
    if (stamps % MS_PER_HOUR).any():
        raise DataError("carry candles must be hourly bars on the hour")
    index = pd.Index(stamps, name="timestamp")

    def wide(source: Mapping[str, pd.DataFrame], column: str) -> pd.DataFrame:
        return pd.DataFrame({coin: source[coin].set_index("timestamp")[column].astype(float).reindex(index)
                             for coin in coins}, index=index)

    prints = {coin: funding[coin].set_index("timestamp")["rate"].astype(float).sort_index() for coin in coins}
    bench = benchmark_spot if benchmark_spot is not None else spot.get(benchmark)
    if bench is None:
        raise DataError(f"no spot candles for the beta benchmark {benchmark}")
    bench_close = bench.set_index("timestamp")["close"].astype(float).reindex(index)
    return CarryMarket(wide(spot, "open"), wide(spot, "close"), wide(perp, "open"), wide(perp, "high"),
                       wide(perp, "close"), prints, bench_close, wide(spot, "high"))


def funding_at_bar(market: CarryMarket) -> pd.DataFrame:
    """Rate settled at each bar's open time (NaN where no settlement falls on the bar)."""
    return pd.DataFrame({coin: market.funding[coin].reindex(market.index) for coin in market.coins},
                        index=market.index)


def slice_market(market: CarryMarket, *, start_ms: int | None = None, end_ms: int | None = None) -> CarryMarket:
    """Bars opening in [start_ms, end_ms] (both inclusive, None = open); prints outside are dropped too."""
    def cut(frame: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
        return frame.loc[start_ms:end_ms]
    return CarryMarket(cut(market.spot_open), cut(market.spot_close), cut(market.perp_open), cut(market.perp_high),
                       cut(market.perp_close), {coin: cut(series) for coin, series in market.funding.items()},
                       cut(market.benchmark_close), cut(market.spot_high))

"""A small synthetic carry market: hourly spot and perp candles (perp = spot x (1 + small basis)) and 8-hourly
funding prints that switch between a rich and a poor regime, so the sleeve enters and exits."""

from __future__ import annotations

import numpy as np
import pandas as pd

H = 3_600_000
START_MS = 1_577_836_800_000  # 2020-01-01T00:00Z


def synthetic_frames(days: int = 120, coins: tuple[str, ...] = ("BTC", "ETH"), seed: int = 7
                     ) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """(spot, perp, funding) frames per coin in the stored schemas (timestamp ms, OHLCV float64; timestamp, rate)."""
    rng = np.random.default_rng(seed)
    hours = days * 24
    stamps = START_MS + H * np.arange(hours, dtype=np.int64)
    spot, perp, funding = {}, {}, {}
    for number, coin in enumerate(coins):
        close = (100.0 * (number + 1)) * np.exp(np.cumsum(rng.normal(0.0, 0.006, hours)))
        basis = 1.0 + rng.normal(0.0, 0.0008, hours)
        for out, level in ((spot, close), (perp, close * basis)):
            opens = np.concatenate([[level[0]], level[:-1]])
            wiggle = np.abs(rng.normal(0.0, 0.002, hours))
            out[coin] = pd.DataFrame({"timestamp": stamps, "open": opens,
                                      "high": np.maximum(opens, level) * (1 + wiggle),
                                      "low": np.minimum(opens, level) * (1 - wiggle), "close": level,
                                      "volume": np.full(hours, 10.0)})
        settlements = stamps[stamps % (8 * H) == 0]
        regime = (np.arange(len(settlements)) // (3 * 20 + number * 9)) % 2 == 0  # ~20-day rich/poor spells
        rates = np.where(regime, 0.0006, -0.0001) + rng.normal(0.0, 0.00005, len(settlements))
        funding[coin] = pd.DataFrame({"timestamp": settlements, "rate": rates})
    if hours > 600:  # a 3-hour spot outage, as on Binance: the perp keeps trading
        spot[coins[0]] = spot[coins[0]].drop(index=range(500, 503)).reset_index(drop=True)
    return spot, perp, funding

"""Pure: the ``[simulated]`` section (SimulatedParams) and the built-in asset table of the synthetic market
(``lib.execution.simulated``). Kept apart so that loading the config does not load numpy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from lib.core.errors import ConfigError
from lib.core.symbols import STABLECOINS, base_of, is_perpetual, split_symbol
from lib.core.timeframes import MS_PER_HOUR

QUOTE = "USDT"


def _utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """How one synthetic asset behaves: price level, market beta, idiosyncratic vol, activity, listing."""

    anchor_price_quote: float  # price at genesis and long-run level the log price reverts to
    beta: float
    idio_vol_frac: float  # annualized
    volume_quote_per_hour: float
    listing_ms: int = 0  # spot and perp listing; 0 = listed from genesis
    funding_cap_frac: float = 0.0075


ASSETS: Mapping[str, AssetSpec] = MappingProxyType({
    "BTC": AssetSpec(25_000.0, 1.00, 0.20, 60e6, funding_cap_frac=0.003),
    "ETH": AssetSpec(1_600.0, 1.15, 0.35, 30e6, funding_cap_frac=0.003),
    "BNB": AssetSpec(250.0, 0.90, 0.45, 6e6),
    "SOL": AssetSpec(40.0, 1.35, 0.75, 8e6, _utc_ms("2020-08-11T06:00")),
    "XRP": AssetSpec(0.5, 1.00, 0.60, 8e6),
    "ADA": AssetSpec(0.35, 1.10, 0.55, 3e6),
    "DOGE": AssetSpec(0.07, 1.10, 0.90, 4e6, _utc_ms("2019-07-05T12:00")),
    "TRX": AssetSpec(0.07, 0.80, 0.50, 1.5e6),
    "DOT": AssetSpec(6.0, 1.15, 0.55, 2e6, _utc_ms("2020-08-18T23:00")),
    "LINK": AssetSpec(7.0, 1.20, 0.60, 3e6, _utc_ms("2019-01-16T10:00")),
    "MATIC": AssetSpec(0.8, 1.25, 0.75, 2.5e6, _utc_ms("2019-04-26T15:00")),
    "LTC": AssetSpec(80.0, 1.00, 0.45, 3e6),
    "BCH": AssetSpec(250.0, 1.00, 0.50, 2e6, _utc_ms("2019-11-28T10:00")),
    "AVAX": AssetSpec(15.0, 1.30, 0.70, 3e6, _utc_ms("2020-09-22T06:00")),
    "ATOM": AssetSpec(10.0, 1.15, 0.55, 1.5e6, _utc_ms("2019-04-29T04:00")),
    "ETC": AssetSpec(18.0, 1.00, 0.55, 1.5e6),
    "XLM": AssetSpec(0.12, 0.95, 0.50, 1e6),
    "UNI": AssetSpec(6.0, 1.20, 0.65, 1.5e6, _utc_ms("2020-09-17T03:00")),
    "NEAR": AssetSpec(2.0, 1.30, 0.80, 2e6, _utc_ms("2020-10-14T10:00")),
    "FIL": AssetSpec(5.0, 1.15, 0.70, 1.5e6, _utc_ms("2020-10-15T04:00")),
    "AAVE": AssetSpec(80.0, 1.20, 0.65, 1e6, _utc_ms("2020-10-15T03:00")),
    "ALGO": AssetSpec(0.2, 1.10, 0.60, 0.8e6, _utc_ms("2019-06-22T00:00")),
    "EOS": AssetSpec(0.8, 1.00, 0.50, 1e6),
    "XMR": AssetSpec(150.0, 0.85, 0.45, 0.8e6, _utc_ms("2019-03-15T06:00")),
    "SHIB": AssetSpec(0.00001, 1.30, 1.00, 3e6, _utc_ms("2021-05-10T11:00")),
    "POL": AssetSpec(0.4, 1.25, 0.75, 2.5e6, _utc_ms("2024-09-13T10:00")),  # MATIC's successor on Binance
})  # fmt: skip

DEFAULT_SYMBOLS = tuple(f"{base}/{QUOTE}" for base in ASSETS)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedParams:
    """The synthetic market (TOML section ``simulated``). Same params and seed, same candles."""

    seed: int = 7
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS  # spot symbols; each also has a BASE/USDT:USDT perpetual
    genesis_ms: int = 1_546_300_800_000  # 2019-01-01T00:00Z, start of the synthetic history
    market_vol_frac: float = 0.55  # annualized vol of the common market factor in the calm regime
    volatile_regime_mult: float = 2.0  # market vol multiplier in the volatile regime
    jumps_per_year: float = 3.0  # idiosyncratic price jumps per asset per year

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"simulated.seed must be >= 0, got {self.seed}")
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ConfigError(f"simulated.symbols must be a non-empty list without duplicates, "
                              f"got {self.symbols}")
        for symbol in self.symbols:
            split_symbol(symbol)
            if is_perpetual(symbol) or not symbol.endswith(f"/{QUOTE}") or base_of(symbol) in STABLECOINS:
                raise ConfigError(f"simulated.symbols: {symbol!r} must be a non-stablecoin spot "
                                  f"BASE/{QUOTE} symbol")
        if self.genesis_ms < 0 or self.genesis_ms % (24 * MS_PER_HOUR):
            raise ConfigError(f"simulated.genesis_ms must be a UTC midnight in epoch ms, "
                              f"got {self.genesis_ms}")
        if not 0 < self.market_vol_frac <= 3:
            raise ConfigError(f"simulated.market_vol_frac must be in (0, 3], got {self.market_vol_frac}")
        if not 1 <= self.volatile_regime_mult <= 5:
            raise ConfigError(f"simulated.volatile_regime_mult must be in [1, 5], "
                              f"got {self.volatile_regime_mult}")
        if not 0 <= self.jumps_per_year <= 100:
            raise ConfigError(f"simulated.jumps_per_year must be in [0, 100], got {self.jumps_per_year}")

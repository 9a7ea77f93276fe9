"""Pure: the ``[data]`` section: what fetch_prices keeps under data/ and how strictly it checks it (composed into
the one config loader, lib.ops.config, like every section of a pure module)."""

from __future__ import annotations

from dataclasses import dataclass

from lib.core.errors import ConfigError
from lib.core.symbols import split_symbol
from lib.core.timeframes import parse_time_ms, timeframe_ms

DEFAULT_SYMBOLS = (
    "BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "TRX/USDT",
    "DOT/USDT", "LINK/USDT", "POL/USDT", "LTC/USDT", "BCH/USDT", "AVAX/USDT", "ATOM/USDT", "ETC/USDT",
    "XLM/USDT", "UNI/USDT", "NEAR/USDT", "FIL/USDT", "AAVE/USDT", "ALGO/USDT", "EOS/USDT",
)  # fmt: skip
"""Reviewed 2026-12: MATIC/USDT became POL/USDT on Binance (2024-09) and XMR/USDT was delisted (2024-02)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSection:
    """What fetch_prices keeps under data/ and how strictly it checks it."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    timeframes: tuple[str, ...] = ("1d", "1h")
    backfill_start: str = "2024-01-01"  # ISO date (UTC) of the first candle of a first run
    fetch_limit: int = 1000  # candles per request (the exchange may cap it lower)
    max_jump_frac: float = 0.5  # |close/prev_close - 1| beyond this is re-fetched once, then kept but reported
    max_funding_abs_rate: float = 0.05
    fetch_funding: bool = True  # for swap markets only
    max_staleness_bars: int = 2  # compute_signals refuses data whose last closed candle is older than this
    jump_confirm_bars: int = 2  # a kept price jump is quarantined until this many later candles decide it

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ConfigError("data.symbols must not be empty")
        for symbol in self.symbols:
            try:
                split_symbol(symbol)
            except ConfigError as error:
                raise ConfigError(f"data.symbols: {error}") from None
        if len(set(self.symbols)) != len(self.symbols):
            raise ConfigError("data.symbols has duplicates")
        if not self.timeframes:
            raise ConfigError("data.timeframes must not be empty")
        for timeframe in self.timeframes:
            try:
                timeframe_ms(timeframe)
            except ConfigError as error:
                raise ConfigError(f"data.timeframes: {error}") from None
        to_backfill_start_ms(self.backfill_start)
        if not 1 <= self.fetch_limit <= 5000:
            raise ConfigError(f"data.fetch_limit must be in [1, 5000], got {self.fetch_limit}")
        if not 0 < self.max_jump_frac <= 10:
            raise ConfigError(f"data.max_jump_frac must be in (0, 10], got {self.max_jump_frac}")
        if not 0 < self.max_funding_abs_rate <= 1:
            raise ConfigError(f"data.max_funding_abs_rate must be in (0, 1], got {self.max_funding_abs_rate}")
        if not 1 <= self.jump_confirm_bars <= 100:
            raise ConfigError(f"data.jump_confirm_bars must be in [1, 100], got {self.jump_confirm_bars}")
        if not 1 <= self.max_staleness_bars <= 1000:
            raise ConfigError(f"data.max_staleness_bars must be in [1, 1000], got {self.max_staleness_bars}")
        if self.jump_confirm_bars > self.max_staleness_bars:  # a pending jump cuts its series: it lags up to confirm
            raise ConfigError(
                f"data.jump_confirm_bars ({self.jump_confirm_bars}) must not exceed data.max_staleness_bars "
                f"({self.max_staleness_bars}): a benchmark cut before a pending price jump would turn stale before "
                "the later candles can confirm it, stopping every run until a person decides (scripts.confirm_jump)"
            )

    @property
    def backfill_start_ms(self) -> int:
        return to_backfill_start_ms(self.backfill_start)


def to_backfill_start_ms(iso_date: str) -> int:
    return parse_time_ms(iso_date, what="data.backfill_start")

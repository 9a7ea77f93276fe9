"""Pure: the ``[exchange]`` section: where prices come from and orders go, and in which mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lib.core.errors import ConfigError

Mode = Literal["paper", "testnet", "live"]
MarketType = Literal["spot", "swap"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeSection:
    """Where prices come from and orders go. ``id`` is any ccxt exchange id, or "simulated"."""

    id: str = "simulated"
    market_type: MarketType = "spot"
    mode: Mode = "paper"
    live_confirmed: bool = False
    rest_base_url: str = ""  # replaces scheme+host of every ccxt API URL; in testnet: loopback/sandbox hosts only
    timeout_ms: int = 10_000
    enable_rate_limit: bool = True
    retry_base_delay_ms: int = 500  # first backoff of a failed read; doubles per retry (tests set it near 0)

    def __post_init__(self) -> None:
        if not self.id or not self.id.replace("_", "").isalnum():
            raise ConfigError(f"exchange.id must be a ccxt exchange id or 'simulated', got {self.id!r}")
        if self.rest_base_url and not self.rest_base_url.startswith(("http://", "https://")):
            raise ConfigError(f"exchange.rest_base_url must start with http:// or https://, got {self.rest_base_url!r}")
        if not 100 <= self.timeout_ms <= 120_000:
            raise ConfigError(f"exchange.timeout_ms must be in [100, 120000], got {self.timeout_ms}")
        if not 0 <= self.retry_base_delay_ms <= 60_000:
            raise ConfigError(f"exchange.retry_base_delay_ms must be in [0, 60000], got {self.retry_base_delay_ms}")
        if self.id == "simulated" and self.mode != "paper":
            raise ConfigError("exchange.mode must be 'paper' with the simulated exchange")

"""Pure: the one converter between ccxt unified symbols and file slugs.

``"BTC/USDT"`` (spot) and ``"BTC/USDT:USDT"`` (linear perpetual) are what code passes around; the
file slug ``"BTC-USDT"`` is only for paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lib.core.errors import ConfigError

STABLECOINS = frozenset(
    {"USDT", "USDC", "BUSD", "DAI", "TUSD", "USDP", "FDUSD", "PYUSD", "USDD", "GUSD", "EUR", "USD", "EURT"}
)
"""Assets that never enter the trading universe (they are cash, not exposure)."""

_SYMBOL = re.compile(r"^(?P<base>[A-Z0-9]{1,20})/(?P<quote>[A-Z0-9]{1,20})(?::(?P<settle>[A-Z0-9]{1,20}))?$")
_SLUG = re.compile(r"^(?P<base>[A-Z0-9]{1,20})-(?P<quote>[A-Z0-9]{1,20})$")


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"BTC/USDT:USDT" -> ("BTC", "USDT")``.

    Raises:
        ConfigError: for anything that is not a ccxt unified spot or linear-perp symbol.
    """
    match = _SYMBOL.match(symbol)
    if match is None:
        raise ConfigError(f"invalid symbol {symbol!r} (expected BASE/QUOTE or BASE/QUOTE:SETTLE)")
    return match["base"], match["quote"]


def base_of(symbol: str) -> str:
    return split_symbol(symbol)[0]


def quote_of(symbol: str) -> str:
    return split_symbol(symbol)[1]


def is_perpetual(symbol: str) -> bool:
    """True for ``BASE/QUOTE:SETTLE`` (ccxt's unified swap notation)."""
    split_symbol(symbol)
    return ":" in symbol


def to_slug(symbol: str) -> str:
    """``"BTC/USDT"`` and ``"BTC/USDT:USDT"`` both map to ``"BTC-USDT"``."""
    base, quote = split_symbol(symbol)
    return f"{base}-{quote}"


def from_slug(slug: str, *, perpetual: bool = False) -> str:
    """Inverse of :func:`to_slug`; ``perpetual=True`` gives ``BASE/QUOTE:QUOTE``."""
    match = _SLUG.match(slug)
    if match is None:
        raise ConfigError(f"invalid symbol file slug {slug!r} (expected BASE-QUOTE)")
    spot = f"{match['base']}/{match['quote']}"
    return f"{spot}:{match['quote']}" if perpetual else spot


def to_perpetual(symbol: str) -> str:
    """``"BTC/USDT" -> "BTC/USDT:USDT"`` (linear perpetual settled in the quote)."""
    base, quote = split_symbol(symbol)
    return f"{base}/{quote}:{quote}"


def to_spot(symbol: str) -> str:
    base, quote = split_symbol(symbol)
    return f"{base}/{quote}"


def is_stablecoin(symbol: str) -> bool:
    return base_of(symbol) in STABLECOINS


def to_traded_symbols(configured: Iterable[str], *, market_type: str) -> list[str]:
    """Config names spot pairs; on a swap venue each names the linear perpetual of the pair."""
    return [to_perpetual(symbol) if market_type == "swap" else symbol for symbol in configured]

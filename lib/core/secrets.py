"""Pure: the credentials record that ``lib.ops.config.load_secrets`` reads from .env; its repr never shows a
value. In core because the ccxt client (execution) and the alerts (ops) both take it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Secrets:
    """Values from .env (or the process environment). repr never shows them."""

    exchange_api_key: str = ""
    exchange_api_secret: str = ""
    exchange_api_password: str = ""
    telegram_bot_token: str = ""
    telegram_chat_id: str = ""

    def __repr__(self) -> str:
        return "Secrets(***)"

    __str__ = __repr__

    def values(self) -> list[str]:
        """Every non-empty credential (for log/alert redaction). The chat id is an address, not a credential."""
        credentials = (self.exchange_api_key, self.exchange_api_secret, self.exchange_api_password,
                       self.telegram_bot_token)
        return [value for value in credentials if value]

    def redact(self, text: str) -> str:
        """``text`` with every credential replaced by ***. Redact before cutting a text: a cut through a secret
        leaves a head that no later redaction finds."""
        return redact_values(text, self.values())

    @property
    def has_exchange_keys(self) -> bool:
        return bool(self.exchange_api_key and self.exchange_api_secret)

    @property
    def has_telegram(self) -> bool:
        return bool(self.telegram_bot_token and self.telegram_chat_id)


def redact_values(text: str, values: Iterable[str]) -> str:
    """``text`` with each non-empty value replaced by *** (longest first: a secret containing another goes whole)."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


SECRET_ENV_NAMES = {
    "exchange_api_key": "COINBOT_EXCHANGE_API_KEY",
    "exchange_api_secret": "COINBOT_EXCHANGE_API_SECRET",
    "exchange_api_password": "COINBOT_EXCHANGE_API_PASSWORD",
    "telegram_bot_token": "COINBOT_TELEGRAM_BOT_TOKEN",
    "telegram_chat_id": "COINBOT_TELEGRAM_CHAT_ID",
}


def unknown_secret_names(names: Iterable[str]) -> list[str]:
    """The COINBOT* names among ``names`` (a .env file's) that are no secret: a misspelt token would otherwise be
    ignored silently (and config overrides are read from the process environment only)."""
    return sorted(name for name in names if name.startswith("COINBOT") and name not in SECRET_ENV_NAMES.values())

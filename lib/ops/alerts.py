"""Edge: talks to the Telegram Bot API. The one alert path: `send(text, image=...)`.

An alert that cannot be delivered is logged and reported as False; it never raises, so it can never
crash a script or mask the script's real exit code. Without Telegram settings alerts go to the log only.
``requests`` is imported when an alert is posted: scripts that only may alert (every script, through
lib.ops.runner) do not load it (tests/unit/test_script_imports.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from loguru import logger

from lib.core.retry import call_with_retry
from lib.ops.config import AlertsSection, Secrets

if TYPE_CHECKING:
    import requests

MESSAGE_LIMIT = 4096  # Telegram's maximum text length
CAPTION_LIMIT = 1024  # Telegram's maximum photo caption length
DELIVERY_ATTEMPTS = 3
MAX_RETRY_AFTER_S = 30.0
"""A longer flood wait is not waited out: the alert is logged as undelivered (a failing run must not sit on its lock
and its exit code for 2 x 300 s, the exchange's bound)."""


class TelegramRetryable(Exception):
    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def redactor(secrets: Secrets) -> Callable[[str], str]:
    """A function that replaces every secret value in a text by ***."""
    return secrets.redact


def send(
    text: str,
    *,
    section: AlertsSection,
    secrets: Secrets,
    image: bytes | None = None,
    sleep: Callable[[float], None] | None = None,
    incident: bool = True,
) -> bool:
    """Send ``text`` (and ``image`` as a PNG photo) to the configured chat; True when delivered.

    Without Telegram settings the text goes to the log: a WARNING for an incident, INFO for a routine
    message (the daily report), so a normal day does not look like an incident."""
    redact = redactor(secrets)
    safe_text = redact(text)
    if not secrets.has_telegram:
        if incident:
            logger.warning("alert (Telegram not configured, log only): {}", safe_text)
        else:
            logger.info("(Telegram not configured, log only):\n{}", safe_text)
        return False
    base = f"{section.telegram_base_url.rstrip('/')}/bot{secrets.telegram_bot_token}"
    timeout_s = section.timeout_ms / 1000
    try:
        if image is not None:
            caption = _cut_at_line(safe_text, CAPTION_LIMIT)
            _post(base + "/sendPhoto", timeout_s, sleep, data={"chat_id": secrets.telegram_chat_id, "caption": caption},
                  files={"photo": ("chart.png", image, "image/png")})
        if image is None or len(safe_text) > CAPTION_LIMIT:  # the whole text, in as many messages as it needs
            for part in _split_at_lines(safe_text, MESSAGE_LIMIT):
                _post(base + "/sendMessage", timeout_s, sleep, json={"chat_id": secrets.telegram_chat_id, "text": part})
    except Exception as error:  # never let an alert failure escape
        logger.error("alert could not be delivered: {}", redact(f"{type(error).__name__}: {error}"))
        return False
    return True


def _cut_at_line(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at the last line break when the text is longer."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    return head[: head.rfind("\n")] if "\n" in head else head


def _split_at_lines(text: str, limit: int) -> list[str]:
    """``text`` in parts of at most ``limit`` characters, each cut at a line break when there is one (the break
    itself dropped), so no part of a long report is lost."""
    parts = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        parts.append(text[:cut] if cut > 0 else text[:limit])
        text = text[cut + 1:] if cut > 0 else text[limit:]
    return [*parts, text]


def _post(url: str, timeout_s: float, sleep: Callable[[float], None] | None, **payload: object) -> None:
    import requests  # here: ~60 ms of imports a script pays only when it posts

    def attempt() -> None:
        try:
            response = requests.post(url, timeout=timeout_s, **payload)  # type: ignore[arg-type]
        except requests.RequestException as error:
            # the URL holds the bot token: report the exception class only
            raise TelegramRetryable(f"network error {type(error).__name__}", None) from None
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = _retry_after(response)
            raise TelegramRetryable(f"HTTP {response.status_code}", retry_after)
        if response.status_code != 200:
            raise RuntimeError(f"Telegram answered HTTP {response.status_code}: {response.text[:200]}")

    options = {"sleep": sleep} if sleep is not None else {}
    call_with_retry(
        attempt,
        what="telegram",
        is_transient=lambda error: isinstance(error, TelegramRetryable),
        retry_after_s=lambda error: getattr(error, "retry_after_s", None),
        attempts=DELIVERY_ATTEMPTS,
        redact=lambda text: text,  # TelegramRetryable texts are built without the URL (its token): nothing to hide
        max_delay_s=10.0,
        max_retry_after_s=MAX_RETRY_AFTER_S,
        **options,  # type: ignore[arg-type]
    )


def _retry_after(response: requests.Response) -> float | None:
    try:
        body = response.json()
        return float(body["parameters"]["retry_after"])
    except (ValueError, KeyError, TypeError):
        header = response.headers.get("Retry-After")
        try:
            return float(header) if header else None
        except ValueError:
            return None

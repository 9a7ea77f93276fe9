"""lib.ops.alerts.send against the fake Bot API (tests/fakes/telegram_server.py): with ``requests`` imported only
when posting, a message and a photo are still delivered, retried after a 429, and a refusal is reported as False."""

from __future__ import annotations

from lib.core.secrets import Secrets
from lib.ops import alerts
from lib.ops.config import AlertsSection
from tests.fakes.telegram_server import FakeTelegram

SECRETS = Secrets(telegram_bot_token="123:TOKEN", telegram_chat_id="42")


def test_a_message_and_a_photo_are_delivered_and_a_429_is_retried() -> None:
    with FakeTelegram() as telegram:
        section = AlertsSection(telegram_base_url=telegram.base_url, timeout_ms=2_000)
        telegram.fail_next(429, retry_after_s=0)
        assert alerts.send("halted: drawdown", section=section, secrets=SECRETS, sleep=lambda _: None)
        assert alerts.send("daily report", section=section, secrets=SECRETS, image=b"\x89PNG", incident=False)
        assert telegram.texts == ["halted: drawdown", "daily report"]
        assert len(telegram.photos) == 1


def test_an_undeliverable_alert_is_false_and_never_raises() -> None:
    with FakeTelegram(valid_tokens={"other"}) as telegram:  # our token answers 401
        section = AlertsSection(telegram_base_url=telegram.base_url, timeout_ms=2_000)
        assert alerts.send("halted", section=section, secrets=SECRETS, sleep=lambda _: None) is False


def test_a_long_flood_wait_is_not_waited_out_an_alert_never_holds_a_run_for_minutes() -> None:
    with FakeTelegram() as telegram:
        section = AlertsSection(telegram_base_url=telegram.base_url, timeout_ms=2_000)
        telegram.fail_next(429, retry_after_s=120, times=None)
        slept: list[float] = []
        assert alerts.send("halted", section=section, secrets=SECRETS, sleep=slept.append) is False
        assert sum(slept) <= alerts.MAX_RETRY_AFTER_S < 120
    with FakeTelegram() as telegram:  # a short one is still waited out and delivered
        telegram.fail_next(429, retry_after_s=5, times=1)
        section = AlertsSection(telegram_base_url=telegram.base_url, timeout_ms=2_000)
        assert alerts.send("halted", section=section, secrets=SECRETS, sleep=slept.append)
        assert slept[-1] == 5 and telegram.texts == ["halted"]


def test_a_text_over_telegrams_limit_arrives_whole_in_several_messages_cut_at_line_breaks() -> None:
    lines = [f"BTC/USDT 1h stale: last candle {i} bars ago, run fetch_prices and look at the exchange"
             for i in range(150)]
    text = "\n".join(lines)  # ~12,500 characters: one message would lose the end (where the health table is)
    with FakeTelegram() as telegram:
        section = AlertsSection(telegram_base_url=telegram.base_url, timeout_ms=2_000)
        assert alerts.send(text, section=section, secrets=SECRETS, image=b"\x89PNG")
        caption, *parts = telegram.texts
        assert caption == text[: text.rfind("\n", 0, alerts.CAPTION_LIMIT)]
        assert len(parts) == 4 and all(len(part) <= alerts.MESSAGE_LIMIT for part in parts)
        assert "\n".join(parts) == text  # nothing lost, every message ends at a line's end
        assert all(part.endswith("look at the exchange") for part in parts)

"""lib.core.retry: backoff, Retry-After, bans and the run-wide circuit breaker, with the injectable sleep and clock
(hand-computed delays)."""

from __future__ import annotations

import pytest

from lib.core.retry import ERROR_TEXT_CHARS, CircuitBreaker, CircuitOpenError, backoff_delay_s, call_with_retry


class Transient(Exception):
    def __init__(self, retry_after_s: float | None = None, ban: bool = False) -> None:
        super().__init__("transient")
        self.retry_after_s, self.ban = retry_after_s, ban


class Flaky:
    """Raises the given errors in turn, then returns "ok"; counts calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def run(action: Flaky, sleeps: list[float], breaker: CircuitBreaker | None = None, attempts: int = 5) -> str:
    return call_with_retry(action, what="t", is_transient=lambda e: isinstance(e, Transient),
                           retry_after_s=lambda e: getattr(e, "retry_after_s", None),
                           is_ban=lambda e: getattr(e, "ban", False), attempts=attempts, base_delay_s=0.5,
                           max_delay_s=30.0, max_retry_after_s=300.0, breaker=breaker, sleep=sleeps.append)


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_delay_s(n, base_delay_s=0.5, max_delay_s=30.0) for n in (1, 2, 3, 4, 8)] == [0.5, 1, 2, 4, 30]


def test_transient_errors_are_retried_with_exponential_backoff() -> None:
    sleeps: list[float] = []
    action = Flaky(Transient(), Transient(), Transient())
    assert run(action, sleeps) == "ok" and action.calls == 4 and sleeps == [0.5, 1.0, 2.0]


def test_the_last_error_is_raised_after_all_attempts() -> None:
    sleeps: list[float] = []
    action = Flaky(*[Transient() for _ in range(9)])
    with pytest.raises(Transient):
        run(action, sleeps)
    assert action.calls == 5 and sleeps == [0.5, 1.0, 2.0, 4.0]


def test_a_permanent_error_is_raised_at_once() -> None:
    sleeps: list[float] = []
    action = Flaky(KeyError("x"))
    with pytest.raises(KeyError):
        run(action, sleeps)
    assert action.calls == 1 and sleeps == []


@pytest.mark.parametrize(("retry_after_s", "expected_sleep"), [
    (7.0, 7.0),      # longer than the backoff: the server's wish
    (0.1, 0.5),      # shorter: the backoff
    (45.0, 45.0),    # beyond the 30 s backoff cap: still honoured
    (300.0, 300.0),  # at the bound
])
def test_retry_after_is_honoured(retry_after_s: float, expected_sleep: float) -> None:
    sleeps: list[float] = []
    assert run(Flaky(Transient(retry_after_s)), sleeps) == "ok" and sleeps == [expected_sleep]


def test_a_retry_after_beyond_the_bound_blocks_the_run() -> None:
    now = [1000.0]
    breaker = CircuitBreaker(clock=lambda: now[0])
    sleeps: list[float] = []
    action = Flaky(Transient(retry_after_s=3600.0))
    with pytest.raises(CircuitOpenError, match="3600 s"):
        run(action, sleeps, breaker)
    assert action.calls == 1 and sleeps == []
    other = Flaky()
    with pytest.raises(CircuitOpenError, match="not sent"):
        run(other, sleeps, breaker)
    assert other.calls == 0  # nothing is sent while blocked
    now[0] += 3601.0
    assert run(other, sleeps, breaker) == "ok"


def test_a_short_ban_is_waited_out_in_full_then_retried() -> None:
    sleeps: list[float] = []
    action = Flaky(Transient(retry_after_s=20.0, ban=True))
    assert run(action, sleeps) == "ok" and action.calls == 2 and sleeps == [20.0]  # not the 0.5 s backoff


def test_a_ban_without_retry_after_blocks_the_run() -> None:
    now = [0.0]
    breaker = CircuitBreaker(clock=lambda: now[0])
    sleeps: list[float] = []
    with pytest.raises(CircuitOpenError, match="300 s"):
        run(Flaky(Transient(ban=True)), sleeps, breaker)
    now[0] = 299.0
    blocked = Flaky()
    with pytest.raises(CircuitOpenError):
        run(blocked, sleeps, breaker)
    assert blocked.calls == 0
    now[0] = 300.5
    assert run(Flaky(), sleeps, breaker) == "ok" and sleeps == []


def test_an_outage_opens_the_breaker_and_a_success_closes_it() -> None:
    breaker = CircuitBreaker(open_after=2)
    sleeps: list[float] = []
    calls = []
    for _ in range(4):
        action = Flaky(*[Transient() for _ in range(9)])
        with pytest.raises(Transient):
            run(action, sleeps, breaker)
        calls.append(action.calls)
    assert calls == [5, 5, 1, 1] and breaker.is_open  # after two exhausted calls: one probe each
    assert run(Flaky(), sleeps, breaker) == "ok" and not breaker.is_open
    recovered = Flaky(Transient(), Transient())
    assert run(recovered, sleeps, breaker) == "ok" and recovered.calls == 3  # full retries again


SECRET = "k3y-0f-s1xteen-c"  # 16 characters, as a credential would sit in an error's text


def logged_messages(action: Flaky, *, redact: object, ban: bool = False) -> list[str]:
    from loguru import logger
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(message.record["message"]), level="WARNING")
    try:
        with pytest.raises((Transient, CircuitOpenError)):
            call_with_retry(action, what="t", is_transient=lambda e: isinstance(e, Transient),
                            retry_after_s=lambda e: None, is_ban=lambda e: ban, attempts=2, base_delay_s=0.5,
                            breaker=CircuitBreaker(), sleep=lambda s: None, redact=redact)  # type: ignore[arg-type]
    finally:
        logger.remove(sink)
    return messages


class Wordy(Transient):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def __str__(self) -> str:
        return self.text


@pytest.mark.parametrize("ban", [False, True])
@pytest.mark.parametrize("cut", range(1, len(SECRET)))
def test_a_secret_where_the_log_line_cuts_the_error_leaks_no_part_of_it(cut: int, ban: bool) -> None:
    filler = "x" * (ERROR_TEXT_CHARS - cut)  # the 200-character cut falls `cut` characters into the secret
    error = Wordy(filler + SECRET + " and the rest")
    messages = logged_messages(Flaky(error, error), redact=lambda text: text.replace(SECRET, "***"), ban=ban)
    assert messages  # the retry (or the ban) was logged
    for message in messages:
        after_filler = message.split(filler, 1)[1]
        assert after_filler.startswith("*"), after_filler  # redacted first, then cut: never the secret's head
        assert not any(SECRET[:n] in message for n in range(2, len(SECRET) + 1)) and SECRET[0] not in after_filler


def test_without_a_redaction_a_log_line_names_only_the_error_class() -> None:
    error = Wordy("binance " + SECRET)
    messages = logged_messages(Flaky(error, error), redact=None)
    assert messages == ["t failed (Wordy); retry 1/1 in 0.5s"]

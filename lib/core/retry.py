"""Edge: sleeps. The one retry policy: bounded attempts, exponential backoff, honouring a server's Retry-After,
and a run-wide circuit breaker so an outage or a ban does not make every call burn all its attempts.

Callers say which exceptions are transient and, optionally, how long the server asked to wait and whether
the error is a ban (e.g. Binance's HTTP 418, which every further request extends).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from loguru import logger

T = TypeVar("T")

MAX_ATTEMPTS = 5
BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0
MAX_RETRY_AFTER_S = 300.0
"""A server's Retry-After is honoured in full up to this; a longer one (or a ban) stops the run's requests."""
BAN_WITHOUT_RETRY_AFTER_S = 300.0
"""How long a ban that names no Retry-After blocks the run's requests."""
ERROR_TEXT_CHARS = 200
"""A logged error's text is cut to this many characters, after redaction."""
OPEN_AFTER_FAILED_CALLS = 2
"""Calls in a row that used up all their attempts before the breaker opens (later calls: one attempt each)."""


class CircuitOpenError(Exception):
    """The run stopped sending requests: the server banned us, or asked for a wait longer than a run should."""


@dataclass(slots=True)
class CircuitBreaker:
    """Run-wide state of the retry policy (one per client/run).

    - After ``open_after`` calls in a row that exhausted their attempts (an outage), every later call gets a
      single attempt (a probe) until one succeeds: an outage costs a few requests, not attempts x series.
    - A ban without a usable Retry-After (or a Retry-After beyond ``MAX_RETRY_AFTER_S``) blocks every call until
      it ends: no request at all.
    """

    open_after: int = OPEN_AFTER_FAILED_CALLS
    failed_calls: int = 0
    blocked_until_s: float = 0.0
    clock: Callable[[], float] = field(default=time.monotonic)

    @property
    def is_open(self) -> bool:
        return self.failed_calls >= self.open_after

    def check(self, what: str) -> None:
        """Raises CircuitOpenError while a ban blocks requests."""
        remaining = self.blocked_until_s - self.clock()
        if remaining > 0:
            raise CircuitOpenError(f"{what}: not sent, the exchange asked for no requests for another "
                                   f"{remaining:.0f} s (ban or long Retry-After)")

    def block_for(self, seconds: float) -> None:
        self.blocked_until_s = max(self.blocked_until_s, self.clock() + seconds)


def backoff_delay_s(attempt: int, *, base_delay_s: float = BASE_DELAY_S, max_delay_s: float = MAX_DELAY_S) -> float:
    """Delay before retry number ``attempt`` (1-based): base * 2^(attempt-1), capped."""
    return min(max_delay_s, base_delay_s * 2 ** (attempt - 1))


def error_text(error: BaseException, redact: Callable[[str], str] | None) -> str:
    """What a retry log line says of ``error``: its text redacted, then cut (a cut first could leave the head of a
    secret that the log's own redaction no longer recognises). Without a ``redact``, only the exception class:
    the text of an error may hold a credential (fail closed)."""
    if redact is None:
        return type(error).__name__
    return f"{type(error).__name__}: {redact(str(error))[:ERROR_TEXT_CHARS]}"


def call_with_retry(
    action: Callable[[], T],
    *,
    what: str,
    is_transient: Callable[[BaseException], bool],
    retry_after_s: Callable[[BaseException], float | None] = lambda error: None,
    is_ban: Callable[[BaseException], bool] = lambda error: False,
    attempts: int = MAX_ATTEMPTS,
    base_delay_s: float = BASE_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
    max_retry_after_s: float = MAX_RETRY_AFTER_S,
    breaker: CircuitBreaker | None = None,
    sleep: Callable[[float], None] = time.sleep,
    redact: Callable[[str], str] | None = None,
) -> T:
    """Run ``action``; on a transient error wait and try again, at most ``attempts`` times in all.

    The wait is the exponential backoff, or the server's Retry-After when longer (not capped by
    ``max_delay_s``). A ban is waited out in full when it names a Retry-After within ``max_retry_after_s``;
    a ban without one, or any Retry-After beyond ``max_retry_after_s``, blocks the ``breaker`` and raises
    CircuitOpenError at once; so does any call while the breaker is blocked. While the breaker is open after
    an outage, a call gets one attempt. The last transient error is re-raised unchanged; a non-transient
    one is raised at once. A log line shows an error's text only through ``redact`` (see ``error_text``).
    """
    if breaker is not None:
        breaker.check(what)
        if breaker.is_open:
            attempts = 1
    for attempt in range(1, attempts + 1):
        try:
            result = action()
        except Exception as error:
            if not is_transient(error):
                raise
            requested = retry_after_s(error)
            too_long = requested is not None and requested > max_retry_after_s
            if is_ban(error) or too_long:
                wait_s = requested if requested is not None else BAN_WITHOUT_RETRY_AFTER_S
                if breaker is not None:
                    breaker.block_for(wait_s)
                if requested is None or too_long or attempt == attempts:
                    logger.error("{}: the exchange asks for no requests for {:.0f} s ({}); this run sends none",
                                 what, wait_s, error_text(error, redact))
                    raise CircuitOpenError(f"{what}: the exchange asks for no requests for {wait_s:.0f} s "
                                           f"({type(error).__name__}); nothing more is sent in this run") from error
                logger.warning("{}: banned for {:.0f} s ({}); waiting it out before the next request", what,
                               wait_s, type(error).__name__)
                sleep(wait_s)  # a short ban: no request at all until it is over, then try again
                continue
            if attempt == attempts:
                if breaker is not None:
                    breaker.failed_calls += 1
                raise
            delay = backoff_delay_s(attempt, base_delay_s=base_delay_s, max_delay_s=max_delay_s)
            if requested is not None:
                delay = max(delay, requested)
            logger.warning(
                "{} failed ({}); retry {}/{} in {:.1f}s",
                what, error_text(error, redact), attempt, attempts - 1, delay,
            )
            sleep(delay)
        else:
            if breaker is not None:
                breaker.failed_calls = 0
            return result
    raise AssertionError("unreachable")

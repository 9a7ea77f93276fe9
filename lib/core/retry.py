"""Edge: sleeps. The one retry policy: bounded attempts, exponential backoff, honouring a server's Retry-After.

Callers say which exceptions are transient and, optionally, how long the server asked to wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from loguru import logger

T = TypeVar("T")

MAX_ATTEMPTS = 5
BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0


def backoff_delay_s(attempt: int, *, base_delay_s: float = BASE_DELAY_S, max_delay_s: float = MAX_DELAY_S) -> float:
    """Delay before retry number ``attempt`` (1-based): base * 2^(attempt-1), capped."""
    return min(max_delay_s, base_delay_s * 2 ** (attempt - 1))


def call_with_retry(
    action: Callable[[], T],
    *,
    what: str,
    is_transient: Callable[[BaseException], bool],
    retry_after_s: Callable[[BaseException], float | None] = lambda error: None,
    attempts: int = MAX_ATTEMPTS,
    base_delay_s: float = BASE_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action``; on a transient error wait and try again, at most ``attempts`` times in all.

    The last transient error is re-raised unchanged; a non-transient one is raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:
            if not is_transient(error) or attempt == attempts:
                raise
            requested = retry_after_s(error)
            delay = backoff_delay_s(attempt, base_delay_s=base_delay_s, max_delay_s=max_delay_s)
            if requested is not None:
                delay = min(max(delay, requested), max_delay_s)
            logger.warning(
                "{} failed ({}: {}); retry {}/{} in {:.1f}s",
                what, type(error).__name__, str(error)[:200], attempt, attempts - 1, delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")

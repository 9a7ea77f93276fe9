"""Pure: the domain error hierarchy and the exit codes scripts return.

Errors are classified by what the operator must do, not by where they happened. ccxt exceptions
are translated into these only inside lib/execution/ccxt_client.py (``call``).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3  # another run of the same script holds the lock: not a failure, nothing done
EXIT_HALTED = 4  # trading halted (kill switch / drawdown halt): nothing sent
EXIT_PARTIAL = 5  # some symbols failed, the rest were done: run_pipeline goes on with the healthy ones


class CoinbotError(Exception):
    """Base of every error the scripts know how to report."""

    exit_code = EXIT_FAILURE


class ConfigError(CoinbotError):
    """Fix the config (or .env); nothing was touched."""

    exit_code = EXIT_CONFIG


class DataError(CoinbotError):
    """Stale, invalid or missing prices: refuse to act on them."""


class StateError(CoinbotError):
    """An unreadable or invalid state file: never silently replaced."""


class ExchangeUnavailable(CoinbotError):
    """Network failure or rate limit that persisted through the retries."""


class ExchangeError(CoinbotError):
    """The exchange answered with an error that retrying will not fix (auth, bad symbol, ...)."""


class OrderRejected(CoinbotError):
    """The exchange refused an order (journaled)."""


class RiskCheckFailed(CoinbotError):
    """A risk limit would be breached (journaled); nothing was sent."""


class TradingHalted(CoinbotError):
    """The kill switch or a drawdown halt is in force; a person must clear it."""

    exit_code = EXIT_HALTED


class PartialFailure(CoinbotError):
    """Some symbols failed and the others were done; the script alerted once per NEW failure itself.

    Why a distinct exit code: one dead symbol must not stop the daily chain (exits included), so
    run_pipeline goes on after EXIT_PARTIAL; the runner records status "partial" and does not alert again.
    """

    exit_code = EXIT_PARTIAL
    alert = False


class IndicatorError(DataError):
    """pandas-ta could not compute an indicator (usually: history shorter than its length)."""

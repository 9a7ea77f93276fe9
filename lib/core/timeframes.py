"""Pure: timeframe arithmetic on epoch milliseconds (UTC) and the calendar facts of a 365-day market."""

from __future__ import annotations

from datetime import UTC, datetime

from lib.core.errors import ConfigError

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60 * MS_PER_SECOND
MS_PER_HOUR = 60 * MS_PER_MINUTE
MS_PER_DAY = 24 * MS_PER_HOUR
DAYS_PER_YEAR = 365  # crypto trades every day: annualize on a 365-day calendar

_UNIT_MS = {"m": MS_PER_MINUTE, "h": MS_PER_HOUR, "d": MS_PER_DAY}
# No weeks: the epoch was a Thursday but exchanges open weekly candles on Monday, so an epoch-aligned
# weekly grid would be wrong. No months: they have no fixed length.


def timeframe_ms(timeframe: str) -> int:
    """Length of one candle in ms, e.g. ``timeframe_ms("1h") == 3_600_000``.

    Raises:
        ConfigError: for a timeframe that is not ``<n><m|h|d>``.
    """
    if len(timeframe) < 2 or timeframe[-1] not in _UNIT_MS or not timeframe[:-1].isdigit():
        raise ConfigError(f"unsupported timeframe {timeframe!r} (expected e.g. 1m, 15m, 1h, 4h, 1d)")
    count = int(timeframe[:-1])
    if count <= 0:
        raise ConfigError(f"unsupported timeframe {timeframe!r}: count must be positive")
    return count * _UNIT_MS[timeframe[-1]]


def floor_ms(time_ms: int, timeframe: str) -> int:
    """Open time of the candle that contains ``time_ms`` (candles are aligned to the epoch)."""
    step = timeframe_ms(timeframe)
    return time_ms - time_ms % step


def last_closed_open_ms(now_ms: int, timeframe: str) -> int:
    """Open time of the most recent candle that has fully closed at ``now_ms``.

    >>> last_closed_open_ms(7_200_000 + 5, "1h")  # 02:00:00.005 -> the 01:00 candle
    3600000
    """
    return floor_ms(now_ms, timeframe) - timeframe_ms(timeframe)


def is_on_grid(time_ms: int, timeframe: str) -> bool:
    return time_ms % timeframe_ms(timeframe) == 0


def periods_per_year(timeframe: str) -> float:
    """Number of candles in a 365-day year: ``periods_per_year("1d") == 365``, ``("4h") == 2190``."""
    return DAYS_PER_YEAR * MS_PER_DAY / timeframe_ms(timeframe)


def format_ms(time_ms: int, *, seconds: bool = False) -> str:
    """Epoch ms -> ISO UTC: ``1577836800000 -> "2020-01-01T00:00Z"`` (``seconds``: ``"2020-01-01T00:00:00Z"``).

    The one ms -> ISO formatter (messages, file names, equity.csv); garbage times are shown as raw ms.
    """
    try:
        moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return f"{time_ms}ms"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ" if seconds else "%Y-%m-%dT%H:%MZ")


def parse_time_ms(text: str, *, what: str) -> int:
    """Epoch ms from ``"1767225600000"`` or an ISO date/time (UTC when it names no zone).

    Raises:
        ConfigError: naming ``what`` (e.g. "--as-of", "data.backfill_start").
    """
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what} must be an ISO date/time (UTC) or epoch ms, got {text!r}") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)

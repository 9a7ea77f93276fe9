"""Pure: the one rule for append-only line files (state/orders.jsonl, runs.jsonl, equity.csv).

A line is complete once its newline is written. Whatever follows the last newline is the torn tail of an
interrupted append: it is never read as data, except a complete JSON object that only lost its newline,
which a JSONL file keeps (lib.core.storage's appender terminates it; it cuts any other tail).
"""

from __future__ import annotations

import json


def split_lines[T: (str, bytes)](content: T) -> tuple[list[T], T]:
    """``content`` -> (its complete lines without their newlines, the torn tail: empty when it ends in one)."""
    lines = content.split("\n") if isinstance(content, str) else content.split(b"\n")
    return lines[:-1], lines[-1]


def reject_non_finite(name: str) -> float:
    """``json.loads(parse_constant=...)``: NaN and infinities are not valid state."""
    raise ValueError(f"non-finite number {name}")


def is_complete_record(tail: str | bytes) -> bool:
    """True when a torn tail is a whole JSON object (only its newline was lost), so it is kept."""
    try:
        return isinstance(json.loads(tail, parse_constant=reject_non_finite), dict)
    except (ValueError, UnicodeDecodeError):
        return False

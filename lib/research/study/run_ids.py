"""Pure: the name of a study run's output folder."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from lib.research.study.sections import StudySettings


def build_run_id(settings: StudySettings, *, now_ms: int, inputs: Sequence[str]) -> str:
    """``<strategy>-<timeframe>-<UTC time>-<8 hex of sha256(settings, inputs)>``: sortable, and two
    runs on different inputs in the same second do not share a directory."""
    digest = hashlib.sha256("\n".join([repr(settings), *inputs]).encode()).hexdigest()[:8]
    stamp = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{settings.strategy.name}-{settings.strategy.timeframe}-{stamp}-{digest}"

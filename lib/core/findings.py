"""Pure: one checked fact as a table row (check, ok/warn/fail, detail, what to do): the rows of ``doctor`` and
the verdict of the live-key policy (``lib.execution.risk_live_key``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail")


@dataclass(frozen=True, slots=True)
class Finding:
    """One row of the doctor table. ``what_to_do`` is empty for an ok row."""

    check: str
    status: Status
    detail: str
    what_to_do: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

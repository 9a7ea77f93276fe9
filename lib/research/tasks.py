"""Pure: the fan-out seam: research code maps a pure task over independent items through ``map_tasks``.

A study never loops over its grid itself: it hands ``map_tasks(task, items, shared, label=...)`` a
module-level function ``task(item, shared) -> result`` and the items; ``shared`` holds the large inputs
every task reads (candles, computed signals), sent once per worker rather than once per task. The default,
``serial_map``, runs the tasks in order in this process; lib.ops.fanout supplies one that runs them on a
Dask cluster. Either way the results come back in item order and each task is a pure function of
(item, shared), so a study's output does not depend on where its tasks ran (tests/unit/ops/test_fanout.py).
Tasks must not write files or read the clock; a task that needs randomness carries its seed in its item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class MapTasks(Protocol):
    """``map_tasks(task, items, shared, label=...) -> [task(item, shared) for item in items]``, in order."""

    def __call__[Item, Shared, Result](
        self, task: Callable[[Item, Shared], Result], items: Sequence[Item], shared: Shared, *, label: str
    ) -> list[Result]: ...


def serial_map[Item, Shared, Result](
    task: Callable[[Item, Shared], Result], items: Sequence[Item], shared: Shared, *, label: str = "tasks"
) -> list[Result]:
    """Every task in this process, in item order (the reference every other ``MapTasks`` must equal)."""
    return [task(item, shared) for item in items]

"""Edge: research grids as independent tasks on Dask (``dask.distributed``): the ``map_tasks`` of research scripts.

``Fanout`` is a ``lib.research.tasks.MapTasks``: ``--workers 1`` (or ``research.workers = 1``) runs every task
serially in this process (no cluster; for debugging); otherwise the first grid with two or more tasks starts
a ``LocalCluster`` of ``workers`` processes (0 = one per core, one thread each, ``research.worker_memory_limit``
each), or connects to the scheduler at ``--scheduler`` / ``research.scheduler`` (a multi-machine cluster whose
workers run this same code). The large shared inputs go to each worker once (``scatter(broadcast=True)``),
the tasks are pure functions of (item, shared), and results come back in item order, so a study gives the
same numbers wherever it ran. Only the driver writes files. A failed task cancels the rest and re-raises its
error here (with the task named), so the script exits non-zero before anything is written.
Research commands only: cron scripts never start a cluster (Dask is imported only when one starts).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from loguru import logger

from lib.core.errors import ConfigError
from lib.ops.config import ResearchSection

LOG_STEPS = 10  # without a terminal: a progress line at every tenth of the tasks
BATCHES_PER_SLOT = 4  # tasks are sent in contiguous batches: a few per worker thread, for balance without
# paying Dask's per-task overhead on hundreds of millisecond-sized tasks (walk-forward train runs)

ENVIRON_KEY = "distributed.nanny.pre-spawn-environ"  # what Dask sets in a local worker's environment
TRIM_VARIABLE = "MALLOC_TRIM_THRESHOLD_"  # Dask's default 65536 (measured below): left out for our workers

PLACE_ATTRIBUTE = "fanout_batch_place"  # set on a task's error on the worker: its place in the batch


def add_arguments(parser: argparse.ArgumentParser, *, default_workers: str = "research.workers") -> None:
    """``--workers N`` and ``--scheduler ADDRESS`` (defaults: the config's ``[research]`` section)."""
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes for the grid (0 = every "
                        f"core, 1 = serially in this process; default {default_workers})")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run the grid on the Dask scheduler at ADDRESS "
                        "(tcp://host:8786) instead of a local cluster (default research.scheduler)")


def from_args(args: argparse.Namespace, section: ResearchSection, *, progress: bool = False) -> Fanout:
    """The fan-out the command line asks for, falling back on ``[research]``."""
    workers = section.workers if args.workers is None else args.workers
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 = every core), got {workers}")
    scheduler = section.scheduler if args.scheduler is None else args.scheduler
    return Fanout(workers=workers, scheduler=scheduler, memory_limit=section.worker_memory_limit,
                  progress=progress or sys.stderr.isatty())


class Fanout:
    """A context manager whose instance maps tasks serially or on Dask (module docstring); closes what it started."""

    def __init__(self, *, workers: int = 0, scheduler: str = "", memory_limit: str = "auto",
                 progress: bool = False, connect_timeout_s: float = 20.0) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.workers = workers or os.cpu_count() or 1
        self.scheduler = scheduler.strip()
        self.memory_limit = memory_limit
        self.progress = progress
        self._client: Any = None
        self._cluster: Any = None
        self._starting: Future[Any] | None = None

    def start_early(self, warm_modules: Sequence[str] = ()) -> None:
        """Start the cluster now, in the background, when the caller knows a grid will follow: the workers'
        start-up and the imports named in ``warm_modules`` then overlap the driver's own work (loading data,
        the base run) instead of delaying the first grid. Errors surface at the first grid. No-op when serial."""
        if self.is_serial or self._client is not None or self._starting is not None:
            return
        starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fanout-start")
        self._starting = starter.submit(self._start_client, tuple(warm_modules))
        starter.shutdown(wait=False)  # the thread ends with the start; close() and _connect() wait for it

    @property
    def is_serial(self) -> bool:
        return not self.scheduler and self.workers == 1

    def __enter__(self) -> Fanout:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._starting is not None:  # a start in the background: let it finish, then close what it made
            self._starting.exception()
            self._starting = None
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def __call__[Item, Shared, Result](
        self, task: Callable[[Item, Shared], Result], items: Sequence[Item], shared: Shared, *, label: str
    ) -> list[Result]:
        if self.is_serial or len(items) < 2:
            return self._serial(task, items, shared, label)
        return self._distributed(task, items, shared, label)

    def _serial[Item, Shared, Result](
        self, task: Callable[[Item, Shared], Result], items: Sequence[Item], shared: Shared, label: str
    ) -> list[Result]:
        if len(items) > 1:
            logger.info("{}: {} tasks, serially in this process", label, len(items))
        bar = _Progress(label, len(items), show_bar=self.progress)
        results = []
        for index, item in enumerate(items):
            try:
                results.append(task(item, shared))
            except Exception as error:
                bar.close()
                raise _named(error, label, index, items) from None
            bar.advance()
        bar.close()
        return results

    def _distributed[Item, Shared, Result](
        self, task: Callable[[Item, Shared], Result], items: Sequence[Item], shared: Shared, label: str
    ) -> list[Result]:
        from dask.distributed import as_completed

        client = self._connect()
        slots = sum(worker["nthreads"] for worker in client.scheduler_info()["workers"].values()) or 1
        batches = _batches(len(items), slots * BATCHES_PER_SLOT)
        logger.info("{}: {} tasks in {} batches on {}", label, len(items), len(batches), self.where)
        [shared_future] = client.scatter([shared], broadcast=True, hash=False)
        futures = [client.submit(_run_batch, task, [items[index] for index in batch], shared_future, pure=False)
                   for batch in batches]
        position = {future.key: number for number, future in enumerate(futures)}
        bar = _Progress(f"{label} (dask, {self.where})", len(items), show_bar=self.progress)
        try:
            for future in as_completed(futures):
                batch = batches[position[future.key]]
                if future.status == "error":
                    error = future.exception()  # the task's own, or Dask's (a worker lost, ...): the batch's first
                    client.cancel(futures)  # after reading the error: cancelling releases it
                    raise _named(error, label, batch[getattr(error, PLACE_ATTRIBUTE, 0)], items) from None
                bar.advance(len(batch))
            results = [result for results in client.gather(futures) for result in results]
            memory = [worker["metrics"]["memory"] >> 20 for worker in client.scheduler_info()["workers"].values()]
            logger.info("{}: done; worker memory now {} MiB (limit {})", label, memory, self.memory_limit)
            return results
        finally:
            bar.close()
            client.cancel([shared_future])

    @property
    def where(self) -> str:
        return self.scheduler or f"{self.workers} local workers"

    def _connect(self) -> Any:
        """The client, started on first use (or by ``start_early``): a LocalCluster or the ``scheduler``."""
        if self._starting is not None:
            starting, self._starting = self._starting, None
            starting.result()  # re-raises the background start's error here
        if self._client is None:
            self._start_client(())
        return self._client

    def _start_client(self, warm_modules: tuple[str, ...]) -> None:
        import dask
        from dask.distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self._client = Client(self.scheduler, timeout=f"{self.connect_timeout_s}s")
            except (OSError, TimeoutError) as error:
                raise ConfigError(f"cannot reach the Dask scheduler at {self.scheduler} (--scheduler / "
                                  f"research.scheduler): {error}") from None
            logger.info("fan-out on the Dask scheduler {} ({} workers)", self.scheduler,
                        len(self._client.scheduler_info()["workers"]))
        else:
            with dask.config.set({ENVIRON_KEY: _worker_environ(dask.config.get(ENVIRON_KEY, default={}))}):
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             memory_limit=self.memory_limit, dashboard_address="127.0.0.1:0",
                                             silence_logs=logging.CRITICAL)  # a failed task is logged once, here
            # the scheduler's HTTP endpoint: loopback on a free port (the default binds every interface on 8787
            # and clashes with a second study running at the same time)
            self._client = Client(self._cluster)
            logger.info("fan-out on a local Dask cluster: {} worker processes, memory limit {} each", self.workers,
                        self.memory_limit)
        if warm_modules:
            self._client.run(_import_modules, warm_modules)


def _import_modules(names: tuple[str, ...]) -> None:
    """On each worker: import what the tasks will need while the driver is still busy."""
    for name in names:
        importlib.import_module(name)


def _batches(count: int, at_most: int) -> list[range]:
    """``range(count)`` cut into at most ``at_most`` contiguous, near-equal, non-empty pieces, in order."""
    pieces = min(count, at_most)
    bounds = [count * piece // pieces for piece in range(pieces + 1)]
    return [range(bounds[piece], bounds[piece + 1]) for piece in range(pieces)]


def _run_batch[Item, Shared, Result](task: Callable[[Item, Shared], Result], batch: list[Item],
                                     shared: Shared) -> list[Result]:
    """On a worker: the batch's tasks in order; the first failure is re-raised with its place in the batch."""
    results = []
    for place, item in enumerate(batch):
        try:
            results.append(task(item, shared))
        except Exception as error:
            setattr(error, PLACE_ATTRIBUTE, place)
            raise
    return results


class _Progress:
    """A bar on a terminal (tqdm), else a log line at every tenth of the tasks."""

    def __init__(self, label: str, total: int, *, show_bar: bool) -> None:
        self.label, self.total, self.done = label, total, 0
        self.bar: Any = None
        if show_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="task")

    def advance(self, count: int = 1) -> None:
        step = max(1, self.total // LOG_STEPS)
        before, self.done = self.done, self.done + count
        if self.bar is not None:
            self.bar.update(count)
        elif self.done // step > before // step or self.done == self.total:
            logger.info("{}: {}/{} tasks done", self.label, self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _named(error: BaseException, label: str, index: int, items: Sequence[Any]) -> BaseException:
    """``error`` with the failed task named (logged, and as a note on the exception the script reports)."""
    what = repr(items[index])
    what = what if len(what) <= 200 else what[:200] + "..."
    logger.error("{}: task {} of {} failed ({}): {}: {}", label, index + 1, len(items), what,
                 type(error).__name__, error)
    error.add_note(f"in {label} task {index + 1} of {len(items)}: {what}")
    return error


def _worker_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """Dask's environment for local workers without its ``MALLOC_TRIM_THRESHOLD_``. Setting it fixes glibc's
    thresholds, so every large array a task frees goes back to the kernel and the next one faults in fresh pages:
    a strategy run on hourly data took 0.85-0.96 s on a worker against 0.55 s in the driver, and the walk-forward
    grid spent 5 s in system time; without it the runs take the driver's 0.55 s (the workers' memory is bounded by
    ``research.worker_memory_limit`` as before)."""
    return {name: value for name, value in environ.items() if name != TRIM_VARIABLE}

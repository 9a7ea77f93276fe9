"""Pure: the research protocol's candidate backtests (lib.research.candidates) as one task per candidate through
``map_tasks`` (lib.research.tasks): every candidate reads the same ResearchData, sent once per worker.

Two phases, both fanned out: ``common_start`` asks every candidate for its first tradeable day, which computes its
strategy composition; each task hands back what it added to the data's cache, so the driver holds every
composition when the second phase (``candidate_runs``) sends the data out, and no worker computes a strategy twice
(serially the cache is simply shared). The compositions are deterministic, so where they were computed does not
change a number (tests/integration/test_research_fanout.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lib.core.errors import ConfigError
from lib.research.candidates import FAMILIES, Candidate, CandidateRun, ResearchData, evaluate_candidate
from lib.research.tasks import MapTasks, serial_map


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateShared:
    """The data every candidate reads and the span each one is backtested on."""

    data: ResearchData
    start_ms: int
    end_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FirstDayShared:
    """The data every candidate reads and the earliest day asked for."""

    data: ResearchData
    start_ms: int


def first_day_task(candidate: Candidate, shared: FirstDayShared) -> tuple[int, dict[Any, Any]]:
    """The candidate's first tradeable day >= start_ms, and the cache entries (strategy compositions) finding it
    added: on a worker they travel back to the driver instead of being computed again in the second phase."""
    cache = shared.data.cache
    before = set(cache)
    first = FAMILIES[candidate.family].first_ms(candidate, shared.data, shared.start_ms)
    return first, {key: cache[key] for key in cache if key not in before}


def common_start(trials: Sequence[Candidate], data: ResearchData, *, start_ms: int,
                 map_tasks: MapTasks = serial_map) -> int:
    """The first day on which EVERY candidate can trade (the latest of their first tradeable bars >= start_ms):
    protocol v2 starts them all from cash there, so no candidate carries a history (a halt, a drawdown) from
    before the span they are compared on. Fills ``data.cache`` with every candidate's composition."""
    if not trials:
        raise ConfigError("no candidates to evaluate")
    found = map_tasks(first_day_task, list(trials), FirstDayShared(data=data, start_ms=start_ms), label="first days")
    for _, added in found:
        for key, composition in added.items():
            data.cache.setdefault(key, composition)
    return max(first for first, _ in found)


def candidate_task(candidate: Candidate, shared: CandidateShared) -> CandidateRun:
    return evaluate_candidate(candidate, shared.data, start_ms=shared.start_ms, end_ms=shared.end_ms)


def candidate_runs(trials: Sequence[Candidate], shared: CandidateShared, *,
                   map_tasks: MapTasks = serial_map) -> dict[str, CandidateRun]:
    """Candidate name -> its run, in ``trials`` order (the returns matrix's column order)."""
    runs = map_tasks(candidate_task, list(trials), shared, label="candidates")
    return {candidate.name: run for candidate, run in zip(trials, runs, strict=True)}

"""Pure: the research protocol's candidate backtests (lib.research.candidates) as one task per candidate through
``map_tasks`` (lib.research.tasks): every candidate reads the same ResearchData, sent once per worker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lib.research.candidates import Candidate, CandidateRun, ResearchData, evaluate_candidate
from lib.research.tasks import MapTasks, serial_map


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateShared:
    """The data every candidate reads and the span each one is backtested on."""

    data: ResearchData
    start_ms: int
    end_ms: int | None


def candidate_task(candidate: Candidate, shared: CandidateShared) -> CandidateRun:
    return evaluate_candidate(candidate, shared.data, start_ms=shared.start_ms, end_ms=shared.end_ms)


def candidate_runs(trials: Sequence[Candidate], shared: CandidateShared, *,
                   map_tasks: MapTasks = serial_map) -> dict[str, CandidateRun]:
    """Candidate name -> its run, in ``trials`` order (the returns matrix's column order)."""
    runs = map_tasks(candidate_task, list(trials), shared, label="candidates")
    return {candidate.name: run for candidate, run in zip(trials, runs, strict=True)}

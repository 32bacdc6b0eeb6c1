"""A prompt search as a queued job: a row of the jobs table (kind `optimize`) holding the
request, whose worker (`python -m tunelab.engine.optimize.worker`) reports its progress
there, so `tunelab jobs list|show|cancel|resume` and the TUI's job lists see it like a
fine-tuning job. Jobs of both kinds share the queue (`processes.JOB_WORKER_MODULES`).

A resumed search is the same request run again: with the same seed it proposes the same
candidates and reuses every evaluation already finished (and every cached response).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.engine.evaluation.plan import resolve_model_arg
from tunelab.engine.optimize.search import OptimizeProgress, OptimizeRequest, check_request
from tunelab.engine.optimize.space import SearchSpace
from tunelab.engine.processes import job_worker_command, start_detached

if TYPE_CHECKING:
    from tunelab.store import Job, Store, Workspace

KIND = "optimize"
METHOD = "prompt-search"


def request_to_config(request: OptimizeRequest) -> dict[str, Any]:
    """The request as the job's JSON config."""
    return dataclasses.asdict(request)


def request_from_config(config: dict[str, Any]) -> OptimizeRequest:
    """The request a job's config holds (validated again, as when it was first made)."""
    data = dict(config)
    space: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in dict(data.pop("space", {})).items()
    }
    known = {f.name for f in dataclasses.fields(OptimizeRequest)}
    return OptimizeRequest(
        **{k: v for k, v in data.items() if k in known}, space=SearchSpace(**space)
    )


@dataclass(frozen=True)
class SearchJobProgress:
    """What a search job reports in the job's progress: `step` of `total_steps` are the
    candidates scored of the budget (the fields every job list already shows)."""

    phase: str = "searching"
    step: int = 0
    total_steps: int = 0
    message: str = ""
    best: dict[str, Any] = field(default_factory=dict)
    evaluations: int = 0

    @classmethod
    def of(cls, progress: OptimizeProgress) -> SearchJobProgress:
        e = progress.evaluation
        best = {} if progress.best_score is None else {"value": progress.best_score}
        return cls(
            "searching",
            progress.candidates,
            progress.budget,
            f"{e.version_ref} on {e.rows} rows: {e.score:.4f}",
            best,
            progress.evaluations,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def launch_search_job(
    workspace: Workspace, store: Store, request: OptimizeRequest
) -> tuple[Job, int]:
    """Queue the search and start its worker; returns the job and the worker's pid.

    Everything that can be refused is refused first (`check_request`), so bad input leaves
    no job behind. The worker waits its turn in the queue: if another job runs, it exits and
    the queue starts it later.
    """
    seed, dataset, _, _, _ = check_request(store, request)
    model = resolve_model_arg(store, request.model)
    job = store.create_job(
        METHOD,
        request_to_config(request),
        model.id,
        dataset.id,
        seed.id,
        kind=KIND,
    )
    log = workspace.logs_dir / f"job-{job.id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    store.update_job(job.id, log_path=str(log))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNELAB_WORKSPACE": str(workspace.root)}
    with os.fdopen(fd, "wb") as out:
        command = job_worker_command(workspace.root, job.id, KIND)
        process = start_detached(command, out, workspace.root, env)
    return store.get_job(job.id), process.pid

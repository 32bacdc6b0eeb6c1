"""Ingesting a remote evaluation's file events into its run (a job of kind `eval`).

The worker appends `started`, `outputs` (scored rows and the responses behind them),
`finished` and `failed` events to its job folder. Each is applied in the transaction that
records its `(job, source, seq)` key, and row outputs are keyed by row index, so an events
file read twice is one row per output. A run's metrics are aggregated here, from its stored
rows, exactly as a local run's are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.evaluation.remote_spec import (
    EVAL_SPEC_FILE,
    SpecRowStore,
    plan_from_spec,
    read_eval_spec,
)
from tunelab.engine.training.job_events import ingest_events

if TYPE_CHECKING:
    from tunelab.store import Job, Store

EVAL_KIND = "eval"
"""The job kind of an evaluation submitted to a scheduler."""


def eval_run_id(job: Job) -> int:
    """The run an evaluation job fills in."""
    return int(job.config["run_id"])


def ingest_eval_events(store: Store, job: Job, folder: Path) -> int:
    """Apply the new events of an evaluation job's worker files; returns how many."""
    return ingest_events(store, job.id, folder, lambda event: _apply(store, job, folder, event))


def mark_started(store: Store, job: Job, event: dict[str, Any], at: str) -> None:
    """A remote worker's `started` event: the job runs, on the host and pid it names."""
    where = f"{event.get('host')} (pid {event.get('pid')})"
    if event.get("slurm_job_id"):
        where += f", Slurm job {event['slurm_job_id']}"
    store.transition_job(
        job.id, ["queued", "running"], ("running", f"started on {where}"),
        status="running", pid=event.get("pid"), host=event.get("host"), error=None,
        started_at=at, finished_at=None, heartbeat_at=at,
    )  # fmt: skip


def mark_failed(store: Store, job: Job, event: dict[str, Any], at: str) -> str | None:
    """A remote worker's `failed` event: the job fails with its one-line reason; returns the
    reason, or None when the job had already ended."""
    error = str(event.get("error") or "the worker failed")
    if store.transition_job(job.id, ["queued", "running"], ("failed", error),
                            status="failed", error=error, finished_at=at):  # fmt: skip
        return error
    return None


def _apply(store: Store, job: Job, folder: Path, event: dict[str, Any]) -> None:
    from tunelab.store import CachedResponse, NewRunOutput

    kind = event.get("kind")
    at = str(event.get("at") or _now())
    run_id = eval_run_id(job)
    if kind == "started":
        mark_started(store, job, event, at)
    elif kind == "outputs":
        outputs = [NewRunOutput(**o) for o in event.get("outputs") or []]
        store.add_run_outputs(run_id, outputs)
        responses = event.get("responses") or {}
        if responses:
            store.cache_responses({k: CachedResponse(**v) for k, v in responses.items()})
        done = len(store.done_row_indices(run_id))
        store.update_job(job.id, progress={"rows_done": done,
                                           "rows_total": store.get_run(run_id).rows_total},
                         heartbeat_at=at)  # fmt: skip
    elif kind == "finished":
        if store.transition_job(job.id, ["queued", "running"], ("succeeded", "evaluated"),
                                status="succeeded", finished_at=at):  # fmt: skip
            finish_eval_run(store, job, folder, "succeeded", None)
    elif kind == "failed":
        error = mark_failed(store, job, event, at)
        if error is not None:
            finish_eval_run(store, job, folder, "failed", error)


def finish_eval_run(store: Store, job: Job, folder: Path, status: str, error: str | None) -> None:
    """End a remote evaluation's run, its metrics aggregated from the rows stored so far."""
    from tunelab.engine.evaluation.run import run_metrics

    run_id = eval_run_id(job)
    if store.get_run(run_id).status != "running":
        return
    try:
        spec = read_eval_spec(folder / EVAL_SPEC_FILE)
        metrics = run_metrics(store, plan_from_spec(spec, SpecRowStore(spec)), run_id)
    except Exception as exc:  # the run still ends, with why its metrics are missing
        metrics, status = {}, "failed"
        error = error or f"aggregating metrics failed: {exc}"
    store.finish_run(run_id, status, metrics, error)


def settle_eval_run(store: Store, job: Job, folder: Path) -> None:
    """A job that ended without the worker's own verdict (cancelled, timed out, refused)
    ends its run as failed with the job's reason."""
    job = store.get_job(job.id)
    if job.status in ("queued", "running"):
        return
    reason = job.error or f"job {job.id} was {job.status}"
    if job.status == "cancelled":
        reason = f"cancelled (Slurm job {job.scheduler_job_id})"
    finish_eval_run(store, job, folder, "failed", reason)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")

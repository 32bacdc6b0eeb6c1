"""The detached process behind a curve: `python -m tunelab.engine.curves.driver CURVE_ID`.

It claims the curve (one driver at a time), evaluates the prompt side first when the curve
has no prompt run yet, then waits for the curve's jobs and evaluates each finished job's
best checkpoint on the curve's evaluation rows, recording the run, the device it trained on
and its training time and cost on the point. Everything it does is recorded as it goes, so a
killed driver started again (`tunelab curve resume`) skips what is done and resumes a run it
left half-way.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tunelab.engine.curves.launch import current_driver, driver_alive
from tunelab.engine.errors import BadInputError, EngineError, one_line
from tunelab.engine.evaluation.request import EvalProgress, EvalRequest
from tunelab.store import CurveEntry, Store, Workspace, find_workspace

if TYPE_CHECKING:
    from tunelab.store import Curve, Job, Model, Run

POLL_S = 2.0


def drive(
    workspace: Workspace,
    store: Store,
    curve_id: int,
    poll_s: float = POLL_S,
    should_stop: Callable[[], bool] | None = None,
) -> bool:
    """Evaluate the curve until every point is evaluated or its job has failed; False when
    another live driver holds the curve (this one then does nothing)."""
    from tunelab.engine.training.jobs import refresh_job_states

    stop = should_stop or (lambda: False)
    if not store.claim_curve_driver(curve_id, current_driver(), driver_alive):
        return False
    store.update_curve(curve_id, error=None)
    ensure_prompt_run(store, store.get_curve(curve_id))
    while not stop():
        refresh_job_states(store, workspace)
        waiting = False
        for entry in store.curve_entries(curve_id):
            if stop():
                break
            waiting |= not settle_point(store, store.get_curve(curve_id), entry)
        if not waiting:
            break
        time.sleep(poll_s)
    return True


def ensure_prompt_run(store: Store, curve: Curve) -> Run:
    """The curve's prompt run: the one it names, finished here if a killed driver left it
    half-way, or a new evaluation of the prompt on the base model."""
    from tunelab.engine.evaluation.run import evaluate

    if curve.prompt_run_id is not None:
        run = store.get_run(curve.prompt_run_id)
        return run if run.status == "succeeded" else _finish_run(store, run)
    dataset = store.get_dataset_by_id(curve.dataset_id)
    request = EvalRequest(
        prompt=store.get_prompt_version_by_id(curve.prompt_version_id),
        model=store.get_model_by_id(curve.base_model_id).name,
        dataset=dataset.name,
        split=curve.eval_split,
        limit=curve.eval_limit,
        scoring=str(curve.launch.get("scoring", "generate")),
        latency_probe=0,
    )
    result = evaluate(store, request, _record_run(lambda run_id: store.update_curve(
        curve.id, prompt_run_id=run_id)))  # fmt: skip
    return result.run


def settle_point(store: Store, curve: Curve, entry: CurveEntry) -> bool:
    """Move one point on as far as it goes now; True when it needs nothing more (evaluated,
    or its job failed), False while its job is still queued or running."""
    if entry.finished_at is not None and entry.run_id is not None:
        return True
    if entry.job_id is None:
        return entry.error is not None  # no error: its job is being queued right now
    job = store.get_job(entry.job_id)
    if job.status in ("queued", "running"):
        if entry.error:
            store.update_curve_entry(entry.id, error=None)  # resumed since
        return False
    if job.status != "succeeded":
        why = job.error or job.status
        store.update_curve_entry(entry.id, error=f"job {job.id} {job.status}: {why}")
        return True
    try:
        run = _evaluate_point(store, curve, entry, _best_model(store, job))
    except (BadInputError, EngineError) as exc:
        store.update_curve_entry(entry.id, error=f"evaluation failed: {exc}")
        return True
    _record_cost(store, entry, job, run)
    return True


def _evaluate_point(store: Store, curve: Curve, entry: CurveEntry, model: Model) -> Run:
    """Evaluate the checkpoint on exactly the prompt run's rows, scored the same way."""
    from tunelab.engine.evaluation.run import evaluate

    if entry.run_id is not None:
        run = store.get_run(entry.run_id)
        return run if run.status == "succeeded" else _finish_run(store, run)
    assert curve.prompt_run_id is not None
    prompt_run = store.get_run(curve.prompt_run_id)
    sampled = prompt_run.sample_seed is not None
    request = EvalRequest(
        prompt=store.get_prompt_version_by_id(curve.prompt_version_id),
        model=model.name,
        dataset=prompt_run.dataset_name,
        split=prompt_run.split,
        limit=None if sampled else prompt_run.row_limit,
        sample=prompt_run.row_limit if sampled else None,
        seed=prompt_run.sample_seed or 0,
        scoring=prompt_run.scoring,
        metrics=list(prompt_run.metric_names),
        latency_probe=0,
    )
    record = _record_run(lambda run_id: store.update_curve_entry(entry.id, run_id=run_id))
    return evaluate(store, request, record).run


def _finish_run(store: Store, run: Run) -> Run:
    """Finish a run a killed driver left half-way (its missing rows only)."""
    from tunelab.engine.evaluation.run import resume_run

    return resume_run(store, run.id, latency_probe=0).run


def _record_run(save: Callable[[int], object]) -> Callable[[EvalProgress], None]:
    """A progress callback that records the run id once, as soon as the run exists, so a
    killed driver resumes that run instead of starting another."""
    seen: list[int] = []

    def on_progress(progress: EvalProgress) -> None:
        if not seen and progress.run_id:
            seen.append(progress.run_id)
            save(progress.run_id)

    return on_progress


def _best_model(store: Store, job: Job) -> Model:
    models = store.models_of_job(job.id)
    if not models:
        raise EngineError(f"job {job.id} succeeded but saved no checkpoint")
    best = [m for m in models if m.is_best]
    return best[0] if best else max(models, key=lambda m: m.step or 0)


def _record_cost(store: Store, entry: CurveEntry, job: Job, run: Run) -> None:
    """The device the job trained on, its wall time and its price at the workspace's rate."""
    from tunelab.engine.compare.cost import job_device, training_cost
    from tunelab.store.workspace_config import store_config

    device, _ = job_device(job)
    seconds = _seconds(job.started_at, job.finished_at)
    cost, _, _ = training_cost(store, run.model_id, store_config(store).price)
    store.update_curve_entry(
        entry.id,
        run_id=run.id,
        device=device,
        train_seconds=seconds,
        train_cost=cost if seconds is not None else None,
        error=None,
        finished_at=run.finished_at or datetime.now(UTC).isoformat(timespec="milliseconds"),
    )


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", default=None)
    parser.add_argument("curve_id", type=int)
    args = parser.parse_args(argv)
    workspace = find_workspace(args.workspace)
    store = workspace.open_store()
    try:
        if not drive(workspace, store, args.curve_id):
            print(f"curve {args.curve_id} already has a live driver; nothing to do", flush=True)
            return 0
    except Exception as exc:
        line = one_line(exc)
        store.update_curve(args.curve_id, error=line)
        raise
    finally:
        store.close()
    print(f"curve {args.curve_id}: every point settled", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluations on Slurm: `tunelab eval ... --on slurm`.

The plan is prepared and validated here exactly as a local run's (bad input stops before
anything is stored); then the run is created, handed to a job of kind `eval`, its spec is
written into the job folder and the batch script is `sbatch`ed. The worker on the compute
node reports through file events (`eval_events`), which every refresh of Slurm jobs ingests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation import plan as eval_plan
from tunelab.engine.evaluation.remote_spec import refuse_remote, write_eval_spec
from tunelab.engine.evaluation.run import create_planned_run
from tunelab.engine.evaluation.samples import refuse_identical_samples, sampled_plan
from tunelab.engine.training import slurm
from tunelab.engine.training.eval_events import EVAL_KIND, settle_eval_run
from tunelab.engine.training.job_events import job_dir, stop_file

if TYPE_CHECKING:
    from tunelab.engine.evaluation.request import EvalRequest
    from tunelab.store import Job, Run, Store, Workspace


def submit_evaluation(
    workspace: Workspace, store: Store, request: EvalRequest, options: slurm.SlurmOptions
) -> tuple[Run, Job]:
    """Check a request, create its run and job, write the spec and submit it to Slurm.

    Returns:
        the run (running, owned by the Slurm job) and the job with its Slurm job id.

    Raises:
        BadInputError: the request cannot run, or not remotely (nothing is stored then).
        EngineError: sbatch refused the job (the job and the run are failed with why).
    """
    if request.resume_run_id is not None:
        raise BadInputError("a Slurm evaluation starts a new run; resume runs on this machine")
    refuse_identical_samples(store, request)
    plan = sampled_plan(eval_plan.prepare(store, request), request.samples)
    refuse_remote(plan, request.samples)
    slurm.check_shared_fs(workspace.root, options.allow_local_fs)
    workspace.ensure_dirs()
    run = create_planned_run(store, plan, request.samples)
    job = store.create_job(
        "eval", {"run_id": run.id, "prompt": plan.version.ref, "split": plan.split},
        plan.model.id, plan.dataset.id, plan.version.id, gpus=options.gpus_per_node,
        kind=EVAL_KIND, scheduler="slurm",
    )  # fmt: skip
    folder = job_dir(workspace, job.id)
    store.hand_run_to_scheduler(run.id, f"slurm:job-{job.id}")
    job = store.update_job(job.id, output_dir=str(folder),
                           log_path=str(folder / slurm.LOG_FILE))  # fmt: skip
    spec = write_eval_spec(store, plan, run, job.id, folder, stop_file(workspace, job.id),
                           request.batch_size, options.to_dict())  # fmt: skip
    try:
        job = slurm.sbatch(store, job, folder, options, [slurm.EVAL_WORKER_MODULE, str(spec)])
    finally:
        settle_eval_run(store, job, folder)
    return store.get_run(run.id), job


def eval_job_of_run(store: Store, run_id: int) -> Job | None:
    """The Slurm job evaluating a run, if it was submitted to Slurm."""
    for job in store.list_jobs(scheduler="slurm"):
        if job.kind == EVAL_KIND and job.config.get("run_id") == run_id:
            return job
    return None


def refresh_remote_runs(workspace: Workspace, store: Store) -> None:
    """Ingest the events of every active Slurm evaluation and end those Slurm ended; what
    `run show`, `runs list` and `eval --wait` call before reading runs."""
    ids = [j.id for j in store.list_jobs(scheduler="slurm") if j.kind == EVAL_KIND]
    if ids:
        slurm.refresh_slurm_jobs(workspace, store, ids)

"""`tunelab eval ... --on slurm`: submit an evaluation to Slurm, and `--wait` to follow it.

A thin front end over `engine.training.remote_eval`; the cluster flags are the ones `tune`
takes (`cluster_option` and `slurm_options` in `cli_common`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text

from tunelab.cli_common import EXIT_FAILURE, console, emit_json, fail, state
from tunelab.cli_common import cluster_option as cluster_option  # what `eval` imports from here

if TYPE_CHECKING:
    from tunelab.engine.evaluation.request import EvalRequest
    from tunelab.engine.training.slurm import SlurmOptions


def submit_remote_eval(
    request: EvalRequest, options: SlurmOptions, wait: bool, json_output: bool
) -> None:
    """Submit the evaluation, print its run and Slurm job ids; with `wait`, follow it."""
    from tunelab.engine.training.remote_eval import submit_evaluation

    run, job = submit_evaluation(state.workspace(), state.store(), request, options)
    if json_output and not wait:
        emit_json({"run_id": run.id, "job_id": job.id, "scheduler_job_id": job.scheduler_job_id})
        return
    if not json_output:
        console.print(
            f"run {run.id} submitted to Slurm as job {job.scheduler_job_id} (tunelab job "
            f"{job.id}); follow it with `tunelab run show {run.id}` or `tunelab jobs show {job.id}`"
        )
    if wait:
        follow_remote_run(run.id, job.id, json_output)


def follow_remote_run(run_id: int, job_id: int, json_output: bool, poll_s: float = 1.0) -> None:
    """Ingest the run's events until it ends, printing rows done as they change; exit 1
    when it failed."""
    from tunelab.engine.training.remote_eval import refresh_remote_runs

    store = state.store()
    last = ""
    while True:
        refresh_remote_runs(state.workspace(), store)
        run = store.get_run(run_id)
        line = f"run {run.id} {run.status}: {run.rows_done}/{run.rows_total} rows"
        if line != last and not json_output:
            console.print(Text(line))
            last = line
        if run.status != "running":
            break
        time.sleep(poll_s)
    if json_output:
        emit_json({"run_id": run.id, "job_id": job_id, "status": run.status,
                   "metrics": run.metrics, "error": run.error})  # fmt: skip
    if run.status == "failed":
        fail(f"run {run.id} failed: {run.error}", EXIT_FAILURE)

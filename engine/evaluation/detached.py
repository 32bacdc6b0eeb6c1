"""Evaluations that outlive their launcher: a run row plus a detached worker process.

The launcher checks the request and creates the run (so its id is known at once), starts
`python -m tunelab.engine.evaluation.worker` in its own session and hands the run to it.
The worker writes rows into the store as any evaluation does, so a front end follows it by
reading the run; closing the TUI or the terminal loses nothing. A worker that dies leaves a
running run whose process is gone, which `refresh_run_states` marks interrupted with why.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation import plan as eval_plan
from tunelab.engine.evaluation.run import create_planned_run, run_process_alive
from tunelab.engine.evaluation.samples import refuse_identical_samples, sampled_plan
from tunelab.engine.processes import process_start_ticks, start_detached

if TYPE_CHECKING:
    from tunelab.engine.evaluation.request import EvalRequest
    from tunelab.store import Run, Store, Workspace

WORKER_MODULE = "tunelab.engine.evaluation.worker"

_started_workers: list[subprocess.Popen[bytes]] = []
"""Workers this process started: detached, but its children until their exit is read."""
_started_lock = threading.Lock()


def eval_log_path(workspace: Workspace, run_id: int) -> Path:
    """Where a detached evaluation's worker writes its output (and a crash's traceback)."""
    return workspace.logs_dir / f"eval-{run_id}.log"


def worker_command(workspace: Workspace, run_id: int, request: EvalRequest) -> list[str]:
    """The worker's command line: the run is in the store; only run-time options travel."""
    command = [
        sys.executable, "-m", WORKER_MODULE, "--workspace", str(workspace.root),
        "--batch-size", str(request.batch_size), "--latency-probe", str(request.latency_probe),
    ]  # fmt: skip
    if not request.use_cache:
        command.append("--no-cache")
    return [*command, str(run_id)]


def start_evaluation(workspace: Workspace, store: Store, request: EvalRequest) -> Run:
    """Check a request, create its run and start a detached worker that evaluates it.

    Args:
        workspace: where the worker's log goes; the worker opens its store.
        store: the workspace store (the run is created here, before the worker starts).
        request: a new evaluation (not a resume: `tunelab eval --resume` runs in the
            foreground).

    Returns:
        the run, running and owned by the worker; it fills in as the worker scores rows.

    Raises:
        BadInputError: the request cannot run (checked before anything is written).
    """
    if request.resume_run_id is not None:
        raise BadInputError("a detached evaluation starts a new run; resume in the foreground")
    refuse_identical_samples(store, request)
    plan = sampled_plan(eval_plan.prepare(store, request), request.samples)
    run = create_planned_run(store, plan, request.samples)
    workspace.ensure_dirs()
    log = eval_log_path(workspace, run.id)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNELAB_WORKSPACE": str(workspace.root)}
    try:
        with open(log, "ab") as out:
            process = start_detached(
                worker_command(workspace, run.id, request), out, workspace.root, env
            )
    except OSError as exc:
        store.finish_run(run.id, "failed", {}, f"could not start the worker: {exc}")
        raise
    with _started_lock:
        _started_workers.append(process)
    # The worker records itself too when it starts; whichever comes first, the owner is it.
    store.hand_run_to(
        run.id, process.pid, socket.gethostname(), process_start_ticks(process.pid), run.pid
    )
    reap_eval_workers()
    return store.get_run(run.id)


def reap_eval_workers() -> list[int]:
    """Read the exit status of ended workers this process started, so none stays a
    `<defunct>` zombie while the TUI runs; never blocks. Returns their pids."""
    with _started_lock:
        ended = [process for process in _started_workers if process.poll() is not None]
        for process in ended:
            _started_workers.remove(process)
    return [process.pid for process in ended]


def cancel_evaluation(store: Store, run_id: int) -> Run:
    """Ask a running evaluation's worker to stop after its current chunk (SIGTERM): the run
    becomes interrupted with the rows it scored, and `tunelab eval --resume` can finish it."""
    run = store.get_run(run_id)
    if run.status != "running":
        raise BadInputError(f"run {run_id} is {run.status}; only a running evaluation stops")
    if run.pid is None or run.host != socket.gethostname():
        raise BadInputError(
            f"run {run_id} runs on {run.host or 'an unknown host'}; stop it there (Ctrl-C)"
        )
    if run_process_alive(run) is not True:
        raise BadInputError(f"run {run_id}'s process {run.pid} is gone; it will show interrupted")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(run.pid, signal.SIGTERM)
    return store.get_run(run_id)

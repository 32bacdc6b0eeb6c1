"""The detached process behind a fine-tuning job: `python -m tunelab.engine.training.worker`.

It claims its job (or leaves it queued when another job runs), trains, records progress and a
heartbeat, turns SIGTERM or a cancel request into a checkpoint and a clean stop, sets the
final status, then starts the next queued job. With `gpus > 1` it runs the same training
under torchrun (one process per GPU, or gloo processes on CPU) and stays the job's owner.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import EngineError
from tunelab.engine.processes import WorkerInfo
from tunelab.engine.training.config import TrainingConfig
from tunelab.engine.training.job_events import EventWriter
from tunelab.engine.training.jobs import (
    job_dir,
    max_running_jobs,
    next_queued_job,
    start_worker,
    stop_file,
)
from tunelab.engine.training.progress import TrainingProgress
from tunelab.store import Store, Workspace, find_workspace

if TYPE_CHECKING:
    from tunelab.engine.training.loop import TrainingResult
    from tunelab.store import Job

HEARTBEAT_S = 5.0
HEARTBEAT_ENV = "TUNELAB_HEARTBEAT_S"
"""Overrides HEARTBEAT_S (seconds), so tests see cancel requests picked up quickly."""
PROGRESS_EVERY_S = 2.0
RESULT_FILE = "result.json"


def _finished(outcome: str) -> tuple[str, str]:
    """The job status and message for how training ended ('stopped', 'early_stopped', ...)."""
    status = "cancelled" if outcome == "stopped" else "succeeded"
    message = {"stopped": "cancelled; checkpoint saved", "early_stopped":
               "stopped early (no improvement)"}.get(outcome, "finished")  # fmt: skip
    return status, message


def _failure_line(exc: BaseException) -> str:
    """A failed job's one-line error: a user error's own message, else the exception's type too."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, EngineError | ValueError):
        return first if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {first}"


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ProgressRecorder:
    """Writes metric series at every call and the progress snapshot every few seconds.

    A resumed job replays the steps after its last checkpoint (or all of them when no
    checkpoint is left): the first points this process writes replace the job's points from
    that step on, so each series keeps one point per step.
    """

    def __init__(self, store: Store, job_id: int, worker: dict[str, Any]) -> None:
        self.store = store
        self.job_id = job_id
        self.worker = worker
        self._last = 0.0
        self._last_phase = ""
        self._last_message = ""
        self._replaced_from: int | None = None

    def __call__(self, progress: TrainingProgress) -> None:
        from dataclasses import replace

        if progress.metrics:
            if self._replaced_from is None:
                self._replaced_from = progress.step
                self.store.delete_job_metrics(self.job_id, progress.step)
            self.store.add_job_metrics(self.job_id, progress.step, progress.metrics)
        now = time.monotonic()
        changed = progress.phase != self._last_phase
        if changed or now - self._last >= PROGRESS_EVERY_S:
            self._last, self._last_phase = now, progress.phase
            snapshot = replace(progress, worker=self.worker).to_dict()
            self.store.update_job(self.job_id, progress=snapshot, heartbeat_at=_now())
        if progress.message and progress.message != self._last_message:
            self._last_message = progress.message
            self.store.add_job_event(self.job_id, progress.phase, progress.message)


class StopSignal:
    """Set by SIGTERM, a stop file, or a cancel request in the store."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self.event = threading.Event()

    def __call__(self) -> bool:
        return self.event.is_set() or self.marker.exists()

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self.event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        # Belt and braces: the worker has its own session, but never die with a terminal.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def heartbeat_seconds() -> float:
    try:
        return max(0.05, float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_S)))
    except ValueError:
        return HEARTBEAT_S


def cancel_requested(store: Store, job_id: int, since_event_id: int) -> bool:
    """True when someone asked to cancel the job after event `since_event_id` (its claim):
    a request from before a resume belongs to the run it already stopped."""
    return any(
        e.kind == "cancel_requested" and e.id > since_event_id
        for e in store.job_events(job_id)[-5:]
    )


def _heartbeat(
    store_path: Path, job_id: int, stop: StopSignal, done: threading.Event, since_event_id: int
) -> None:
    """Beat every few seconds and pick up cancel requests, even while a step is running."""
    store = Store(store_path)
    try:
        while not done.wait(heartbeat_seconds()):
            store.update_job(job_id, heartbeat_at=_now())
            if cancel_requested(store, job_id, since_event_id):
                stop.event.set()
                stop.marker.parent.mkdir(parents=True, exist_ok=True)
                stop.marker.touch()
    except Exception as exc:  # the heartbeat must never kill the job
        print(f"heartbeat stopped: {exc}", flush=True)
    finally:
        store.close()


def _redirect_output(log_path: str) -> None:
    """Send this process's stdout/stderr to the job's own log (the queue may run a job that
    another launch started)."""
    if not log_path:
        return
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def training_request(workspace: Workspace, job: Job) -> Any:
    from tunelab.engine.training.loop import TrainingRequest

    config = TrainingConfig.from_dict(job.config)
    assert job.base_model_id and job.dataset_id and job.prompt_version_id
    output = Path(job.output_dir) if job.output_dir else workspace.models_dir / f"job-{job.id}"
    return TrainingRequest(
        config, job.base_model_id, job.dataset_id, job.prompt_version_id, output, job.id
    )


def train_in_process(
    workspace: Workspace, store: Store, job: Job, stop: StopSignal, worker: dict[str, Any]
) -> TrainingResult:
    from tunelab.engine.training.loop import run_training

    recorder = ProgressRecorder(store, job.id, worker)
    return run_training(store, training_request(workspace, job), recorder, stop)


def train_distributed(workspace: Workspace, job: Job, stop: StopSignal) -> dict[str, Any]:
    """Run the job's training under torchrun with `job.gpus` processes; wait for it."""
    import json

    result_path = job_dir(workspace, job.id) / RESULT_FILE
    result_path.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={job.gpus}", "-m", "tunelab.engine.training.worker",
        "--workspace", str(workspace.root), "--rank-worker", str(job.id),
    ]  # fmt: skip
    print("running: " + " ".join(command), flush=True)  # goes to the job log
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    while process.poll() is None:
        if stop():
            stop.marker.parent.mkdir(parents=True, exist_ok=True)
            stop.marker.touch()  # every rank polls it and stops at the same step
        time.sleep(0.5)
    if process.returncode != 0:
        raise EngineError(f"torchrun exited with status {process.returncode}; see the job log")
    if not result_path.exists():
        raise EngineError("the training processes ended without a result; see the job log")
    return dict(json.loads(result_path.read_text()))


def rank_worker(workspace: Workspace, job_id: int) -> int:
    """One torchrun process: train; rank 0 records progress and writes the result file."""
    import json
    from dataclasses import asdict

    from tunelab.engine.training.loop import run_training

    store = workspace.open_store()
    job = store.get_job(job_id)
    stop = StopSignal(stop_file(workspace, job_id))
    stop.install()
    rank = int(os.environ.get("RANK", "0"))
    recorder = ProgressRecorder(store, job.id, TrainingProgress.from_dict(job.progress).worker)
    result = run_training(store, training_request(workspace, job), recorder, stop)
    if rank == 0:
        (job_dir(workspace, job_id) / RESULT_FILE).write_text(json.dumps(asdict(result)))
    return 0


def run_job(workspace: Workspace, job_id: int) -> int:
    """Claim and run one job; returns the process exit status (0 even when it waits)."""
    store = workspace.open_store()
    info = WorkerInfo.current()
    worker = info.to_dict()
    job = store.claim_job(job_id, info.pid, info.host, {"worker": worker}, max_running_jobs())
    if job is None:
        current = store.get_job(job_id)
        print(f"job {job_id} not started here ({current.status}; the queue runs it later)")
        return 0
    _redirect_output(job.log_path)
    print(f"job {job.id}: {job.method} fine-tuning, pid {info.pid} on {info.host}", flush=True)
    claimed_at = max(e.id for e in store.job_events(job.id) if e.kind == "running")
    stop = StopSignal(stop_file(workspace, job.id))
    # A stop file left by the run a resume continues is not a request to stop this one; a
    # cancel from now on is an event after the claim, which the heartbeat turns into one.
    stop.marker.unlink(missing_ok=True)
    stop.install()
    done = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(workspace.db_path, job.id, stop, done, claimed_at), daemon=True
    )
    beat.start()
    status, error, message = "failed", None, ""
    try:
        if job.gpus > 1:
            outcome = train_distributed(workspace, job, stop)["status"]
        else:
            outcome = train_in_process(workspace, store, job, stop, worker).status
        status, message = _finished(outcome)
    except Exception as exc:
        error = _failure_line(exc)
        traceback.print_exc()
    finally:
        done.set()
        beat.join(timeout=30)  # so it cannot touch the stop file after it is removed below
    fields: dict[str, Any] = {"status": status, "finished_at": _now()}
    if error:
        fields["error"] = error
    ok = store.transition_job(job.id, ["running"], (status, error or message), **fields)
    print(f"job {job.id}: {status}" + (f" ({error})" if error else ""), flush=True)
    if not ok:
        print(f"job {job.id} was changed by someone else meanwhile; status left as is")
    stop.marker.unlink(missing_ok=True)
    following = next_queued_job(store)
    if following is not None:
        start_worker(workspace, following.id, following.log_path or None, following.kind)
    store.close()
    return 0 if status != "failed" else 1


class EventRecorder:
    """What `ProgressRecorder` does, as file events (spec mode: no store on this machine)."""

    def __init__(self, events: EventWriter, worker: dict[str, Any]) -> None:
        self.events = events
        self.worker = worker
        self._last = 0.0
        self._last_phase = ""
        self._last_message = ""
        self._replaced_from: int | None = None

    def __call__(self, progress: TrainingProgress) -> None:
        from dataclasses import replace

        data: dict[str, Any] = {}
        if progress.metrics:
            if self._replaced_from is None:
                self._replaced_from = progress.step
                data["reset_from"] = progress.step
            data.update(step=progress.step, metrics=progress.metrics)
        now = time.monotonic()
        if progress.phase != self._last_phase or now - self._last >= PROGRESS_EVERY_S:
            self._last, self._last_phase = now, progress.phase
            data["snapshot"] = replace(progress, worker=self.worker).to_dict()
        if data:
            self.events.write("progress", **data)
        if progress.message and progress.message != self._last_message:
            self._last_message = progress.message
            self.events.write("message", phase=progress.phase, message=progress.message)


def run_spec_job(spec_path: Path) -> int:
    """Train the job a spec file describes, reporting only through file events (a Slurm
    compute node: it never opens the store). Under torchrun only rank 0 writes events."""
    from tunelab.engine.training.job_spec import SpecStore, read_spec
    from tunelab.engine.training.loop import TrainingRequest, run_training

    spec = read_spec(spec_path)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    events = EventWriter(Path(spec.folder)) if main_rank else None
    info = WorkerInfo.current()
    worker = info.to_dict()
    slurm_id = os.environ.get("SLURM_JOB_ID")
    restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    if events is not None:
        events.write("started", host=info.host, pid=info.pid, worker=worker,
                     slurm_job_id=slurm_id, restart=restart)  # fmt: skip
    where = f"pid {info.pid} on {info.host}" + (f", Slurm job {slurm_id}" if slurm_id else "")
    print(f"job {spec.job_id}: {spec.config.get('method')} fine-tuning, {where}", flush=True)
    stop = StopSignal(Path(spec.stop_file))
    stop.install()
    config = TrainingConfig.from_dict(spec.config)
    request = TrainingRequest(
        config, spec.base.id, spec.dataset.id, spec.prompt_version.id, Path(spec.output_dir),
        spec.job_id,
    )  # fmt: skip
    recorder = EventRecorder(events, worker) if events is not None else None
    status, error, message = "failed", None, ""
    try:
        outcome = run_training(SpecStore(spec, events), request, recorder, stop).status
        status, message = _finished(outcome)
    except Exception as exc:
        error = _failure_line(exc)
        traceback.print_exc()
    if status == "cancelled" and not stop.marker.exists():
        # A signal without a cancel request: preemption or the time limit. The checkpoint is
        # saved; a requeued run (or `tunelab jobs resume`) continues from it.
        if events is not None:
            events.write("stopped", message="stopped by a signal (preempted or out of time); "
                         "checkpoint saved")  # fmt: skip
        print(f"job {spec.job_id}: stopped by a signal; checkpoint saved", flush=True)
        return 143
    if events is not None:
        events.write("result", status=status, error=error, message=message)
    print(f"job {spec.job_id}: {status}" + (f" ({error})" if error else ""), flush=True)
    return 0 if status != "failed" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunelab.engine.training.worker")
    parser.add_argument("--workspace", help="The workspace directory.")
    parser.add_argument("--rank-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--spec", type=Path, help="Train from this job spec, reporting through file events."
    )
    parser.add_argument("job_id", type=int, nargs="?")
    args = parser.parse_args(argv)
    os.umask(0o077)  # checkpoints, logs and job files: readable by their owner only
    if args.spec is not None:
        return run_spec_job(args.spec)
    if args.job_id is None:
        parser.error("give a job id (or --spec)")
    if not args.workspace:
        parser.error("--workspace is required with a job id")
    workspace = find_workspace(args.workspace)
    if args.rank_worker:
        return rank_worker(workspace, args.job_id)
    return run_job(workspace, args.job_id)


if __name__ == "__main__":
    sys.exit(main())

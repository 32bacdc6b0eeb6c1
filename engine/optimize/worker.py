"""The detached process behind a search job: `python -m tunelab.engine.optimize.worker`.

It claims its job in the shared queue, beats a heartbeat into the job row (so a killed
worker is noticed and `tunelab jobs resume` can run it again), stops after the current
evaluation on `tunelab jobs cancel` (a cancel event or SIGTERM), writes each evaluation's
progress into the job, and when done starts the next queued job, whatever its kind.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from datetime import UTC, datetime
from typing import Any

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.optimize.job import SearchJobProgress, request_from_config
from tunelab.engine.optimize.search import OptimizeProgress, OptimizeResult, optimize
from tunelab.engine.processes import (
    WorkerInfo,
    job_worker_command,
    max_running_jobs,
    start_detached,
)
from tunelab.store import Store, Workspace, find_workspace

HEARTBEAT_S = 5.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _beat(
    workspace: Workspace, job_id: int, since: int, stop: threading.Event, done: threading.Event
) -> None:
    """Heartbeat, and turn a cancel requested after the claim into a stop."""
    store = Store(workspace.db_path)
    try:
        while not done.wait(HEARTBEAT_S):
            store.update_job(job_id, heartbeat_at=_now())
            if any(
                e.kind == "cancel_requested" and e.id > since for e in store.job_events(job_id)[-5:]
            ):
                stop.set()
    except Exception as exc:  # the heartbeat must never kill the search
        print(f"heartbeat stopped: {exc}", flush=True)
    finally:
        store.close()


def result_message(result: OptimizeResult) -> str:
    """A finished search in the job's last event: candidates scored and the best."""
    best = (
        f"best {result.best_ref} {result.metric}={result.best_score:.4f}"
        if result.best_ref and result.best_score is not None
        else "no best"
    )
    return f"{len(result.candidates)} candidates, {best}"


def run_search_job(workspace: Workspace, job_id: int) -> int:
    """Claim job `job_id` and run its search; 0 when it finished or was cancelled."""
    store = workspace.open_store()
    info = WorkerInfo.current()
    worker = info.to_dict()
    job = store.claim_job(job_id, info.pid, info.host, {"worker": worker}, max_running_jobs())
    if job is None:
        print(
            f"job {job_id} not started here ({store.get_job(job_id).status}; "
            "the queue runs it later)"
        )
        return 0
    print(f"job {job.id}: prompt search, pid {info.pid} on {info.host}", flush=True)
    claimed_at = max(e.id for e in store.job_events(job.id) if e.kind == "running")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    done = threading.Event()
    beat = threading.Thread(
        target=_beat, args=(workspace, job.id, claimed_at, stop, done), daemon=True
    )
    beat.start()

    def record(progress: OptimizeProgress) -> None:
        snapshot = SearchJobProgress.of(progress)
        store.update_job(
            job.id, progress={**snapshot.to_dict(), "worker": worker}, heartbeat_at=_now()
        )
        print(
            f"[{progress.evaluations}] {snapshot.message}  "
            f"candidates {snapshot.step}/{snapshot.total_steps}",
            flush=True,
        )

    fields: dict[str, Any] = {}
    try:
        result = optimize(store, request_from_config(job.config), record, stop.is_set)
        if result.interrupted:
            status, message = (
                "cancelled",
                "cancelled: the scored candidates are kept; resume continues",
            )
        else:
            status, message = "succeeded", result_message(result)
    except (BadInputError, EngineError) as exc:
        status, message = "failed", str(exc).splitlines()[0]
        fields["error"] = message
    except Exception as exc:
        traceback.print_exc()
        status, message = (
            "failed",
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        )
        fields["error"] = message
    finally:
        done.set()
        beat.join(timeout=30)
    ok = store.transition_job(
        job.id, ["running"], (status, message), status=status, finished_at=_now(), **fields
    )
    print(f"job {job.id}: {status} ({message})", flush=True)
    if not ok:
        print(f"job {job.id} was changed by someone else meanwhile; status left as is")
    _start_next(workspace, store)
    store.close()
    return 0 if status != "failed" else 1


def _start_next(workspace: Workspace, store: Store) -> None:
    """Start the oldest queued job's worker, whatever its kind (the queue has one order)."""
    queued = sorted(store.list_jobs(["queued"], scheduler="local"), key=lambda j: j.id)
    if not queued:
        return
    following = queued[0]
    log = following.log_path or str(workspace.logs_dir / f"job-{following.id}.log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNELAB_WORKSPACE": str(workspace.root)}
    with open(log, "ab") as out:
        command = job_worker_command(workspace.root, following.id, following.kind)
        start_detached(command, out, workspace.root, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunelab.engine.optimize.worker")
    parser.add_argument("--workspace", required=True, help="The workspace directory.")
    parser.add_argument("job_id", type=int)
    args = parser.parse_args(argv)
    os.umask(0o077)  # logs and the database's side files: readable by their owner only
    return run_search_job(find_workspace(args.workspace), args.job_id)


if __name__ == "__main__":
    sys.exit(main())

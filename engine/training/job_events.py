"""File-based job events: what a remote worker reports instead of writing to the store.

A worker on a compute node never opens SQLite (the workspace database may sit on a network
filesystem, where SQLite's locking is unsafe). It appends JSON lines to
`<job folder>/events/<source>.jsonl`, one file per worker process, each event numbered. The
front ends ingest them (`ingest_job_events`) on `jobs list/show/follow` and the TUI's refresh:
each event is applied in the same transaction that records its `(job, source, seq)` key, so an
event read twice, by one front end or by two at once, is applied once.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from tunelab.store import Store, Workspace

EVENTS_DIR = "events"
STOP_FILE = "stop"


def job_dir(workspace: Workspace, job_id: int) -> Path:
    """The job's own folder: stop file, job spec, exported rows, scheduler script, events."""
    return workspace.jobs_dir / f"job-{job_id}"


def stop_file(workspace: Workspace, job_id: int) -> Path:
    """Its existence asks every process of the job (all DDP ranks) to checkpoint and stop."""
    return job_dir(workspace, job_id) / STOP_FILE


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class EventWriter:
    """Appends numbered events to this process's own file under `<folder>/events/`.

    The file name starts with the UTC time, so ingestion applies the events of a resubmitted
    job after those of its earlier runs. Each event is one `write` of a whole line, so a
    reader sees complete lines or a last line without its newline (which it leaves for later).
    """

    def __init__(self, folder: Path, source: str | None = None) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self.source = source or f"{stamp}-{socket.gethostname()}-{os.getpid()}"
        self.path = folder / EVENTS_DIR / f"{self.source}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.seq = 0

    def write(self, kind: str, **data: Any) -> None:
        """Append one event of `kind` with its JSON-serialisable data."""
        self.seq += 1
        line = json.dumps({**data, "seq": self.seq, "kind": kind, "at": _now()}, sort_keys=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def read_events(path: Path, after: int = 0) -> list[dict[str, Any]]:
    """The complete events of one file numbered above `after`, in order.

    A last line without its newline is still being written and is left for the next read;
    a line that is not an event object ends the read of that file (nothing after it is
    trusted).
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    events: list[dict[str, Any]] = []
    for line in text.split("\n")[:-1]:
        try:
            event = json.loads(line)
        except ValueError:
            break
        if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
            break
        if event["seq"] > after:
            events.append(event)
    return events


def ingest_job_events(store: Store, job_id: int, folder: Path) -> int:
    """Apply the new events of every worker file of a job to the store; returns how many.

    Args:
        store: the workspace store.
        job_id: the job the folder belongs to.
        folder: the job folder (events are under its `events/`).
    """
    return ingest_events(store, job_id, folder, lambda event: _apply(store, job_id, event))


def ingest_events(
    store: Store, job_id: int, folder: Path, apply: Callable[[dict[str, Any]], None]
) -> int:
    """Apply each new event of the job folder's worker files with `apply`, once: each runs in
    the transaction that records its `(job, source, seq)` key; returns how many were new.
    Every remote job kind (training, evaluation, search) ingests through this."""
    seen = store.ingested_seqs(job_id)
    applied = 0
    for path in sorted((folder / EVENTS_DIR).glob("*.jsonl")):
        source = path.stem
        for event in read_events(path, seen.get(source, 0)):
            kind = str(event.get("kind", ""))
            if store.ingest_event(job_id, source, int(event["seq"]), kind,
                                  functools.partial(apply, event)):  # fmt: skip
                applied += 1
    return applied


def _apply(store: Store, job_id: int, event: dict[str, Any]) -> None:
    """Make one event's change in the store (inside the ingestion transaction)."""
    kind = event.get("kind")
    at = str(event.get("at") or _now())
    if kind == "started":
        where = f"{event.get('host')} (pid {event.get('pid')})"
        slurm = event.get("slurm_job_id")
        if slurm:
            where += f", Slurm job {slurm}"
            if event.get("restart"):
                where += f" restart {event['restart']}"
        store.transition_job(
            job_id, ["queued", "running"], ("running", f"started on {where}"),
            status="running", pid=event.get("pid"), host=event.get("host"),
            progress={"worker": event.get("worker", {})}, error=None, started_at=at,
            finished_at=None, heartbeat_at=at,
        )  # fmt: skip
    elif kind == "progress":
        reset_from = event.get("reset_from")
        if isinstance(reset_from, int):
            store.delete_job_metrics(job_id, reset_from)
        metrics = event.get("metrics") or {}
        if metrics:
            store.add_job_metrics(job_id, int(event.get("step", 0)), metrics)
        snapshot = event.get("snapshot")
        if isinstance(snapshot, dict) and store.get_job(job_id).status == "running":
            store.update_job(job_id, progress=_real_best(store, job_id, snapshot), heartbeat_at=at)
    elif kind == "message":
        store.add_job_event(job_id, str(event.get("phase", "")), str(event.get("message", "")))
    elif kind == "checkpoint":
        _register_checkpoint(store, event.get("model") or {})
    elif kind == "best":
        model = _model_at_step(store, job_id, event.get("step"))
        if model is not None:
            store.mark_best_model(job_id, model)
    elif kind == "model_metrics":
        model = _model_at_step(store, job_id, event.get("step"))
        if model is not None:
            store.update_model_metrics(model, dict(event.get("metrics") or {}))
    elif kind == "stopped":
        store.add_job_event(job_id, "stopped", str(event.get("message", "")))
    elif kind == "result":
        status = str(event.get("status"))
        error = event.get("error")
        changes: dict[str, Any] = {"status": status, "finished_at": at}
        if error:
            changes["error"] = str(error)
        message = str(error or event.get("message") or status)
        store.transition_job(job_id, ["queued", "running"], (status, message), **changes)


def _register_checkpoint(store: Store, fields_: dict[str, Any]) -> None:
    from tunelab.store import NewModel

    known = {f.name for f in fields(NewModel)}
    new = NewModel(**{k: v for k, v in fields_.items() if k in known})
    record = store.add_model(new, exist_ok=True)
    if new.metrics and record.metrics != new.metrics:
        store.update_model_metrics(record.id, dict(new.metrics))


def _model_at_step(store: Store, job_id: int, step: object) -> int | None:
    for model in store.models_of_job(job_id):
        if model.step == step:
            return model.id
    return None


def _real_best(store: Store, job_id: int, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot with its best checkpoint's store id (the worker only knows its step)."""
    best = snapshot.get("best")
    if isinstance(best, dict) and "step" in best:
        model = _model_at_step(store, job_id, best.get("step"))
        snapshot = {**snapshot, "best": {**best, "model_id": model}}
    return snapshot

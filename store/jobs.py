"""Fine-tuning jobs: status, progress, events and metric series, written by the job process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import NotFoundError, StoreError
from .records import Job, JobEvent, MetricPoint

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
_UPDATABLE = {
    "status", "pid", "host", "progress", "error", "started_at", "finished_at", "heartbeat_at",
    "output_dir", "log_path", "config", "scheduler_job_id", "scheduler_state",
}  # fmt: skip
SCHEDULERS = ("local", "slurm")


def _job_from_row(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        method=row["method"],
        base_model_id=row["base_model_id"],
        dataset_id=row["dataset_id"],
        prompt_version_id=row["prompt_version_id"],
        config=loads(row["config"], {}),
        progress=loads(row["progress"], {}),
        pid=row["pid"],
        host=row["host"],
        gpus=row["gpus"],
        output_dir=row["output_dir"],
        log_path=row["log_path"],
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        heartbeat_at=row["heartbeat_at"],
        scheduler=row.get("scheduler") or "local",
        scheduler_job_id=row.get("scheduler_job_id"),
        scheduler_state=row.get("scheduler_state") or "",
    )


class JobStore(StoreBase):
    def create_job(
        self,
        method: str,
        config: dict[str, Any],
        base_model_id: int | None,
        dataset_id: int | None,
        prompt_version_id: int | None,
        gpus: int = 0,
        kind: str = "finetune",
        scheduler: str = "local",
    ) -> Job:
        if scheduler not in SCHEDULERS:
            raise StoreError(f"job scheduler must be one of {', '.join(SCHEDULERS)}")
        with self._write() as db:
            job_id = (
                db.table("jobs")
                .insert(
                    {
                        "kind": kind,
                        "status": "queued",
                        "method": method,
                        "base_model_id": base_model_id,
                        "dataset_id": dataset_id,
                        "prompt_version_id": prompt_version_id,
                        "config": dumps(config),
                        "progress": "{}",
                        "gpus": gpus,
                        "scheduler": scheduler,
                        "created_at": utc_now(),
                    }
                )
                .last_pk
            )
            db.table("job_events").insert(
                {"job_id": job_id, "at": utc_now(), "kind": "queued", "message": "job created"}
            )
        return self.get_job(int(job_id or 0))

    def job_ids(self) -> list[str]:
        return [str(r["id"]) for r in self._query("SELECT id FROM jobs ORDER BY id")]

    def get_job(self, job_id: int) -> Job:
        row = self._one("SELECT * FROM jobs WHERE id = ?", [job_id])
        if row is None:
            raise NotFoundError("job", str(job_id), self.job_ids()[-20:])
        return _job_from_row(row)

    def list_jobs(
        self, statuses: Iterable[str] | None = None, scheduler: str | None = None
    ) -> list[Job]:
        """Jobs newest first, optionally only those in `statuses` or run by `scheduler`."""
        where: list[str] = []
        params: list[Any] = []
        if statuses is not None:
            wanted = list(statuses)
            where.append(f"status IN ({','.join('?' * len(wanted))})")
            params += wanted
        if scheduler is not None:
            where.append("scheduler = ?")
            params.append(scheduler)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(f"SELECT * FROM jobs{clause} ORDER BY id DESC", params)
        return [_job_from_row(r) for r in rows]

    def ingest_event(
        self, job_id: int, source: str, seq: int, kind: str, apply: Callable[[], object]
    ) -> bool:
        """Apply event `seq` of `source` (a remote worker's event file) once: `apply` runs in
        the same transaction that records the event, and not at all when it already was.

        Returns:
            True when the event was new and applied; False when it had been ingested before.
        """
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO job_ingested_events (job_id, source, seq, kind, "
                "ingested_at) VALUES (?, ?, ?, ?, ?)",
                [job_id, source, seq, kind, utc_now()],
            )
            if int(cursor.rowcount) != 1:
                return False
            apply()
            return True

    def ingested_seqs(self, job_id: int) -> dict[str, int]:
        """The highest ingested event number of each event source of a job."""
        rows = self._query(
            "SELECT source, MAX(seq) AS seq FROM job_ingested_events WHERE job_id = ? "
            "GROUP BY source",
            [job_id],
        )
        return {r["source"]: int(r["seq"]) for r in rows}

    def update_job(self, job_id: int, event: tuple[str, str] | None = None, **fields: Any) -> Job:
        """Update a job's columns (and optionally log an event) in one transaction."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise StoreError(f"cannot update job fields {sorted(unknown)}")
        if "status" in fields and fields["status"] not in JOB_STATUSES:
            raise StoreError(f"job status must be one of {', '.join(JOB_STATUSES)}")
        for key in ("progress", "config"):
            if key in fields:
                fields[key] = dumps(fields[key])
        with self._write() as db:
            if fields:
                assignments = ", ".join(f"{k} = ?" for k in fields)
                db.execute(
                    f"UPDATE jobs SET {assignments} WHERE id = ?", [*fields.values(), job_id]
                )
            if event is not None:
                db.table("job_events").insert(
                    {"job_id": job_id, "at": utc_now(), "kind": event[0], "message": event[1]}
                )
        return self.get_job(job_id)

    def transition_job(
        self, job_id: int, from_statuses: Iterable[str], event: tuple[str, str], **fields: Any
    ) -> bool:
        """Change a job only if its status is one of `from_statuses` (compare-and-set)."""
        allowed = list(from_statuses)
        with self._write():
            row = self._one("SELECT status FROM jobs WHERE id = ?", [job_id])
            if row is None or row["status"] not in allowed:
                return False
            self.update_job(job_id, event=event, **fields)
            return True

    def add_job_event(self, job_id: int, kind: str, message: str) -> None:
        with self._write() as db:
            db.table("job_events").insert(
                {"job_id": job_id, "at": utc_now(), "kind": kind, "message": message}
            )

    def job_events(self, job_id: int) -> list[JobEvent]:
        rows = self._query("SELECT * FROM job_events WHERE job_id = ? ORDER BY id", [job_id])
        return [JobEvent(r["id"], r["job_id"], r["at"], r["kind"], r["message"]) for r in rows]

    def add_job_metrics(self, job_id: int, step: int, values: dict[str, float]) -> None:
        now = utc_now()
        with self._write() as db:
            db.table("job_metrics").insert_all(
                {"job_id": job_id, "step": step, "name": k, "value": float(v), "at": now}
                for k, v in values.items()
            )

    def delete_job_metrics(self, job_id: int, from_step: int) -> int:
        """Drop a job's metric points at `from_step` and later (a resumed job replays those
        steps); returns how many went."""
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM job_metrics WHERE job_id = ? AND step >= ?", [job_id, from_step]
            )
            return int(cursor.rowcount)

    def job_metrics(self, job_id: int, name: str | None = None) -> list[MetricPoint]:
        sql = "SELECT step, name, value, at FROM job_metrics WHERE job_id = ?"
        params: list[Any] = [job_id]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        rows = self._query(sql + " ORDER BY step, id", params)
        return [MetricPoint(r["step"], r["name"], r["value"], r["at"]) for r in rows]

    def claim_job(
        self, job_id: int, pid: int, host: str, progress: dict[str, Any], max_running: int = 1
    ) -> Job | None:
        """Atomically start a queued job if fewer than `max_running` jobs run and no older job
        is still queued (first in, first out); None otherwise.

        The check and the update share one write transaction, so two workers racing for the
        queue never both start a job, and a later job never overtakes an earlier one whose
        worker is slow to start (that worker, or the one that finishes first, starts it).
        """
        with self._write():
            row = self._one("SELECT status FROM jobs WHERE id = ?", [job_id])
            if row is None or row["status"] != "queued":
                return None
            older = self._scalar(
                "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND id < ? "
                "AND scheduler = 'local'",
                [job_id],
            )
            if older:
                return None
            running = self._scalar(
                "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND scheduler = 'local'"
            )
            if running >= max_running:
                return None
            now = utc_now()
            self.update_job(
                job_id,
                event=("running", f"started as pid {pid} on {host}"),
                status="running",
                pid=pid,
                host=host,
                progress=progress,
                error=None,
                started_at=now,
                finished_at=None,
                heartbeat_at=now,
            )
        return self.get_job(job_id)

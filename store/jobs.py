"""Fine-tuning jobs: status, progress, events and metric series, written by the job process."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import NotFoundError, StoreError
from .records import Job, JobEvent, MetricPoint

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
_UPDATABLE = {
    "status", "pid", "host", "progress", "error", "started_at", "finished_at", "heartbeat_at",
    "output_dir", "log_path", "config",
}  # fmt: skip


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
    ) -> Job:
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

    def list_jobs(self, statuses: Iterable[str] | None = None) -> list[Job]:
        if statuses is None:
            rows = self._query("SELECT * FROM jobs ORDER BY id DESC")
        else:
            wanted = list(statuses)
            marks = ",".join("?" * len(wanted))
            rows = self._query(
                f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY id DESC", wanted
            )
        return [_job_from_row(r) for r in rows]

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
                "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND id < ?", [job_id]
            )
            if older:
                return None
            running = self._scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'")
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

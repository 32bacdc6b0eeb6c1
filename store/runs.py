"""Evaluation runs, their per-example outputs, aggregate metrics and human ratings."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import NotFoundError, StoreError
from .records import NewRunOutput, ProbeRequest, Run, RunOutput

_RUN_SELECT = (
    "SELECT r.*, "
    "(SELECT COUNT(*) FROM run_outputs o WHERE o.run_id = r.id) AS rows_done, "
    "(SELECT COUNT(*) FROM run_outputs o WHERE o.run_id = r.id AND o.cached = 1) AS cached_rows, "
    "p.name || '@' || v.version AS prompt_ref, m.name AS model_name, d.name AS dataset_name "
    "FROM runs r JOIN prompt_versions v ON v.id = r.prompt_version_id "
    "JOIN prompts p ON p.id = v.prompt_id JOIN models m ON m.id = r.model_id "
    "JOIN datasets d ON d.id = r.dataset_id"
)


def _run_from_row(row: dict[str, Any]) -> Run:
    return Run(
        id=row["id"],
        prompt_version_id=row["prompt_version_id"],
        model_id=row["model_id"],
        dataset_id=row["dataset_id"],
        split=row["split"],
        row_limit=row["row_limit"],
        sample_seed=row["sample_seed"],
        settings=loads(row["settings"], {}),
        scoring=row["scoring"],
        metric_names=loads(row["metric_names"], []),
        status=row["status"],
        rows_total=row["rows_total"],
        metrics=loads(row["metrics"], {}),
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        rows_done=row["rows_done"],
        cached_rows=row["cached_rows"],
        prompt_ref=row["prompt_ref"],
        model_name=row["model_name"],
        dataset_name=row["dataset_name"],
        pid=row.get("pid"),
        host=row.get("host"),
        pid_start=row.get("pid_start"),
        samples=row.get("samples") or 1,
        device=row.get("device"),
    )


def _this_process() -> dict[str, Any]:
    """pid, host and start time (clock ticks since boot, Linux) of the calling process."""
    pid = os.getpid()
    start = None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        start = int(text[text.rfind(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        pass
    return {"pid": pid, "host": socket.gethostname(), "pid_start": start}


def insert_run_outputs(db: Database, run_id: int, outputs: Sequence[NewRunOutput]) -> int:
    """Insert scored rows inside the caller's write transaction; a stored row index is skipped.

    Returns:
        how many rows were written.
    """
    now = utc_now()
    before = db.conn.total_changes
    for out in outputs:
        db.execute(
            "INSERT OR IGNORE INTO run_outputs (run_id, row_idx, row_id, rendered_prompt, "
            "output, prediction, reference, scores, latency_ms, tokens_in, tokens_out, "
            "cached, created_at, batch_ms, batch_rows, reference_answer, answer_found) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                run_id,
                out.row_idx,
                out.row_id,
                out.rendered_prompt,
                out.output,
                out.prediction,
                out.reference,
                dumps(out.scores),
                out.latency_ms,
                out.tokens_in,
                out.tokens_out,
                int(out.cached),
                now,
                out.batch_ms,
                out.batch_rows,
                out.reference_answer,
                None if out.answer_found is None else int(out.answer_found),
            ],
        )
    return int(db.conn.total_changes - before)


def _output_from_row(row: dict[str, Any]) -> RunOutput:
    return RunOutput(
        id=row["id"],
        run_id=row["run_id"],
        row_idx=row["row_idx"],
        row_id=row["row_id"],
        rendered_prompt=row["rendered_prompt"],
        output=row["output"],
        prediction=row["prediction"],
        reference=row["reference"],
        scores=loads(row["scores"], {}),
        latency_ms=row["latency_ms"],
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
        cached=bool(row["cached"]),
        created_at=row["created_at"],
        rating=row.get("rating"),
        batch_ms=row.get("batch_ms"),
        batch_rows=row.get("batch_rows"),
        reference_answer=row.get("reference_answer"),
        answer_found=None if row.get("answer_found") is None else bool(row["answer_found"]),
    )


class RunStore(StoreBase):
    def create_run(
        self,
        prompt_version_id: int,
        model_id: int,
        dataset_id: int,
        split: str,
        rows_total: int,
        settings: dict[str, Any],
        scoring: str = "generate",
        metric_names: Sequence[str] = (),
        row_limit: int | None = None,
        sample_seed: int | None = None,
        samples: int = 1,
    ) -> Run:
        with self._write() as db:
            run_id = (
                db.table("runs")
                .insert(
                    {
                        "prompt_version_id": prompt_version_id,
                        "model_id": model_id,
                        "dataset_id": dataset_id,
                        "split": split,
                        "row_limit": row_limit,
                        "sample_seed": sample_seed,
                        "settings": dumps(settings),
                        "scoring": scoring,
                        "metric_names": dumps(list(metric_names)),
                        "status": "running",
                        "rows_total": rows_total,
                        "metrics": "{}",
                        "started_at": utc_now(),
                        "samples": samples,
                        **_this_process(),
                    }
                )
                .last_pk
            )
        return self.get_run(int(run_id or 0))

    def run_ids(self) -> list[str]:
        return [str(r["id"]) for r in self._query("SELECT id FROM runs ORDER BY id")]

    def get_run(self, run_id: int) -> Run:
        row = self._one(_RUN_SELECT + " WHERE r.id = ?", [run_id])
        if row is None:
            raise NotFoundError("run", str(run_id), self.run_ids()[-20:])
        return _run_from_row(row)

    def list_runs(
        self,
        dataset_id: int | None = None,
        prompt_id: int | None = None,
        model_id: int | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        where: list[str] = []
        params: list[Any] = []
        if dataset_id is not None:
            where.append("r.dataset_id = ?")
            params.append(dataset_id)
        if prompt_id is not None:
            where.append("v.prompt_id = ?")
            params.append(prompt_id)
        if model_id is not None:
            where.append("r.model_id = ?")
            params.append(model_id)
        sql = _RUN_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY r.id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_run_from_row(r) for r in self._query(sql, params)]

    def add_run_outputs(self, run_id: int, outputs: Sequence[NewRunOutput]) -> int:
        """Append scored examples; a row index already stored is skipped (resume never duplicates).

        Returns:
            how many rows were written.
        """
        with self._write() as db:
            return insert_run_outputs(db, run_id, outputs)

    def set_run_device(self, run_id: int, device: str) -> None:
        """Record the device the run's model runs on (what its throughput is priced at)."""
        with self._write() as db:
            db.table("runs").update(run_id, {"device": device})

    def done_row_indices(self, run_id: int) -> set[int]:
        return {
            r["row_idx"]
            for r in self._query("SELECT row_idx FROM run_outputs WHERE run_id = ?", [run_id])
        }

    def run_outputs(self, run_id: int) -> list[RunOutput]:
        rows = self._query(
            "SELECT o.*, (SELECT rating FROM ratings WHERE run_output_id = o.id "
            "ORDER BY id DESC LIMIT 1) AS rating FROM run_outputs o WHERE o.run_id = ? "
            "ORDER BY o.row_idx",
            [run_id],
        )
        return [_output_from_row(r) for r in rows]

    def add_probe_requests(self, run_id: int, requests: Sequence[ProbeRequest]) -> None:
        """Record a run's latency probe, replacing any earlier one (a probe is taken whole)."""
        now = utc_now()
        with self._write() as db:
            db.execute("DELETE FROM latency_probes WHERE run_id = ?", [run_id])
            for r in requests:
                db.execute(
                    "INSERT INTO latency_probes (run_id, seq, row_idx, ttft_ms, total_ms, "
                    "tokens_in, tokens_out, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    [run_id, r.seq, r.row_idx, r.ttft_ms, r.total_ms, r.tokens_in,
                     r.tokens_out, now],
                )  # fmt: skip

    def probe_requests(self, run_id: int) -> list[ProbeRequest]:
        """A run's latency probe in request order; empty when none was taken."""
        rows = self._query(
            "SELECT seq, row_idx, total_ms, ttft_ms, tokens_in, tokens_out FROM latency_probes "
            "WHERE run_id = ? ORDER BY seq",
            [run_id],
        )
        return [ProbeRequest(**r) for r in rows]

    def finish_run(
        self,
        run_id: int,
        status: str,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Run:
        if status not in ("succeeded", "failed", "interrupted", "running"):
            raise StoreError(f"bad run status {status!r}")
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, metrics = ?, error = ?, finished_at = ? WHERE id = ?",
                [status, dumps(metrics or {}), error, utc_now(), run_id],
            )
            db.execute("DELETE FROM run_metrics WHERE run_id = ?", [run_id])
            for name, value in (metrics or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    db.execute(
                        "INSERT INTO run_metrics (run_id, name, value) VALUES (?, ?, ?)",
                        [run_id, name, float(value)],
                    )
        return self.get_run(run_id)

    def reopen_run(self, run_id: int) -> Run:
        owner = _this_process()
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, pid = ?, "
                "host = ?, pid_start = ? WHERE id = ?",
                [owner["pid"], owner["host"], owner["pid_start"], run_id],
            )
        return self.get_run(run_id)

    def hand_run_to(
        self, run_id: int, pid: int, host: str, pid_start: int | None, from_pid: int | None
    ) -> bool:
        """Record process `pid` as a running run's owner, if `from_pid` still owns it (a
        launcher handing its run to the detached worker it started); True when changed."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE runs SET pid = ?, host = ?, pid_start = ? "
                "WHERE id = ? AND status = 'running' AND pid IS ?",
                [pid, host, pid_start, run_id, from_pid],
            )
            return cursor.rowcount > 0

    def hand_run_to_scheduler(self, run_id: int, where: str) -> None:
        """Record that a scheduler's job evaluates a running run, not a process here: no pid
        (so no process check marks it interrupted), `where` as its host."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET pid = NULL, pid_start = NULL, host = ? WHERE id = ?",
                [where, run_id],
            )

    def running_runs(self) -> list[Run]:
        rows = self._query(_RUN_SELECT + " WHERE r.status = 'running' ORDER BY r.id")
        return [_run_from_row(r) for r in rows]

    def mark_run_interrupted(self, run_id: int, pid: int | None, error: str) -> bool:
        """Mark a run whose process vanished as interrupted, unless someone else took it over
        meanwhile (its status or pid changed); True when it was changed."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE runs SET status = 'interrupted', error = ?, finished_at = ? "
                "WHERE id = ? AND status = 'running' AND pid IS ?",
                [error, utc_now(), run_id, pid],
            )
            return cursor.rowcount > 0

    def rate_output(
        self, run_output_id: int, rating: int, note: str = "", author: str | None = None
    ) -> None:
        """Record a 1-5 rating of one output; `author` defaults to `default_author()`."""
        from .feedback import default_author

        if not 1 <= rating <= 5:
            raise StoreError(f"a rating is 1 to 5, not {rating}")
        with self._write() as db:
            if self._one("SELECT id FROM run_outputs WHERE id = ?", [run_output_id]) is None:
                raise NotFoundError("run output", str(run_output_id))
            db.table("ratings").insert(
                {
                    "run_output_id": run_output_id,
                    "rating": rating,
                    "note": note,
                    "created_at": utc_now(),
                    "author": author or default_author(),
                }
            )

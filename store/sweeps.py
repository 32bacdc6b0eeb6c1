"""Hyperparameter sweeps and their trials, and the movable model labels a sweep sets.

The Optuna study of a sweep lives in its own journal file (`Sweep.study_path`); these rows are
what tunelab shows and resumes from: which job runs which trial, and how each trial ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import NotFoundError, StoreError
from .models import _model_from_row
from .records import JSONDict, Model

SWEEP_STATUSES = ("running", "finished", "failed", "cancelled")
TRIAL_STATES = ("running", "complete", "pruned", "failed")
_SWEEP_UPDATABLE = {"status", "pid", "host", "worker", "log_path", "best_trial", "best_model_id",
                    "error", "finished_at", "study_path"}  # fmt: skip
_TRIAL_UPDATABLE = {"job_id", "state", "value", "pruned_at_step", "error", "finished_at"}


@dataclass(frozen=True)
class NewSweep:
    """What a sweep is asked to do (the columns set once, at creation)."""

    method: str
    base_model_id: int
    dataset_id: int
    prompt_version_id: int
    space: str
    metric: str
    direction: str
    n_trials: int
    parallel: int
    pruner: str
    seed: int
    config: JSONDict
    study_path: str
    scheduler: str = "local"
    slurm: JSONDict = field(default_factory=dict)


@dataclass(frozen=True)
class Sweep:
    id: int
    status: str
    method: str
    base_model_id: int
    dataset_id: int
    prompt_version_id: int
    space: str
    metric: str
    direction: str
    n_trials: int
    parallel: int
    pruner: str
    seed: int
    scheduler: str
    slurm: JSONDict
    config: JSONDict
    study_path: str
    log_path: str
    pid: int | None
    host: str | None
    worker: JSONDict
    best_trial: int | None
    best_model_id: int | None
    error: str | None
    created_at: str
    finished_at: str | None


@dataclass(frozen=True)
class SweepTrial:
    sweep_id: int
    number: int
    job_id: int | None
    params: JSONDict
    state: str
    value: float | None
    pruned_at_step: int | None
    error: str | None
    created_at: str
    finished_at: str | None


def _sweep_from_row(row: dict[str, Any]) -> Sweep:
    data = dict(row)
    for key in ("slurm", "config", "worker"):
        data[key] = loads(row[key], {})
    return Sweep(**data)


def _trial_from_row(row: dict[str, Any]) -> SweepTrial:
    return SweepTrial(**{**row, "params": loads(row["params"], {})})


class SweepStore(StoreBase):
    def create_sweep(self, new: NewSweep) -> Sweep:
        record: dict[str, Any] = dict(new.__dict__)
        record["config"] = dumps(new.config)
        record["slurm"] = dumps(new.slurm)
        record.update(status="running", created_at=utc_now())
        with self._write() as db:
            sweep_id = db.table("sweeps").insert(record).last_pk
        return self.get_sweep(int(sweep_id or 0))

    def get_sweep(self, sweep_id: int) -> Sweep:
        row = self._one("SELECT * FROM sweeps WHERE id = ?", [sweep_id])
        if row is None:
            known = [str(r["id"]) for r in self._query("SELECT id FROM sweeps ORDER BY id")]
            raise NotFoundError("sweep", str(sweep_id), known[-20:])
        return _sweep_from_row(row)

    def list_sweeps(self) -> list[Sweep]:
        """Sweeps, newest first."""
        return [_sweep_from_row(r) for r in self._query("SELECT * FROM sweeps ORDER BY id DESC")]

    def update_sweep(self, sweep_id: int, **fields: Any) -> Sweep:
        unknown = set(fields) - _SWEEP_UPDATABLE
        if unknown:
            raise StoreError(f"cannot update sweep fields {sorted(unknown)}")
        if "status" in fields and fields["status"] not in SWEEP_STATUSES:
            raise StoreError(f"sweep status must be one of {', '.join(SWEEP_STATUSES)}")
        if "worker" in fields:
            fields["worker"] = dumps(fields["worker"])
        with self._write() as db:
            assignments = ", ".join(f"{k} = ?" for k in fields)
            db.execute(
                f"UPDATE sweeps SET {assignments} WHERE id = ?", [*fields.values(), sweep_id]
            )
        return self.get_sweep(sweep_id)

    def add_sweep_trial(self, sweep_id: int, number: int, params: dict[str, Any]) -> SweepTrial:
        """Record a trial Optuna has just asked for, before its job exists."""
        with self._write() as db:
            db.table("sweep_trials").insert(
                {"sweep_id": sweep_id, "number": number, "job_id": None, "params": dumps(params),
                 "state": "running", "created_at": utc_now()}
            )  # fmt: skip
        return self.sweep_trial(sweep_id, number)

    def sweep_trial(self, sweep_id: int, number: int) -> SweepTrial:
        row = self._one(
            "SELECT * FROM sweep_trials WHERE sweep_id = ? AND number = ?", [sweep_id, number]
        )
        if row is None:
            raise NotFoundError("trial", f"{sweep_id}/{number}")
        return _trial_from_row(row)

    def sweep_trials(self, sweep_id: int) -> list[SweepTrial]:
        rows = self._query("SELECT * FROM sweep_trials WHERE sweep_id = ? ORDER BY number",
                           [sweep_id])  # fmt: skip
        return [_trial_from_row(r) for r in rows]

    def update_sweep_trial(self, sweep_id: int, number: int, **fields: Any) -> SweepTrial:
        unknown = set(fields) - _TRIAL_UPDATABLE
        if unknown:
            raise StoreError(f"cannot update trial fields {sorted(unknown)}")
        if "state" in fields and fields["state"] not in TRIAL_STATES:
            raise StoreError(f"trial state must be one of {', '.join(TRIAL_STATES)}")
        with self._write() as db:
            assignments = ", ".join(f"{k} = ?" for k in fields)
            db.execute(
                f"UPDATE sweep_trials SET {assignments} WHERE sweep_id = ? AND number = ?",
                [*fields.values(), sweep_id, number],
            )
        return self.sweep_trial(sweep_id, number)

    def finish_sweep(
        self, sweep_id: int, best_trial: int | None, best_model_id: int | None, labels: list[str]
    ) -> Sweep:
        """Mark a sweep finished and point `labels` at its best checkpoint, in one transaction."""
        with self._write() as db:
            now = utc_now()
            db.execute(
                "UPDATE sweeps SET status = 'finished', best_trial = ?, best_model_id = ?, "
                "finished_at = ? WHERE id = ?",
                [best_trial, best_model_id, now, sweep_id],
            )
            if best_model_id is not None:
                for label in labels:
                    db.execute(
                        "INSERT INTO model_labels (label, model_id, set_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (label) DO UPDATE SET model_id = excluded.model_id, "
                        "set_at = excluded.set_at",
                        [label, best_model_id, now],
                    )
        return self.get_sweep(sweep_id)

    def labelled_model(self, label: str) -> Model | None:
        """The model a label points at (`swept`, `sweep-3-best`), None when no such label."""
        row = self._one(
            "SELECT m.* FROM model_labels l JOIN models m ON m.id = l.model_id WHERE l.label = ?",
            [label],
        )
        return None if row is None else _model_from_row(row)

    def model_labels(self, model_id: int) -> list[str]:
        rows = self._query("SELECT label FROM model_labels WHERE model_id = ? ORDER BY label",
                           [model_id])  # fmt: skip
        return [r["label"] for r in rows]

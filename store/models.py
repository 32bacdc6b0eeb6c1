"""Models: base models and fine-tuned artifacts with their lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import ConflictError, NotFoundError
from .records import Model


@dataclass(frozen=True)
class NewModel:
    name: str
    kind: str
    source: str
    path: str
    base_model_id: int | None = None
    method: str | None = None
    training_dataset_id: int | None = None
    training_dataset_fingerprint: str | None = None
    prompt_version_id: int | None = None
    training_config: dict[str, Any] = field(default_factory=dict)
    job_id: int | None = None
    step: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    size_bytes: int | None = None
    fingerprint: str = ""


def _model_from_row(row: dict[str, Any]) -> Model:
    return Model(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        source=row["source"],
        path=row["path"],
        base_model_id=row["base_model_id"],
        method=row["method"],
        training_dataset_id=row["training_dataset_id"],
        training_dataset_fingerprint=row["training_dataset_fingerprint"],
        prompt_version_id=row["prompt_version_id"],
        training_config=loads(row["training_config"], {}),
        job_id=row["job_id"],
        step=row["step"],
        metrics=loads(row["metrics"], {}),
        is_best=bool(row["is_best"]),
        size_bytes=row["size_bytes"],
        fingerprint=row["fingerprint"],
        created_at=row["created_at"],
    )


class ModelStore(StoreBase):
    def model_names(self) -> list[str]:
        return [r["name"] for r in self._query("SELECT name FROM models ORDER BY name")]

    def add_model(self, new: NewModel, exist_ok: bool = False) -> Model:
        with self._write() as db:
            existing = self._one("SELECT * FROM models WHERE name = ?", [new.name])
            if existing is not None:
                if exist_ok:
                    return _model_from_row(existing)
                raise ConflictError(
                    f"a model named {new.name!r} already exists; choose another name"
                )
            record = {k: v for k, v in new.__dict__.items()}
            record["training_config"] = dumps(new.training_config)
            record["metrics"] = dumps(new.metrics)
            record["created_at"] = utc_now()
            model_id = db.table("models").insert(record).last_pk
        return self.get_model_by_id(int(model_id or 0))

    def get_model(self, name: str) -> Model:
        row = self._one("SELECT * FROM models WHERE name = ?", [name])
        if row is None:
            raise NotFoundError("model", name, self.model_names())
        return _model_from_row(row)

    def get_model_by_id(self, model_id: int) -> Model:
        row = self._one("SELECT * FROM models WHERE id = ?", [model_id])
        if row is None:
            raise NotFoundError("model id", str(model_id))
        return _model_from_row(row)

    def list_models(self) -> list[Model]:
        return [_model_from_row(r) for r in self._query("SELECT * FROM models ORDER BY id")]

    def models_of_job(self, job_id: int) -> list[Model]:
        rows = self._query("SELECT * FROM models WHERE job_id = ? ORDER BY step, id", [job_id])
        return [_model_from_row(r) for r in rows]

    def mark_best_model(self, job_id: int, model_id: int) -> None:
        """Mark one checkpoint of a job as its best, clearing the mark on the others."""
        with self._write() as db:
            db.execute("UPDATE models SET is_best = 0 WHERE job_id = ?", [job_id])
            db.execute("UPDATE models SET is_best = 1 WHERE id = ?", [model_id])

    def update_model_metrics(self, model_id: int, metrics: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("UPDATE models SET metrics = ? WHERE id = ?", [dumps(metrics), model_id])

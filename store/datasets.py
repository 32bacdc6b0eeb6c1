"""Datasets, their splits, and the stored rows that run outputs join against."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import ConflictError, NotFoundError
from .records import Dataset, DatasetRow, Split


@dataclass(frozen=True)
class NewSplit:
    name: str
    rows: Sequence[dict[str, Any]]
    fingerprint: str


@dataclass(frozen=True)
class NewDataset:
    name: str
    source: str
    fingerprint: str
    splits: list[NewSplit]
    task: str = "generation"
    input_columns: list[str] = field(default_factory=list)
    reference_column: str | None = None
    labels: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    card: str = ""
    answer_rule: str | None = None


class DatasetStore(StoreBase):
    def dataset_names(self) -> list[str]:
        return [r["name"] for r in self._query("SELECT name FROM datasets ORDER BY name")]

    def _dataset_from_row(self, row: dict[str, Any]) -> Dataset:
        splits = [
            Split(r["id"], r["dataset_id"], r["name"], r["row_count"], r["fingerprint"])
            for r in self._query(
                "SELECT * FROM dataset_splits WHERE dataset_id = ? ORDER BY id", [row["id"]]
            )
        ]
        return Dataset(
            id=row["id"],
            name=row["name"],
            source=row["source"],
            fingerprint=row["fingerprint"],
            task=row["task"],
            input_columns=loads(row["input_columns"], []),
            reference_column=row["reference_column"],
            labels=loads(row["labels"], []),
            metrics=loads(row["metrics"], []),
            card=row["card"],
            created_at=row["created_at"],
            splits=splits,
            answer_rule=row.get("answer_rule"),
        )

    def add_dataset(self, new: NewDataset, replace: bool = False) -> Dataset:
        """Store a dataset with all its rows in one transaction."""
        with self._write() as db:
            existing = self._one("SELECT id FROM datasets WHERE name = ?", [new.name])
            if existing is not None:
                if not replace:
                    raise ConflictError(
                        f"a dataset named {new.name!r} already exists; choose another --name"
                    )
                self._refuse_if_used(new.name, existing["id"], "replace")
                db.execute("DELETE FROM datasets WHERE id = ?", [existing["id"]])
            dataset_id = (
                db.table("datasets")
                .insert(
                    {
                        "name": new.name,
                        "source": new.source,
                        "fingerprint": new.fingerprint,
                        "task": new.task,
                        "input_columns": dumps(new.input_columns),
                        "reference_column": new.reference_column,
                        "labels": dumps(new.labels),
                        "metrics": dumps(new.metrics),
                        "card": new.card,
                        "answer_rule": new.answer_rule,
                        "created_at": utc_now(),
                    }
                )
                .last_pk
            )
            for split in new.splits:
                split_id = (
                    db.table("dataset_splits")
                    .insert(
                        {
                            "dataset_id": dataset_id,
                            "name": split.name,
                            "row_count": len(split.rows),
                            "fingerprint": split.fingerprint,
                        }
                    )
                    .last_pk
                )
                db.table("dataset_rows").insert_all(
                    (
                        {"split_id": split_id, "idx": i, "data": dumps(row)}
                        for i, row in enumerate(split.rows)
                    ),
                    batch_size=500,
                )
        return self.get_dataset(new.name)

    def get_dataset(self, name: str) -> Dataset:
        row = self._one("SELECT * FROM datasets WHERE name = ?", [name])
        if row is None:
            raise NotFoundError("dataset", name, self.dataset_names())
        return self._dataset_from_row(row)

    def get_dataset_by_id(self, dataset_id: int) -> Dataset:
        row = self._one("SELECT * FROM datasets WHERE id = ?", [dataset_id])
        if row is None:
            raise NotFoundError("dataset id", str(dataset_id))
        return self._dataset_from_row(row)

    def list_datasets(self) -> list[Dataset]:
        return [
            self._dataset_from_row(r) for r in self._query("SELECT * FROM datasets ORDER BY name")
        ]

    def dataset_rows(
        self,
        dataset: str,
        split: str,
        indices: Iterable[int] | None = None,
        limit: int | None = None,
    ) -> list[DatasetRow]:
        """Rows of a split in index order, optionally only the given indices or the first N."""
        split_id = self.get_dataset(dataset).split(split).id
        if indices is not None:
            wanted = sorted(set(indices))
            out: list[DatasetRow] = []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                out.extend(
                    DatasetRow(r["id"], r["idx"], loads(r["data"]))
                    for r in self._iter(
                        f"SELECT * FROM dataset_rows WHERE split_id = ? AND idx IN ({marks}) "
                        "ORDER BY idx",
                        [split_id, *chunk],
                    )
                )
            return out
        sql = "SELECT * FROM dataset_rows WHERE split_id = ? ORDER BY idx"
        params: list[Any] = [split_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [DatasetRow(r["id"], r["idx"], loads(r["data"])) for r in self._iter(sql, params)]

    def dataset_users(self, dataset_id: int) -> list[str]:
        """What refers to a dataset's rows: runs, fine-tuning jobs and the models they made."""
        users: list[str] = []
        for label, sql in (
            ("run", "SELECT id AS ref FROM runs WHERE dataset_id = ? ORDER BY id"),
            ("job", "SELECT id AS ref FROM jobs WHERE dataset_id = ? ORDER BY id"),
            ("model", "SELECT name AS ref FROM models WHERE training_dataset_id = ? ORDER BY id"),
        ):
            refs = [str(r["ref"]) for r in self._query(sql, [dataset_id])]
            if refs:
                shown = ", ".join(refs[:5]) + (
                    f" and {len(refs) - 5} more" if len(refs) > 5 else ""
                )
                users.append(f"{label}{'s' if len(refs) > 1 else ''} {shown}")
        return users

    def _refuse_if_used(self, name: str, dataset_id: int, action: str) -> None:
        # Runs join their outputs to the stored rows; replacing them would orphan every score.
        users = self.dataset_users(dataset_id)
        if users:
            fix = "add the new data under another --name" if action == "replace" else "keep it"
            raise ConflictError(
                f"cannot {action} dataset {name!r}: {'; '.join(users)} use its rows; {fix}"
            )

    def delete_dataset(self, name: str) -> None:
        dataset = self.get_dataset(name)
        with self._write() as db:
            self._refuse_if_used(name, dataset.id, "delete")
            db.execute("DELETE FROM datasets WHERE id = ?", [dataset.id])

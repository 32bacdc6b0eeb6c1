"""Robustness suites: a clean run, its perturbations, and the run each perturbation became."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import NotFoundError

SUITE_STATES = ("running", "finished", "failed", "interrupted")
ITEM_KINDS = ("input", "prompt")


@dataclass(frozen=True)
class NewRobustnessItem:
    """One perturbation of a suite before it runs: a derived dataset or a child version."""

    perturbation: str
    kind: str
    detail: str = ""
    dataset_id: int | None = None
    """The perturbed copy of the clean run's rows (input perturbations)."""
    prompt_version_id: int | None = None
    """The changed prompt version (prompt perturbations)."""


@dataclass(frozen=True)
class RobustnessItem:
    id: int
    suite_id: int
    position: int
    perturbation: str
    kind: str
    detail: str
    dataset_id: int | None
    prompt_version_id: int | None
    run_id: int | None
    """The perturbed run, once it was started."""


@dataclass(frozen=True)
class RobustnessSuite:
    id: int
    clean_run_id: int
    seed: int
    metric: str
    settings: dict[str, Any]
    status: str
    error: str | None
    created_at: str
    finished_at: str | None
    items: list[RobustnessItem] = field(default_factory=list)


class RobustnessStore(StoreBase):
    def add_robustness_suite(
        self,
        clean_run_id: int,
        seed: int,
        metric: str,
        settings: dict[str, Any],
        items: Sequence[NewRobustnessItem],
    ) -> RobustnessSuite:
        """Store a suite and its items in one transaction, status `running`."""
        with self._write() as db:
            suite_id = int(
                db.table("robustness_suites")
                .insert(
                    {
                        "clean_run_id": clean_run_id,
                        "seed": seed,
                        "metric": metric,
                        "settings": dumps(settings),
                        "status": "running",
                        "created_at": utc_now(),
                    }
                )
                .last_pk
                or 0
            )
            db.table("robustness_items").insert_all(
                {
                    "suite_id": suite_id,
                    "position": position,
                    "perturbation": item.perturbation,
                    "kind": item.kind,
                    "detail": item.detail,
                    "dataset_id": item.dataset_id,
                    "prompt_version_id": item.prompt_version_id,
                }
                for position, item in enumerate(items)
            )
        return self.get_robustness_suite(suite_id)

    def set_robustness_item_run(self, item_id: int, run_id: int) -> None:
        with self._write() as db:
            db.execute("UPDATE robustness_items SET run_id = ? WHERE id = ?", [run_id, item_id])

    def finish_robustness_suite(
        self, suite_id: int, status: str, error: str | None = None
    ) -> RobustnessSuite:
        if status not in SUITE_STATES:
            raise ValueError(f"suite status must be one of {', '.join(SUITE_STATES)}")
        with self._write() as db:
            db.execute(
                "UPDATE robustness_suites SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                [status, error, None if status == "running" else utc_now(), suite_id],
            )
        return self.get_robustness_suite(suite_id)

    def get_robustness_suite(self, suite_id: int) -> RobustnessSuite:
        row = self._one("SELECT * FROM robustness_suites WHERE id = ?", [suite_id])
        if row is None:
            known = [f"s{r['id']}" for r in self._query("SELECT id FROM robustness_suites")]
            raise NotFoundError("robustness suite", f"s{suite_id}", known)
        return self._suite_from_row(row)

    def list_robustness_suites(self, clean_run_id: int | None = None) -> list[RobustnessSuite]:
        """Suites newest first, optionally only those of one clean run."""
        sql, params = "SELECT * FROM robustness_suites", []
        if clean_run_id is not None:
            sql, params = sql + " WHERE clean_run_id = ?", [clean_run_id]
        return [self._suite_from_row(r) for r in self._query(sql + " ORDER BY id DESC", params)]

    def _suite_from_row(self, row: dict[str, Any]) -> RobustnessSuite:
        items = [
            RobustnessItem(**r)
            for r in self._query(
                "SELECT * FROM robustness_items WHERE suite_id = ? ORDER BY position", [row["id"]]
            )
        ]
        return RobustnessSuite(
            id=row["id"],
            clean_run_id=row["clean_run_id"],
            seed=row["seed"],
            metric=row["metric"],
            settings=dict(loads(row["settings"], {})),
            status=row["status"],
            error=row["error"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            items=items,
        )

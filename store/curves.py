"""Data-efficiency curves: a curve's settings and its points (size, repeat, job, run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import NotFoundError, StoreError

PROMPT_RUN_SOURCES = ("given", "best", "evaluated")


@dataclass(frozen=True)
class Curve:
    """A data-efficiency curve as stored: what every point trains and evaluates with."""

    id: int
    base_model_id: int
    dataset_id: int
    prompt_version_id: int
    method: str
    train_split: str
    eval_split: str
    eval_limit: int | None
    """Evaluate on the first N rows of the evaluation split (None: all of them)."""
    metric: str
    seed: int
    repeats: int
    confidence: float
    config: dict[str, Any]
    """The training config every point's job starts from (its seed and splits replaced)."""
    launch: dict[str, Any]
    """How its jobs are launched: `gpus`, `given` (the settings set explicitly), `slurm`."""
    prompt_run_id: int | None
    prompt_run_source: str
    """'given' (--against), 'best' (the best finished prompt run), 'evaluated' (by the driver)."""
    driver: dict[str, Any]
    """The driver process that evaluates the points (pid, host, start_ticks, boot_id)."""
    log_path: str
    error: str | None
    created_at: str
    dataset_name: str = ""
    base_model_name: str = ""
    prompt_ref: str = ""


@dataclass(frozen=True)
class CurveEntry:
    """One size and repeat of a curve: its subset, its training job and its evaluation run."""

    id: int
    curve_id: int
    size: int
    repeat: int
    seed: int
    """Seed of the permutation the subset is a prefix of (also the job's training seed)."""
    subset_dataset_id: int
    subset_split: str
    job_id: int | None
    run_id: int | None
    device: str | None
    """'cpu' or 'gpu': what the job trained on, as it was priced."""
    train_seconds: float | None
    train_cost: float | None
    error: str | None
    created_at: str
    finished_at: str | None


@dataclass(frozen=True)
class NewCurveEntry:
    size: int
    repeat: int
    seed: int
    subset_dataset_id: int
    subset_split: str


@dataclass(frozen=True)
class NewCurve:
    base_model_id: int
    dataset_id: int
    prompt_version_id: int
    method: str
    train_split: str
    eval_split: str
    eval_limit: int | None
    metric: str
    seed: int
    repeats: int
    config: dict[str, Any]
    prompt_run_id: int | None
    prompt_run_source: str
    confidence: float = 0.95
    launch: dict[str, Any] = field(default_factory=dict)


_CURVE_SELECT = (
    "SELECT c.*, d.name AS dataset_name, m.name AS base_model_name, "
    "p.name || '@' || v.version AS prompt_ref FROM curves c "
    "JOIN datasets d ON d.id = c.dataset_id JOIN models m ON m.id = c.base_model_id "
    "JOIN prompt_versions v ON v.id = c.prompt_version_id JOIN prompts p ON p.id = v.prompt_id"
)


def _curve(row: dict[str, Any]) -> Curve:
    return Curve(
        id=row["id"],
        base_model_id=row["base_model_id"],
        dataset_id=row["dataset_id"],
        prompt_version_id=row["prompt_version_id"],
        method=row["method"],
        train_split=row["train_split"],
        eval_split=row["eval_split"],
        eval_limit=row["eval_limit"],
        metric=row["metric"],
        seed=row["seed"],
        repeats=row["repeats"],
        confidence=row["confidence"],
        config=loads(row["config"], {}),
        launch=loads(row["launch"], {}),
        prompt_run_id=row["prompt_run_id"],
        prompt_run_source=row["prompt_run_source"],
        driver=loads(row["driver"], {}),
        log_path=row["log_path"],
        error=row["error"],
        created_at=row["created_at"],
        dataset_name=row["dataset_name"],
        base_model_name=row["base_model_name"],
        prompt_ref=row["prompt_ref"],
    )


def _entry(row: dict[str, Any]) -> CurveEntry:
    return CurveEntry(**{k: row[k] for k in CurveEntry.__dataclass_fields__})


_ENTRY_FIELDS = frozenset({"job_id", "run_id", "device", "train_seconds", "train_cost", "error",
                           "finished_at"})  # fmt: skip
_CURVE_FIELDS = frozenset({"prompt_run_id", "prompt_run_source", "log_path", "error"})


class CurveStore(StoreBase):
    def create_curve(self, new: NewCurve, entries: Sequence[NewCurveEntry]) -> Curve:
        """Store a curve and its planned points in one transaction."""
        if new.prompt_run_source not in PROMPT_RUN_SOURCES:
            raise StoreError(f"prompt_run_source must be one of {', '.join(PROMPT_RUN_SOURCES)}")
        with self._write() as db:
            values = {**new.__dict__, "config": dumps(new.config), "launch": dumps(new.launch)}
            curve_id = int(
                db.table("curves").insert({**values, "created_at": utc_now()}).last_pk or 0
            )
            self._insert_entries(curve_id, entries)
        return self.get_curve(curve_id)

    def add_curve_entries(self, curve_id: int, entries: Sequence[NewCurveEntry]) -> None:
        """Plan more points on an existing curve (in one transaction)."""
        with self._write():
            self._insert_entries(curve_id, entries)

    def _insert_entries(self, curve_id: int, entries: Sequence[NewCurveEntry]) -> None:
        now = utc_now()
        self.db.table("curve_points").insert_all(
            [{**e.__dict__, "curve_id": curve_id, "created_at": now} for e in entries]
        )

    def curve_ids(self) -> list[str]:
        return [str(r["id"]) for r in self._query("SELECT id FROM curves ORDER BY id")]

    def get_curve(self, curve_id: int) -> Curve:
        row = self._one(_CURVE_SELECT + " WHERE c.id = ?", [curve_id])
        if row is None:
            raise NotFoundError("curve", str(curve_id), self.curve_ids()[-20:])
        return _curve(row)

    def list_curves(
        self, dataset_id: int | None = None, base_model_id: int | None = None
    ) -> list[Curve]:
        """Curves newest first, optionally only those on a dataset or base model."""
        where: list[str] = []
        params: list[Any] = []
        if dataset_id is not None:
            where.append("c.dataset_id = ?")
            params.append(dataset_id)
        if base_model_id is not None:
            where.append("c.base_model_id = ?")
            params.append(base_model_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return [
            _curve(r) for r in self._query(_CURVE_SELECT + clause + " ORDER BY c.id DESC", params)
        ]

    def curve_entries(self, curve_id: int) -> list[CurveEntry]:
        """A curve's points, by size then repeat."""
        rows = self._query(
            "SELECT * FROM curve_points WHERE curve_id = ? ORDER BY size, repeat", [curve_id]
        )
        return [_entry(r) for r in rows]

    def update_curve_entry(self, entry_id: int, **fields: Any) -> CurveEntry:
        unknown = set(fields) - _ENTRY_FIELDS
        if unknown:
            raise StoreError(f"cannot set {', '.join(sorted(unknown))} on a curve point")
        with self._write() as db:
            db.table("curve_points").update(entry_id, fields)
        row = self._one("SELECT * FROM curve_points WHERE id = ?", [entry_id])
        assert row is not None
        return _entry(row)

    def update_curve(self, curve_id: int, **fields: Any) -> Curve:
        unknown = set(fields) - _CURVE_FIELDS
        if unknown:
            raise StoreError(f"cannot set {', '.join(sorted(unknown))} on a curve")
        with self._write() as db:
            db.table("curves").update(curve_id, fields)
        return self.get_curve(curve_id)

    def claim_curve_driver(
        self,
        curve_id: int,
        me: dict[str, Any],
        holder_alive: Callable[[dict[str, Any]], bool],
    ) -> bool:
        """Record `me` as the curve's driver unless a live process already is; True if claimed.

        The read and the write share one BEGIN IMMEDIATE transaction, so of two drivers
        started at once exactly one proceeds.
        """
        with self._write() as db:
            current = self.get_curve(curve_id).driver
            if current and current != me and holder_alive(current):
                return False
            db.table("curves").update(curve_id, {"driver": dumps(me)})
        return True

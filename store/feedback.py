"""Human feedback beyond ratings: corrected outputs, blind A/B preferences, export lineage."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Any

from .connection import dumps, loads, utc_now
from .datasets import DatasetStore, NewDataset
from .errors import NotFoundError, StoreError
from .records import Dataset

CHOICES = ("a", "b", "tie")
"""What a blind A/B judgement can say: A is better, B is better, or neither."""


@dataclass(frozen=True)
class Correction:
    """The output that should have been produced for one run output, one version of it."""

    id: int
    run_output_id: int
    version: int
    text: str
    author: str
    created_at: str


@dataclass(frozen=True)
class Preference:
    """A blind A/B judgement between two runs' outputs of the same dataset row."""

    id: int
    output_a_id: int
    output_b_id: int
    choice: str
    author: str
    created_at: str
    run_a_id: int
    run_b_id: int
    dataset_id: int
    split: str
    row_idx: int


AUTHOR_ENV = "TUNELAB_USER"
"""Names who gives feedback when `--by` does not (a shared login, a container)."""


def default_author() -> str:
    """Who is giving feedback when nobody says: `TUNELAB_USER`, else the login name (or
    'unknown' without one)."""
    named = os.environ.get(AUTHOR_ENV, "").strip()
    if named:
        return named
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError):  # no login name in a bare container
        return "unknown"


_OUTPUT_PLACE = (
    "SELECT o.id, o.run_id, o.row_idx, r.dataset_id, r.split FROM run_outputs o "
    "JOIN runs r ON r.id = o.run_id WHERE o.id = ?"
)

_PREFERENCE_SELECT = (
    "SELECT p.*, a.run_id AS run_a_id, b.run_id AS run_b_id, ra.dataset_id AS dataset_id, "
    "ra.split AS split, a.row_idx AS row_idx FROM preferences p "
    "JOIN run_outputs a ON a.id = p.output_a_id JOIN run_outputs b ON b.id = p.output_b_id "
    "JOIN runs ra ON ra.id = a.run_id"
)


class FeedbackStore(DatasetStore):
    def _output_place(self, run_output_id: int) -> dict[str, Any]:
        row = self._one(_OUTPUT_PLACE, [run_output_id])
        if row is None:
            raise NotFoundError("run output", str(run_output_id))
        return row

    def correct_output(
        self, run_output_id: int, text: str, author: str | None = None
    ) -> Correction:
        """Store a new version of the output that should have been produced; the original and
        every earlier version stay as they were.

        Args:
            run_output_id: the output being corrected (`run_outputs.id`).
            text: the corrected output; must not be empty.
            author: who wrote it; default the login name.
        """
        if not text.strip():
            raise StoreError("a correction needs text; give --text with the output it should be")
        with self._write() as db:
            self._output_place(run_output_id)
            version = 1 + int(
                self._scalar(
                    "SELECT COALESCE(MAX(version), 0) FROM corrections WHERE run_output_id = ?",
                    [run_output_id],
                )
            )
            correction_id = (
                db.table("corrections")
                .insert(
                    {
                        "run_output_id": run_output_id,
                        "version": version,
                        "text": text,
                        "author": author or default_author(),
                        "created_at": utc_now(),
                    }
                )
                .last_pk
            )
        row = self._one("SELECT * FROM corrections WHERE id = ?", [correction_id])
        assert row is not None
        return Correction(**row)

    def corrections(self, run_output_id: int) -> list[Correction]:
        """Every version of an output's correction, oldest first."""
        rows = self._query(
            "SELECT * FROM corrections WHERE run_output_id = ? ORDER BY version", [run_output_id]
        )
        return [Correction(**r) for r in rows]

    def latest_corrections(self, run_id: int) -> dict[int, Correction]:
        """The newest correction of each corrected output of a run, by run output id."""
        rows = self._query(
            "SELECT c.* FROM corrections c JOIN run_outputs o ON o.id = c.run_output_id "
            "WHERE o.run_id = ? AND c.version = (SELECT MAX(version) FROM corrections "
            "WHERE run_output_id = c.run_output_id)",
            [run_id],
        )
        return {r["run_output_id"]: Correction(**r) for r in rows}

    def rating_authors(self, run_id: int) -> dict[int, str]:
        """Who gave the newest rating of each rated output of a run, by run output id (the
        rating `run_outputs` reports is that newest one)."""
        rows = self._query(
            "SELECT g.run_output_id, g.author FROM ratings g JOIN run_outputs o "
            "ON o.id = g.run_output_id WHERE o.run_id = ? ORDER BY g.id",
            [run_id],
        )
        return {r["run_output_id"]: r["author"] for r in rows}

    def add_preference(
        self, output_a_id: int, output_b_id: int, choice: str, author: str | None = None
    ) -> Preference:
        """Record a blind A/B judgement between two runs' outputs of the same dataset row.

        Args:
            output_a_id: the output shown as A.
            output_b_id: the output shown as B; another run's output of the same row.
            choice: `a`, `b` or `tie`.
            author: who judged; default the login name.
        """
        if choice not in CHOICES:
            raise StoreError(f"a preference is one of {', '.join(CHOICES)}, not {choice!r}")
        with self._write() as db:
            a = self._output_place(output_a_id)
            b = self._output_place(output_b_id)
            if a["run_id"] == b["run_id"]:
                raise StoreError("a preference compares outputs of two different runs")
            if (a["dataset_id"], a["split"], a["row_idx"]) != (
                b["dataset_id"],
                b["split"],
                b["row_idx"],
            ):
                raise StoreError(
                    f"outputs {output_a_id} and {output_b_id} answer different dataset rows; "
                    "a preference compares two answers to the same row"
                )
            preference_id = (
                db.table("preferences")
                .insert(
                    {
                        "output_a_id": output_a_id,
                        "output_b_id": output_b_id,
                        "choice": choice,
                        "author": author or default_author(),
                        "created_at": utc_now(),
                    }
                )
                .last_pk
            )
        found = self._one(_PREFERENCE_SELECT + " WHERE p.id = ?", [preference_id])
        assert found is not None
        return Preference(**found)

    def preferences(self, run_ids: tuple[int, int] | None = None) -> list[Preference]:
        """Recorded preferences, oldest first; with `run_ids`, only those between the two runs
        (in either order)."""
        sql = _PREFERENCE_SELECT
        params: list[Any] = []
        if run_ids is not None:
            sql += " WHERE (a.run_id = ? AND b.run_id = ?) OR (a.run_id = ? AND b.run_id = ?)"
            params = [run_ids[0], run_ids[1], run_ids[1], run_ids[0]]
        return [Preference(**r) for r in self._query(sql + " ORDER BY p.id", params)]

    def add_exported_dataset(self, new: NewDataset, lineage: dict[str, Any]) -> Dataset:
        """Store an exported dataset and its lineage in one transaction (never one alone)."""
        with self._write() as db:
            dataset = self.add_dataset(new)
            db.table("dataset_lineage").insert(
                {"dataset_id": dataset.id, "lineage": dumps(lineage), "created_at": utc_now()}
            )
        return dataset

    def dataset_lineage(self, dataset_id: int) -> dict[str, Any] | None:
        """What an exported dataset was made from; None for a dataset added from files."""
        value = self._scalar(
            "SELECT lineage FROM dataset_lineage WHERE dataset_id = ?", [dataset_id]
        )
        return None if value is None else dict(loads(value, {}))

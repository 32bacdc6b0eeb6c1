"""Samples 2..N of a self-consistency run's rows, written with the row's first sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .records import NewRunOutput
from .runs import insert_run_outputs

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class NewRunSample:
    """One extra sample of a row, as the evaluation engine hands it to the store."""

    row_idx: int
    sample_idx: int
    """1 for the second sample, 2 for the third...; the first sample is the row's output."""
    output: str
    prediction: str | None = None
    answer_found: bool | None = None
    scores: JSONDict = field(default_factory=dict)
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cached: bool = False
    batch_ms: float | None = None
    batch_rows: int | None = None


@dataclass(frozen=True)
class RunSample:
    """One stored extra sample of a row (see `NewRunSample` for the fields)."""

    id: int
    run_id: int
    row_idx: int
    sample_idx: int
    output: str
    prediction: str | None
    answer_found: bool | None
    scores: JSONDict
    latency_ms: float
    tokens_in: int
    tokens_out: int
    cached: bool
    batch_ms: float | None
    batch_rows: int | None
    created_at: str


def _sample_from_row(row: dict[str, Any]) -> RunSample:
    found = row["answer_found"]
    return RunSample(
        id=row["id"],
        run_id=row["run_id"],
        row_idx=row["row_idx"],
        sample_idx=row["sample_idx"],
        output=row["output"],
        prediction=row["prediction"],
        answer_found=None if found is None else bool(found),
        scores=loads(row["scores"], {}),
        latency_ms=row["latency_ms"],
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
        cached=bool(row["cached"]),
        batch_ms=row["batch_ms"],
        batch_rows=row["batch_rows"],
        created_at=row["created_at"],
    )


class SampleStore(StoreBase):
    def add_sampled_outputs(
        self, run_id: int, outputs: Sequence[NewRunOutput], samples: Sequence[NewRunSample]
    ) -> int:
        """Write rows (their first samples) and their other samples in one transaction, so a
        row counts as done only with all its samples; stored rows and samples are skipped.

        Returns:
            how many rows were written.
        """
        now = utc_now()
        with self._write() as db:
            written = insert_run_outputs(db, run_id, outputs)
            for s in samples:
                db.execute(
                    "INSERT OR IGNORE INTO run_samples (run_id, row_idx, sample_idx, output, "
                    "prediction, answer_found, scores, latency_ms, tokens_in, tokens_out, cached, "
                    "batch_ms, batch_rows, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [run_id, s.row_idx, s.sample_idx, s.output, s.prediction,
                     None if s.answer_found is None else int(s.answer_found), dumps(s.scores),
                     s.latency_ms, s.tokens_in, s.tokens_out, int(s.cached), s.batch_ms,
                     s.batch_rows, now],
                )  # fmt: skip
            return written

    def run_samples(self, run_id: int) -> list[RunSample]:
        """A run's extra samples by row, then sample index; empty for a single-sample run."""
        rows = self._query(
            "SELECT * FROM run_samples WHERE run_id = ? ORDER BY row_idx, sample_idx", [run_id]
        )
        return [_sample_from_row(r) for r in rows]

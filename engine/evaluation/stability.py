"""Where a prompt is fragile: a vote run's rows ranked by how much their samples disagree.

Rows are ranked by agreement (lowest first), then by the entropy of their answers (highest
first), then by how many distinct answers they have, then by row index, so the order is the
same every time. Each row's samples are grouped by answer (as the vote groups them), with an
example output per answer and whether that answer is right.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.answers import answers_match
from tunelab.engine.evaluation.self_consistency import SampledRow, run_labels, sampled_rows
from tunelab.store import Store


@dataclass(frozen=True)
class AnswerGroup:
    """The samples of one row that gave one answer."""

    answer: str | None
    """The answer as its first sample wrote it; None for samples that gave no answer."""
    count: int
    sample_indices: tuple[int, ...]
    """Which samples gave it (0 is the row's first sample)."""
    example_output: str
    """The raw output of the first sample that gave it."""
    correct: bool | None
    """Whether the answer equals the reference's; None when the row has no reference."""


@dataclass(frozen=True)
class RowStability:
    """One row of a vote run: its vote, how far its samples agree, and their answers."""

    row_idx: int
    reference: str | None
    """The reference's final answer (or the reference itself without an answer rule)."""
    vote: str | None
    agreement: float
    """Share of the row's samples that gave the voted answer."""
    entropy: float
    """Bits of spread over the row's answers (0 when every sample agrees)."""
    groups: tuple[AnswerGroup, ...]
    """Most common answer first."""


@dataclass(frozen=True)
class RunStability:
    """A vote run's rows, most fragile first."""

    run_id: int
    samples: int
    """Samples per row."""
    rows_scored: int
    """Rows the run has scored (the ranking may show fewer: see `limit`)."""
    unstable_rows: int
    """Rows whose samples do not all give the same answer."""
    mean_agreement: float
    rows: tuple[RowStability, ...]


def _correct(answer: str | None, reference: str | None, labels: bool) -> bool | None:
    if reference is None:
        return None
    if answer is None:
        return False
    return answer == reference if labels else answers_match(answer, reference)


def _row(row: SampledRow, labels: bool) -> RowStability:
    out = row.output
    reference = out.reference_answer if out.reference_answer is not None else out.reference
    groups = tuple(
        AnswerGroup(
            g.answer,
            g.count,
            g.sample_indices,
            row.texts[g.first_sample],
            _correct(g.answer, reference, labels),
        )
        for g in row.vote.groups
    )
    vote = row.vote
    return RowStability(out.row_idx, reference, vote.answer, vote.agreement, vote.entropy, groups)


def run_stability(store: Store, run_id: int, limit: int | None = None) -> RunStability:
    """A vote run's rows ranked by disagreement, each with its samples grouped by answer.

    Args:
        store: the workspace store.
        run_id: a run made with `--samples N` (N >= 2).
        limit: show only the `limit` most fragile rows; None shows all.

    Raises:
        BadInputError: a single-sample run, or a limit below 1.
    """
    if limit is not None and limit < 1:
        raise BadInputError(f"--limit must be at least 1, got {limit}")
    run = store.get_run(run_id)
    if run.samples < 2:
        raise BadInputError(
            f"run {run_id} has one sample per row; the stability view needs a run made with "
            "--samples N (N >= 2) and a temperature above 0"
        )
    labels, _ = run_labels(store, run)
    rows = [
        _row(r, labels)
        for r in sampled_rows(store.run_outputs(run_id), store.run_samples(run_id), labels)
    ]
    rows.sort(key=lambda r: (r.agreement, -r.entropy, -len(r.groups), r.row_idx))
    return RunStability(
        run_id=run.id,
        samples=run.samples,
        rows_scored=len(rows),
        unstable_rows=sum(1 for r in rows if len(r.groups) > 1),
        mean_agreement=sum(r.agreement for r in rows) / len(rows) if rows else 0.0,
        rows=tuple(rows[:limit] if limit is not None else rows),
    )

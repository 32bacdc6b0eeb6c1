"""The body of `tunelab run show ID --stability`: a vote run's most fragile rows, as a table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from tunelab.cli_common import console

if TYPE_CHECKING:
    from tunelab.engine.evaluation.stability import AnswerGroup, RunStability

EXAMPLE_CHARS = 70
"""How much of each answer's example output a terminal row shows."""


def answer_label(group: AnswerGroup) -> str:
    """An answer as a cell: the answer, or '(no answer)' for samples that gave none."""
    return "(no answer)" if group.answer is None else group.answer


def _right(group: AnswerGroup) -> str:
    return {True: "yes", False: "no", None: ""}[group.correct]


def print_stability(stability: RunStability) -> None:
    """A header line, then each row's answers (most common first) under its vote."""
    console.print(
        Text.assemble(
            (f"run {stability.run_id}", "bold"),
            f"  {stability.samples} samples per row · {stability.unstable_rows} of "
            f"{stability.rows_scored} rows disagree · mean agreement "
            f"{stability.mean_agreement:.2f}",
        )
    )
    if not stability.rows:
        console.print("no rows scored yet")
        return
    table = Table("row", "reference", "vote", "agree", "answer", "n", "right", "samples", "example")
    for row in stability.rows:
        for i, group in enumerate(row.groups):
            first = i == 0
            table.add_row(
                str(row.row_idx) if first else "",
                (row.reference or "") if first else "",
                ("(none)" if row.vote is None else row.vote) if first else "",
                f"{row.agreement:.2f}" if first else "",
                answer_label(group),
                str(group.count),
                _right(group),
                ",".join(str(s) for s in group.sample_indices),
                group.example_output[:EXAMPLE_CHARS].replace("\n", " "),
                end_section=i == len(row.groups) - 1,
            )
    console.print(table)

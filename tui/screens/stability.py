"""Stability: a vote run's rows ranked by disagreement, each row's samples grouped by answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.engine.api.types import RunStability
    from tunelab.engine.evaluation.stability import AnswerGroup, RowStability


def answer_text(answer: str | None) -> str:
    """An answer as the view shows it; samples that gave none read '(no answer)'."""
    return "(no answer)" if answer is None else answer


def _group_line(group: AnswerGroup) -> str:
    right = {True: " ✓", False: " ✗", None: ""}[group.correct]
    samples = ", ".join(str(i) for i in group.sample_indices)
    return (
        f"{group.count}× {answer_text(group.answer)}{right}  (samples {samples})\n"
        f"{group.example_output.strip()}"
    )


def row_detail(row: RowStability) -> str:
    """Every answer of one row, most common first, each with an example output."""
    head = (
        f"row {row.row_idx} · vote {answer_text(row.vote)} · reference {row.reference or '—'} · "
        f"agreement {row.agreement:.2f} · entropy {row.entropy:.2f} bits"
    )
    return "\n\n".join([head, *(_group_line(g) for g in row.groups)])


class StabilityModal(ModalScreen[None]):
    """Where a prompt is fragile: the rows whose samples disagree most come first."""

    CSS_PATH = "stability.tcss"
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="stability-close",
                tooltip="Close the stability view"),
    ]  # fmt: skip

    def __init__(self, stability: RunStability) -> None:
        super().__init__()
        self.stability = stability

    def compose(self) -> ComposeResult:
        s = self.stability
        with Vertical(classes="modal-box modal-wide"):
            yield Static(
                f"Run {s.run_id} stability · {s.samples} samples per row · {s.unstable_rows} of "
                f"{s.rows_scored} rows disagree · mean agreement {s.mean_agreement:.2f}",
                classes="modal-title",
                markup=False,
                id="stability-title",
            )
            yield NavTable(id="stability-table")
            with VerticalScroll(id="stability-scroll"):
                yield Static(self.detail_of(0), id="stability-detail", markup=False)
            yield Static("Escape closes · j/k move", classes="hint")

    def on_mount(self) -> None:
        table = self.query_one("#stability-table", NavTable)
        table.add_columns("Row", "Agreement", "Vote", "Reference", "Answers")
        for row in self.stability.rows:
            answers = " · ".join(f"{g.count}× {answer_text(g.answer)}" for g in row.groups)
            table.add_row(
                str(row.row_idx), f"{row.agreement:.2f}", answer_text(row.vote),
                row.reference or "—", answers, key=str(row.row_idx),
            )  # fmt: skip
        table.focus()

    def detail_of(self, index: int) -> str:
        """The answers of the row at `index` in the ranking."""
        rows = self.stability.rows
        return row_detail(rows[index]) if 0 <= index < len(rows) else "No rows scored yet."

    @on(DataTable.RowHighlighted, "#stability-table")
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.query_one("#stability-detail", Static).update(self.detail_of(event.cursor_row))

    def action_close(self) -> None:
        self.dismiss(None)

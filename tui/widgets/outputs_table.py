"""The per-example outputs of one run; 1-5 rates the selected output as a human rating."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.message import Message

from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from tunelab.store import Judgement
    from tunelab.store.records import RunOutput

PREVIEW_CHARS = 40


def _one_line(text: str | None, width: int = PREVIEW_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _rate(key: str) -> Binding:
    return Binding(key, f"rate({key})", f"Rate {key}", id=f"rate-{key}", show=key == "1",
                   tooltip=f"Rate the selected output {key} of 5")  # fmt: skip


class OutputsTable(NavTable):
    """Outputs with their scores; number keys 1-5 rate while this table has focus."""

    BINDINGS = [_rate(k) for k in "12345"]
    """Only active while the table is focused, so 1-5 switch screens everywhere else."""

    @dataclass
    class RatingChosen(Message):
        """The user pressed 1-5 on an output."""

        table: OutputsTable
        output_id: int
        rating: int

        @property
        def control(self) -> OutputsTable:
            return self.table

    def on_mount(self) -> None:
        self.add_columns("Row", "Output", "Reference", "Scores", "Rating", "Judge")

    def show_outputs(
        self, outputs: list[RunOutput], judgements: dict[int, Judgement] | None = None
    ) -> None:
        """Show a run's outputs, each with its newest judge score when it was judged."""
        keep = self.selected_key()
        self.clear()
        judged = judgements or {}
        for output in outputs:
            scores = " ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in output.scores.items()
            )
            self.add_row(
                str(output.row_idx), _one_line(output.output), _one_line(output.reference, 16),
                scores, stars(output.rating), judge_cell(judged.get(output.id)),
                key=str(output.id),
            )  # fmt: skip
        self.move_to_key(keep)

    def set_rating(self, output_id: int, rating: int) -> None:
        try:
            self.update_cell(str(output_id), self.ordered_columns[4].key, stars(rating))
        except Exception:
            pass

    def action_rate(self, rating: int) -> None:
        key = self.selected_key()
        if key is not None:
            self.post_message(self.RatingChosen(self, int(key), rating))


def stars(rating: int | None) -> str:
    """A 1-5 rating as stars, `—` unrated."""
    return "—" if rating is None else "★" * rating + "☆" * (5 - rating)


def judge_cell(judgement: Judgement | None) -> str:
    """A judge score as its number, `unparseable` when the reply had none, `—` unjudged."""
    if judgement is None:
        return "—"
    if judgement.score is None:
        return "unparseable"
    return f"{judgement.score}"

"""The per-example outputs of one run; `r` then 1-5 rates the selected output as a human rating.

Rating sits under a prefix so that 1-5 keep switching screens here as everywhere else: muscle
memory for screen switching never rates an output by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive

from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from tunelab.store import Judgement
    from tunelab.store.records import RunOutput

PREVIEW_CHARS = 40


def _one_line(text: str | None, width: int = PREVIEW_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


RATING_KEYS = "12345"


def _rate(key: str) -> Binding:
    return Binding(key, f"rate({key})", f"{key}★", id=f"rate-{key}",
                   tooltip=f"After r: rate the selected output {key} of 5")  # fmt: skip


class OutputsTable(NavTable):
    """Outputs with their scores; `r` then a number key 1-5 rates while this table has focus."""

    BINDINGS = [
        Binding("r", "start_rating", "Rate…", id="rate-prefix",
                tooltip="Rate the selected output: press r, then 1-5 (Escape cancels)"),
        *(_rate(k) for k in RATING_KEYS),
        Binding("escape", "cancel_rating", "Cancel rating", id="rate-cancel",
                tooltip="Leave the rating prefix without rating"),
    ]  # fmt: skip
    """1-5 and Escape are bound only while the `r` prefix is pending; otherwise 1-5 switch
    screens and Escape goes back, as everywhere else."""

    rating_pending: reactive[bool] = reactive(False, bindings=True)
    """True after `r`: the footer then shows 1-5 and the next 1-5 rates."""

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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("rate", "cancel_rating"):
            return self.rating_pending
        if action == "start_rating":
            return not self.rating_pending
        return True

    def action_start_rating(self) -> None:
        if self.selected_key() is not None:
            self.rating_pending = True

    def action_cancel_rating(self) -> None:
        self.rating_pending = False

    def action_rate(self, rating: int) -> None:
        self.rating_pending = False
        key = self.selected_key()
        if key is not None:
            self.post_message(self.RatingChosen(self, int(key), rating))

    def on_key(self, event: events.Key) -> None:
        """Any key but a rating key ends the prefix (a cursor move, a screen key)."""
        if self.rating_pending and event.key not in (*RATING_KEYS, "r", "escape"):
            self.rating_pending = False

    def on_blur(self) -> None:
        self.rating_pending = False


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

"""Asking before something that cannot be taken back: quitting while work runs, a cancel or
a stop (yes / no), leaving unsaved edits (save / discard / stay)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeVar

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.engine.api.types import Activity

AnswerT = TypeVar("AnswerT")
UnsavedChoice = Literal["save", "discard", "stay"]


class QuestionModal(ModalScreen[AnswerT]):
    """A question over the current screen, answered by a key (or a button); Escape always
    gives the answer that leaves things as they are.

    Subclasses declare the answers' bindings (each with an id, so they can be remapped) and,
    through `compose_answers`, any buttons between the question and the hint.
    """

    BOX_ID = "question-box"

    def __init__(self, question: str, detail: str | None, hint: str) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id=self.BOX_ID):
            yield Static(self.question, classes="modal-title", markup=False)
            if self.detail is not None:
                yield Static(self.detail, id="confirm-detail", markup=False)
            yield from self.compose_answers()
            yield Static(self.hint, classes="hint")

    def compose_answers(self) -> ComposeResult:
        """Hook: widgets for the answers (none: the keys in the hint are the answers)."""
        yield from ()

    def action_answer(self, answer: AnswerT) -> None:
        self.dismiss(answer)


class ConfirmModal(QuestionModal[bool]):
    """A question with two answers; y or Enter confirms, n or Escape keeps things as they are."""

    BOX_ID = "confirm-box"
    BINDINGS = [
        Binding("y", "confirm", "Yes", id="confirm-yes", tooltip="Do it"),
        Binding("n,escape", "refuse", "No", id="confirm-no", tooltip="Leave things as they are"),
    ]

    def __init__(self, question: str, detail: str, confirm_label: str, refuse_label: str) -> None:
        super().__init__(question, detail, "y or Enter on a button · n or Escape stays")
        self.confirm_label = confirm_label
        self.refuse_label = refuse_label

    def compose_answers(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Button(self.confirm_label, id="confirm-yes-button", variant="warning")
            yield Button(self.refuse_label, id="confirm-no-button", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#confirm-no-button", Button).focus()  # the safe answer is the default

    @on(Button.Pressed, "#confirm-yes-button")
    def action_confirm(self) -> None:
        self.action_answer(True)

    @on(Button.Pressed, "#confirm-no-button")
    def action_refuse(self) -> None:
        self.action_answer(False)


def running_summary(activity: Activity) -> str:
    """'2 evaluations and 1 job' style: what keeps running, counted from the store."""
    parts = [
        (activity.evaluations, "evaluation"),
        (activity.jobs_running + activity.jobs_queued, "fine-tuning job"),
        (activity.searches, "prompt search"),
        (activity.sweeps, "sweep"),
    ]
    named = [f"{count} {noun}{'s' if count != 1 else ''}" for count, noun in parts if count]
    if len(named) > 1:
        return ", ".join(named[:-1]) + " and " + named[-1]
    return named[0] if named else "nothing"


class QuitModal(ConfirmModal):
    """Quitting while evaluations or jobs run: they keep running; say so and how to come back."""

    def __init__(self, activity: Activity) -> None:
        what = running_summary(activity)
        verb = "keeps" if activity.total == 1 else "keep"
        super().__init__(
            "Quit tunelab?",
            f"{what} {verb} running in the background (separate processes). Reopen with "
            "`tunelab` in this workspace to follow them, or `tunelab run list` / "
            "`tunelab jobs list`.",
            "Quit — keeps running",
            "Stay",
        )


class UnsavedEditsModal(QuestionModal[UnsavedChoice]):
    """Unsaved edits are about to be left: `s` saves, `d` discards, Escape stays."""

    BOX_ID = "unsaved-box"
    BINDINGS = [
        Binding("s", "answer('save')", "Save", id="unsaved-save",
                tooltip="Save the edits as a new version, then go on"),
        Binding("d", "answer('discard')", "Discard", id="unsaved-discard",
                tooltip="Drop the edits and go on"),
        Binding("escape", "answer('stay')", "Stay", id="unsaved-stay",
                tooltip="Stay with the edits (nothing is lost)"),
    ]  # fmt: skip

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} has unsaved edits", None, "s save · d discard · Escape stay")
        self.what = what

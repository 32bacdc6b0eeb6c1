"""Asking before something that cannot be taken back: quitting while work runs, a cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.engine.api.types import Activity


class ConfirmModal(ModalScreen[bool]):
    """A question with two answers; y or Enter confirms, n or Escape keeps things as they are."""

    BINDINGS = [
        Binding("y", "confirm", "Yes", id="confirm-yes", tooltip="Do it"),
        Binding("n,escape", "refuse", "No", id="confirm-no", tooltip="Leave things as they are"),
    ]

    def __init__(self, question: str, detail: str, confirm_label: str, refuse_label: str) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.confirm_label = confirm_label
        self.refuse_label = refuse_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="confirm-box"):
            yield Static(self.question, classes="modal-title", markup=False)
            yield Static(self.detail, id="confirm-detail", markup=False)
            with Horizontal(classes="form-row"):
                yield Button(self.confirm_label, id="confirm-yes-button", variant="warning")
                yield Button(self.refuse_label, id="confirm-no-button", variant="primary")
            yield Static("y or Enter on a button · n or Escape stays", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#confirm-no-button", Button).focus()  # the safe answer is the default

    @on(Button.Pressed, "#confirm-yes-button")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no-button")
    def action_refuse(self) -> None:
        self.dismiss(False)


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

"""Asking before unsaved edits are left: save, discard or stay (yes/no questions are in
`quit_modal.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

if TYPE_CHECKING:
    from textual.app import ComposeResult

UnsavedChoice = Literal["save", "discard", "stay"]


class UnsavedEditsModal(ModalScreen[UnsavedChoice]):
    """Unsaved edits are about to be left: `s` saves, `d` discards, Escape stays."""

    BINDINGS = [
        Binding("s", "answer('save')", "Save", id="unsaved-save",
                tooltip="Save the edits as a new version, then go on"),
        Binding("d", "answer('discard')", "Discard", id="unsaved-discard",
                tooltip="Drop the edits and go on"),
        Binding("escape", "answer('stay')", "Stay", id="unsaved-stay",
                tooltip="Stay with the edits (nothing is lost)"),
    ]  # fmt: skip

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="unsaved-box"):
            yield Static(f"{self.what} has unsaved edits", classes="modal-title", markup=False)
            yield Static("s save · d discard · Escape stay", classes="hint")

    def action_answer(self, choice: UnsavedChoice) -> None:
        self.dismiss(choice)

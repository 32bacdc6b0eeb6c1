"""Small modals: ask for one line of text; show a long text (an error, a diff)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static, TextArea

if TYPE_CHECKING:
    from textual.app import ComposeResult


class AskTextModal(ModalScreen[str | None]):
    """One-line question; Enter answers, Escape cancels (returns None)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="modal-cancel", tooltip="Close without answering"),
    ]

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Static(self.question, classes="modal-title", markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="modal-input")
            yield Static("Enter to confirm · Escape to cancel", classes="hint")

    @on(Input.Submitted)
    def answer(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextViewModal(ModalScreen[None]):
    """A read-only, scrollable text (a diff or a full output); Escape closes it."""

    BINDINGS = [
        Binding("escape,q", "close", "Close", id="modal-close", tooltip="Close this view"),
        Binding("c", "copy", "Copy", id="modal-copy", tooltip="Copy the text (OSC 52)"),
    ]

    def __init__(self, title: str, text: str, language: str | None = None) -> None:
        super().__init__()
        self.view_title = title
        self.text = text
        self.language = language

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box modal-wide"):
            yield Static(self.view_title, classes="modal-title", markup=False)
            yield TextArea(self.text, read_only=True, language=self.language, id="modal-text")
            yield Static("Escape closes · c copies", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("Copied to the clipboard", timeout=2)

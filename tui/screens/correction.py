"""The correction editor: write the output a run should have produced; saved as a new version."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tunelab.store import Correction
    from tunelab.store.records import RunOutput


class CorrectionModal(ModalScreen[str | None]):
    """Edit the corrected output of one run output; ctrl+s returns the text, Escape None.

    The editor starts from the newest correction (or the model's own output), so a second
    correction edits the first; the store keeps both as versions.
    """

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="correction-save",
                tooltip="Save the corrected output as a new version"),
        Binding("escape", "cancel", "Cancel", id="correction-cancel",
                tooltip="Close without saving"),
    ]  # fmt: skip

    def __init__(self, output: RunOutput, history: list[Correction]) -> None:
        super().__init__()
        self.output = output
        self.history = history

    def compose(self) -> ComposeResult:
        latest = self.history[-1] if self.history else None
        if latest is None:
            title = f"Correct row {self.output.row_idx}: the output it should have produced"
        else:
            title = (
                f"Correct row {self.output.row_idx} again (version {latest.version} by "
                f"{latest.author}; saving makes version {latest.version + 1})"
            )
        with Vertical(classes="modal-box modal-wide"):
            yield Static(title, classes="modal-title", markup=False)
            yield Static(f"model output: {self.output.output}", classes="hint", markup=False)
            yield TextArea(
                latest.text if latest is not None else self.output.output, id="correction-text"
            )
            yield Static("ctrl+s saves · Escape cancels", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#correction-text", TextArea).focus()

    def action_save(self) -> None:
        text = self.query_one("#correction-text", TextArea).text
        if not text.strip():
            self.notify("A correction needs text", severity="warning")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)

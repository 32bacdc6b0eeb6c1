"""The `?` help screen: every key active where it was opened, with its id for remapping."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tunelab.tui.widgets.nav_table import NavTable

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.binding import ActiveBinding


def describe_bindings(active: dict[str, ActiveBinding]) -> list[tuple[str, str, str, str]]:
    """(keys, description, id, tooltip) rows, one per binding id, in a stable order."""
    by_id: dict[str, tuple[str, str, str, str]] = {}
    for key, entry in active.items():
        binding = entry.binding
        if binding.system:
            continue
        binding_id = binding.id or binding.action
        keys = by_id[binding_id][0] + ", " + key if binding_id in by_id else key
        description = binding.description or binding.action
        by_id[binding_id] = (keys, description, binding_id, binding.tooltip or entry.tooltip)
    return sorted(by_id.values(), key=lambda row: row[2])


class HelpModal(ModalScreen[None]):
    """Lists the keys of the screen underneath; Escape or ? closes it."""

    CSS_PATH = "help.tcss"

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss_help", "Close", id="help-close",
                tooltip="Close the help screen"),
    ]  # fmt: skip

    def __init__(self, title: str, rows: list[tuple[str, str, str, str]]) -> None:
        super().__init__()
        self.help_title = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(f"Keys · {self.help_title}", id="help-title")
            yield NavTable(id="help-table")
            yield Static(
                'Remap any key by id in the settings file: [keymap] id = "keys" '
                "(docs/keys.md). ctrl+p searches every action.",
                id="help-hint",
                markup=False,
            )

    def on_mount(self) -> None:
        table = self.query_one(NavTable)
        table.add_columns("Key", "Action", "Id", "What it does")
        for keys, description, binding_id, tooltip in self.rows:
            table.add_row(keys, description, binding_id, tooltip, key=binding_id)
        table.focus()

    def action_dismiss_help(self) -> None:
        self.dismiss(None)

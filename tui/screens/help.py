"""The `?` help screen: every key active where it was opened, grouped by screen and purpose,
shown as a user types it (`?`, `ctrl+p`), with its id for remapping; descriptions wrap."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from rich.table import Table
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.binding import ActiveBinding

EVERYWHERE = "Everywhere"
GO = "Go to a screen"
WIDGET_GROUPS = {
    "NavTable": "Lists",
    "PriorityTable": "Lists",
    "OutputsTable": "Rating the selected output",
}
"""Groups for the keys of focused widgets, by widget class."""
_KEY_NAMES = {"esc": "escape", "⏎": "enter", "tab": "tab"}


class HelpRow(NamedTuple):
    keys: str
    action: str
    id: str
    what: str
    group: str


def typed_key(key: str) -> str:
    """A Textual key name as a user types it: `question_mark` → `?`, `slash` → `/`,
    `ctrl+p` stays `ctrl+p`, `escape` and `enter` stay words."""
    from textual.keys import format_key

    *modifiers, name = key.strip().split("+")
    shown = format_key(name)
    shown = _KEY_NAMES.get(shown, shown)
    return "+".join([*modifiers, shown])


def typed_keys(keys: str) -> str:
    """Comma-separated key names (a binding's `key`), each as typed."""
    return ", ".join(typed_key(k) for k in keys.split(",") if k.strip())


def _group(entry: ActiveBinding, screen_title: str) -> str:
    binding = entry.binding
    if (binding.id or "").startswith("show-") and binding.id != "show-help":
        return GO
    node = entry.node
    if isinstance(node, Screen):
        return f"{screen_title} screen" if binding.id != "show-help" else EVERYWHERE
    if node is node.app:
        return EVERYWHERE
    return WIDGET_GROUPS.get(type(node).__name__, type(node).__name__)


def describe_bindings(
    active: dict[str, ActiveBinding], screen_title: str = "This"
) -> list[HelpRow]:
    """One row per binding id, grouped: the screen's keys, its lists', then screen switches and
    the keys that work everywhere. Textual's own keys (no id: cursor_left, page_left) are left
    out; the palette (`ctrl+p`) still reaches them."""
    by_id: dict[str, HelpRow] = {}
    for key, entry in active.items():
        binding = entry.binding
        if binding.system or not binding.id:
            continue
        shown = typed_key(key)
        if binding.id in by_id:
            row = by_id[binding.id]
            if shown not in row.keys.split(", "):
                by_id[binding.id] = row._replace(keys=f"{row.keys}, {shown}")
            continue
        by_id[binding.id] = HelpRow(
            shown, binding.description or binding.action, binding.id,
            binding.tooltip or entry.tooltip or binding.description, _group(entry, screen_title),
        )  # fmt: skip
    order = [f"{screen_title} screen", *WIDGET_GROUPS.values(), GO, EVERYWHERE]
    rank = {name: i for i, name in enumerate(dict.fromkeys(order))}
    rows = list(by_id.values())
    return sorted(rows, key=lambda row: rank.get(row.group, len(rank) - 2))


def help_table(rows: list[HelpRow]) -> Table:
    """One group's keys as a table whose "What it does" column wraps."""
    table = Table(box=None, expand=True, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("Key", no_wrap=True, min_width=6)
    table.add_column("Action", min_width=8, ratio=1)
    table.add_column("What it does", ratio=3, overflow="fold")
    table.add_column("Id", style="dim", no_wrap=True)
    for row in rows:
        table.add_row(row.keys, row.action, row.what, row.id)
    return table


class HelpModal(ModalScreen[None]):
    """Lists the keys of the screen underneath, grouped; Escape, ? or q closes it."""

    CSS_PATH = "help.tcss"

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss_help", "Close", id="help-close",
                tooltip="Close the help screen"),
    ]  # fmt: skip

    def __init__(self, title: str, rows: list[HelpRow]) -> None:
        super().__init__()
        self.help_title = title
        self.rows = rows

    def groups(self) -> dict[str, list[HelpRow]]:
        out: dict[str, list[HelpRow]] = {}
        for row in self.rows:
            out.setdefault(row.group, []).append(row)
        return out

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(f"Keys · {self.help_title}", id="help-title", markup=False)
            with VerticalScroll(id="help-scroll"):
                for group, rows in self.groups().items():
                    yield Static(group, classes="help-group", markup=False)
                    yield Static(help_table(rows), classes="help-table")
            yield Static(
                'Remap any key by id in the settings file: [keymap] id = "keys" '
                "(docs/keys.md). ctrl+p searches every action of every screen.",
                id="help-hint",
                markup=False,
            )

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_dismiss_help(self) -> None:
        self.dismiss(None)

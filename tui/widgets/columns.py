"""Tables whose columns have priorities: on a narrow terminal the least important columns drop
first, the ones that never drop (a run's main metric, its status) stay, and long names are
elided in the middle ("emotion-…-step-400") so both ends of a name still read.

`fit_columns` is the rule, kept free of widgets; `PriorityTable` applies it on every resize.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual import events

from tunelab.tui.widgets.nav_table import NavTable

CELL_PADDING = 2
"""A DataTable cell's padding, one space each side."""
SCROLLBAR_WIDTH = 2
"""Kept free on the right for the vertical scrollbar when the rows overflow the table."""
ELLIPSIS = "…"


@dataclass(frozen=True)
class Column:
    """One column: its header, how important it is, and how wide it may grow."""

    label: str
    priority: int = 1
    """0 never drops; otherwise the higher the number, the sooner it drops."""
    max_width: int = 40
    """The widest the column grows; longer cells are elided."""
    elide: str = "end"
    """Where a long cell is cut: `end` (prose, errors) or `middle` (names)."""
    min_width: int = 8
    """The narrowest the column is still worth showing at; below it, it drops instead."""


def elide_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, its middle replaced by `…`."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = width // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def elide_end(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut at the end with `…`."""
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + ELLIPSIS if width >= 1 else ""


def one_line(text: str) -> str:
    """Whitespace runs (newlines included) as single spaces: a cell is one line."""
    return " ".join(text.split())


def fit_columns(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], available: int
) -> list[tuple[int, int]]:
    """Which columns to show and how wide, for a table `available` cells wide.

    Each column wants its longest cell (or header), capped at `max_width`, and needs at least
    `min_width` (or what it wants, when less). While the never-dropping columns at their
    wanted widths and the others at their needs do not fit, the highest-priority-number column
    drops (ties: the rightmost first); then the widest droppable columns shrink toward their
    needs, and the never-dropping ones only when nothing else is left.

    Returns:
        (column index, width) for each column kept, in the columns' order.
    """
    wants, needs = [], []
    for index, column in enumerate(columns):
        longest = max((len(one_line(row[index])) for row in rows if index < len(row)), default=0)
        wants.append(min(max(longest, len(column.label)), column.max_width))
        needs.append(min(wants[-1], column.min_width))
    kept = list(range(len(columns)))
    # A column drops rather than squeeze a never-dropping one below what it wants.
    room = [wants[i] if column.priority == 0 else needs[i] for i, column in enumerate(columns)]
    while sum(room[i] + CELL_PADDING for i in kept) > available:
        droppable = [i for i in kept if columns[i].priority > 0]
        if not droppable:
            break
        kept.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    widths = {i: wants[i] for i in kept}
    excess = sum(widths[i] + CELL_PADDING for i in kept) - available
    # Droppable columns give up width first; the never-dropping ones only when they must.
    for candidates in ([i for i in kept if columns[i].priority > 0], kept):
        while excess > 0:
            shrinkable = [i for i in candidates if widths[i] > needs[i]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: (widths[i], i))
            widths[widest] -= 1
            excess -= 1
    return [(i, widths[i]) for i in kept]


def fit_cell(column: Column, text: str, width: int) -> str:
    flat = one_line(text)
    return elide_middle(flat, width) if column.elide == "middle" else elide_end(flat, width)


class PriorityTable(NavTable):
    """A NavTable laid out by `fit_columns`: give it columns and rows, it chooses what shows
    and lays itself out again when its width changes (the cursor stays on its row)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.column_specs: list[Column] = []
        self.table_rows: list[tuple[str, list[str]]] = []
        self.shown_columns: list[str] = []
        """The labels of the columns on show now (tests and callers read it)."""
        self._laid_out_width = -1

    def set_columns(self, columns: Sequence[Column]) -> None:
        self.column_specs = list(columns)
        self._laid_out_width = -1

    def set_rows(
        self, rows: Sequence[tuple[str, Sequence[str]]], cursor_key: str | None = None
    ) -> None:
        """(row key, cells) for each row; the cursor goes to `cursor_key` when given, else it
        stays on the same key, when that row exists.

        One move, not a restore then a move: each move posts a RowHighlighted, and a screen
        that reloads on highlight would otherwise see the old row picked again."""
        self.table_rows = [(key, list(cells)) for key, cells in rows]
        self.lay_out(force=True, cursor_key=cursor_key)

    def row_cells(self, key: str) -> list[str] | None:
        """The full (unelided) cells of a row."""
        return next((cells for k, cells in self.table_rows if k == key), None)

    def available_width(self) -> int:
        """The table's width, less the vertical scrollbar when the rows will need one."""
        width = self.size.width or self.app.size.width
        scrolls = len(self.table_rows) + 1 > self.size.height
        return max(0, width - (SCROLLBAR_WIDTH if scrolls else 0))

    def lay_out(self, force: bool = False, cursor_key: str | None = None) -> None:
        width = self.available_width()
        if not force and width == self._laid_out_width:
            return
        self._laid_out_width = width
        keep = cursor_key if cursor_key is not None else self.selected_key()
        fitted = fit_columns(self.column_specs, [cells for _k, cells in self.table_rows], width)
        self.clear(columns=True)
        self.shown_columns = [self.column_specs[i].label for i, _w in fitted]
        for i, column_width in fitted:
            self.add_column(self.column_specs[i].label, width=column_width, key=str(i))
        for key, cells in self.table_rows:
            self.add_row(
                *(
                    fit_cell(self.column_specs[i], cells[i] if i < len(cells) else "", w)
                    for i, w in fitted
                ),
                key=key,
            )
        self.move_to_key(keep)

    def on_resize(self, event: events.Resize) -> None:
        self.lay_out()

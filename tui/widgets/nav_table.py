"""A DataTable that also moves with j/k and jumps with g/G, for keyboard-only users."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class NavTable(DataTable[str]):
    """Row-cursor table with vim-style movement on top of the arrow keys."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", id="list-down", show=False, tooltip="Next row"),
        Binding("k", "cursor_up", "Up", id="list-up", show=False, tooltip="Previous row"),
        Binding("g", "scroll_top", "Top", id="list-top", show=False, tooltip="First row"),
        Binding("G", "scroll_bottom", "Bottom", id="list-bottom", show=False, tooltip="Last row"),
    ]
    """j/k/g/G mirror the arrow, Home and End keys."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)

    def selected_key(self) -> str | None:
        """The key of the row under the cursor, or None for an empty table."""
        if self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return None if row_key.value is None else str(row_key.value)

    def move_to_key(self, key: str | None) -> None:
        """Put the cursor back on a row after a refresh, if the row still exists."""
        if key is None:
            return
        try:
            self.move_cursor(row=self.get_row_index(key))
        except Exception:
            pass

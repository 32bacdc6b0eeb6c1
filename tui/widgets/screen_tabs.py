"""The tab bar: every screen with the key that opens it, the current one marked."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

STATUS_ROOM = 24
"""Columns left for the status line beside the tabs before the tabs shorten."""


class ScreenTabs(Static):
    """Under the header, left of the status line; the screen sets `tabs` and `current`."""

    DEFAULT_CSS = """
    ScreenTabs {
        height: 1;
        width: auto;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    """

    tabs: reactive[tuple[tuple[str, str], ...]] = reactive((), layout=True)
    """(key as the user types it, screen title), in key order; follows the keymap."""
    current: reactive[str] = reactive("", layout=True)
    """The title of the screen showing now."""

    def render(self) -> Text:
        full = sum(len(key) + len(title) + 3 for key, title in self.tabs)
        # Too narrow for every title beside the status line (80 columns): the others
        # shorten, the current one stays whole.
        short = full > self.app.size.width - STATUS_ROOM
        line = Text(no_wrap=True, overflow="ellipsis")
        for key, title in self.tabs:
            is_current = title == self.current
            name = title if is_current or not short else title[:3]
            label = f" {key} {name} " if not short or is_current else f"{key} {name} "
            line.append(label, style="bold reverse" if is_current else "")
        return line

    def on_resize(self) -> None:
        self.refresh(layout=True)  # what fits depends on the width

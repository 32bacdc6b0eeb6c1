"""The base of the detail views (a job, a run, a compared row): a titled, scrollable page of
wrapped sections, with its keys in its own footer; Escape or q closes it, c copies it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

if TYPE_CHECKING:
    from textual.app import ComposeResult


def section(title: str, body: str | Text, empty: str = "—") -> Text:
    """A bold heading and its body; `empty` stands in for a blank body."""
    text = Text(title + "\n", style="bold")
    if isinstance(body, Text):
        text.append_text(body if body.plain.strip() else Text(empty))
    else:
        text.append(body if body.strip() else empty)
    return text


class DetailModal(ModalScreen[None]):
    """A detail view of a title and sections; subclasses that page (a run's rows) override
    `page_title()` and `page_sections()` and call `redraw()` when the page changes."""

    CSS_PATH = "detail.tcss"
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="detail-close", tooltip="Close this view"),
        Binding("c", "copy", "Copy", id="detail-copy",
                tooltip="Copy the whole view as text (OSC 52)"),
    ]  # fmt: skip

    def __init__(self, title: str = "", sections: list[Text] | None = None) -> None:
        super().__init__()
        self.view_title = title
        self.view_sections = sections or []

    def page_title(self) -> str:
        return self.view_title

    def page_sections(self) -> list[Text]:
        return self.view_sections

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box"):
            yield Static(self.page_title(), id="detail-title", markup=False)
            with VerticalScroll(id="detail-scroll"):
                yield Static(self.body(), id="detail-body")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#detail-scroll").focus()

    def body(self) -> Text:
        return Text("\n\n").join(self.page_sections())

    def redraw(self) -> None:
        self.query_one("#detail-title", Static).update(self.page_title())
        self.query_one("#detail-body", Static).update(self.body())
        self.query_one("#detail-scroll", VerticalScroll).scroll_home(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(f"{self.page_title()}\n\n{self.body().plain}")
        self.notify("Copied to the clipboard", timeout=2)

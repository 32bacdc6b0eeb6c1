"""The base for tunelab's screens: store and engine passed down, worker errors shown, not raised."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events, on
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Header
from textual.worker import Worker, WorkerState

from tunelab.tui.messages import ScreenShown
from tunelab.tui.widgets.screen_footer import ScreenFooter
from tunelab.tui.widgets.screen_tabs import ScreenTabs
from tunelab.tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.app import ComposeResult

    from tunelab.engine.api.facade import EngineProtocol
    from tunelab.engine.api.types import Activity
    from tunelab.store import Store
    from tunelab.tui.config import UserSettings


class TunelabScreen(Screen[None]):
    """A main screen: gets the store, engine and settings explicitly from the app."""

    SCREEN_TITLE = ""
    """Shown in the header; also the screen's name in the command palette."""

    BINDINGS = [
        Binding("question_mark", "show_help", "Help", id="show-help",
                tooltip="List every key on this screen"),
        Binding("q", "back_or_quit", "Back/Quit", id="back-or-quit", show=False,
                tooltip="Back out of a view inside the screen; on the screen itself, quit "
                "(as ctrl+q; never while typing in a field)"),
    ]  # fmt: skip
    """Declared here, not on the app, so `? Help` comes first in every footer: on a narrow
    terminal the footer clips at the right, and this key leads to all the others."""

    def __init__(self, store: Store, engine: EngineProtocol, settings: UserSettings) -> None:
        super().__init__()
        self.store = store
        self.engine = engine
        self.settings = settings
        self.sub_title = self.SCREEN_TITLE
        self.seen_version: int | None = None
        """The database version this screen last loaded at (see `data_changed`)."""
        self._styled_for: tuple[bool, str] | None = None
        """`_style_inputs` when the screen was last hidden; None before."""

    def compose_header(self) -> ComposeResult:
        yield Header(icon="≡")
        with Horizontal(classes="screen-chrome"):
            yield ScreenTabs()
            yield StatusLine()

    def compose_footer(self) -> ComposeResult:
        yield ScreenFooter(show_command_palette=True, compact=True)

    def show_status(self, workspace: str, activity: Activity | None) -> None:
        """Set the status line (the app calls this when the activity was counted again)."""
        for line in self.query(StatusLine):
            line.workspace = workspace
            line.activity = activity

    def show_tabs(self, tabs: tuple[tuple[str, str], ...]) -> None:
        for bar in self.query(ScreenTabs):
            bar.tabs = tabs
            bar.current = self.SCREEN_TITLE

    def data_changed(self, version: int | None) -> None:
        """Called by the app when someone committed to the database (another session, the CLI,
        a job, this app's own workers): reload what the screen shows, keeping its cursor,
        selection and filter."""
        if version is not None and version == self.seen_version:
            return
        self.seen_version = version
        if self.is_mounted:
            self.reload_data()

    def reload_data(self) -> None:
        """Hook: start the screen's loaders again (each keeps the cursor by row key)."""

    def on_mount(self) -> None:
        self.seen_version = getattr(self.app, "data_version", None)

    @on(events.Mount)
    @on(events.ScreenResume)
    def ask_for_chrome(self) -> None:
        """The tab bar and status line come from the app (it knows the keys and the activity)."""
        self.post_message(ScreenShown(self))

    @on(events.ScreenSuspend)
    def note_style_inputs(self) -> None:
        self._styled_for = self._style_inputs()

    @on(events.ScreenResume)
    def skip_restyle(self, event: events.ScreenResume) -> None:
        """Spare a screen shown again Textual's restyle of all its widgets, a large part of a
        switch, when what styles read from outside it (the app's focus, the theme) is as it was
        when it was hidden; Textual skips it too when a modal closes. Runs before `Screen`'s."""
        if event.refresh_styles and self._styled_for == self._style_inputs():
            event.refresh_styles = False

    def _style_inputs(self) -> tuple[bool, str]:
        return (self.app.app_focus, self.app.theme)

    @on(events.ScreenResume)
    def catch_up(self) -> None:
        """A screen shown again reloads if the database changed while it was hidden."""
        version = getattr(self.app, "data_version", None)
        if version is not None and version != self.seen_version:
            self.data_changed(version)

    def action_show_help(self) -> None:
        self.app.action_show_help()  # type: ignore[attr-defined]

    async def action_back_or_quit(self) -> None:
        if not self.go_back():
            await self.app.run_action("app.quit")

    def go_back(self) -> bool:
        """Hook: leave a view inside the screen (an open run, a form tab); False at the top,
        where `q` quits."""
        return False

    def unsaved_edits(self) -> str | None:
        """Hook: what holds unsaved edits (e.g. "classify@2"), None when nothing would be lost
        by leaving the screen."""
        return None

    def save_edits_then(self, proceed: Callable[[], object]) -> None:
        """Hook: save the unsaved edits, then call `proceed` (never when the save fails)."""
        proceed()

    def discard_edits(self) -> None:
        """Hook: drop the unsaved edits (put the saved text back)."""

    def leave_then(
        self, proceed: Callable[[], object], on_stay: Callable[[], object] | None = None
    ) -> None:
        """Run `proceed` now, or, while `unsaved_edits` names something, once the user chose
        to save or discard it (`on_stay` runs when they stay): edits are never dropped silently."""
        from tunelab.tui.screens.confirm import UnsavedChoice, UnsavedEditsModal

        what = self.unsaved_edits()
        if what is None:
            proceed()
            return

        def answered(choice: UnsavedChoice | None) -> None:
            if choice == "save":
                self.save_edits_then(proceed)
            elif choice == "discard":
                self.discard_edits()
                proceed()
            elif on_stay is not None:
                on_stay()

        self.app.push_screen(UnsavedEditsModal(what), answered)

    @on(Worker.StateChanged)
    def show_worker_error(self, event: Worker.StateChanged) -> None:
        """An engine or store error in a worker becomes a notification, never a crash."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(
                str(error) or type(error).__name__,
                title=event.worker.description or "Error",
                severity="error",
                timeout=8,
            )
            self.worker_failed(event.worker)

    def worker_failed(self, worker: Worker[object]) -> None:
        """Hook for screens that must reset state (a busy flag) when a worker fails."""

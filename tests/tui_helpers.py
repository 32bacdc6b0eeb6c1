"""Test helpers: the screen as plain text, for asserting what a user would read."""

from __future__ import annotations

import io

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.worker import WorkerCancelled, WorkerFailed


def screen_text(app: App[object]) -> str:
    """The current screen (with any screens beneath a modal) rendered as plain text."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True,
        color_system="truecolor", record=True, legacy_windows=False, safe_box=False,
    )  # fmt: skip
    render = app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens, simplify=True
    )
    console.print(render)
    return console.export_text()


async def settle(app: App[object], pilot: Pilot[object], rounds: int = 3) -> None:
    """Wait for the current screen to mount, then for workers and the messages they post.

    Screens load their module and stylesheet on first visit; on a busy machine that can take
    longer than one pause, and a loader worker started on mount would otherwise be missed.
    """
    for _ in range(200):
        if app.screen.is_mounted:
            break
        await pilot.pause(0.05)
    for _ in range(rounds):
        try:
            await app.workers.wait_for_complete()
        except (WorkerCancelled, WorkerFailed):
            continue
        await pilot.pause()

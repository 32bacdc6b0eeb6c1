"""Snapshots of the main screens at 100x30 in two themes (pinned clock, no cursor blink)."""

from __future__ import annotations

import pytest
from textual.widgets import Input, TextArea
from textual.worker import WorkerCancelled, WorkerFailed

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tunelab.store import Store
from tunelab.tui.app import make_app
from tunelab.tui.config import UserSettings

THEMES = ["tunelab-dark", "tunelab-light"]
SCREENS = {
    "home": "1",
    "prompts": "2",
    "playground": "3",
    "runs": "4",
    "compare": "5",
    "finetune": "6",
    "models": "7",
}


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Input, "cursor_blink", False)
    monkeypatch.setattr(TextArea, "cursor_blink", False)


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Wait until loading workers are done and every table they fill has been drawn."""
    for _ in range(3):
        try:
            await pilot.app.workers.wait_for_complete()
        except (WorkerCancelled, WorkerFailed):
            pass
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen_snapshot(snap_compare, theme: str, screen: str) -> None:  # type: ignore[no-untyped-def]
    store = Store.memory()
    seed_store(store)
    app = make_app(store, engine=FakeEngine(store), settings=UserSettings(theme=theme))

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press(SCREENS[screen])
        # A screen's module and stylesheet load on first visit: on a busy machine that can
        # outlast the first settle, so wait for the screen itself before waiting for its data.
        for _ in range(200):
            if pilot.app.current_mode == screen and pilot.app.screen.is_mounted:
                break
            await pilot.pause(0.05)
        await settle(pilot)
        if screen == "compare":
            pilot.app.screen.compare([2, 3])
            await settle(pilot)

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)

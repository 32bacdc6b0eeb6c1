"""Snapshots of the main screens at 100x30 in two themes (pinned clock, no cursor blink)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import current_screen, settle, wait_until
from tunelab.store import Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.config import UserSettings
from tunelab.tui.screens.compare import CompareScreen

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


async def settle_drawn(app: TunelabApp, pilot: Pilot[None]) -> None:
    """Wait until loading workers are done and every table they fill has been drawn."""
    await settle(app, pilot)
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen_snapshot(snap_compare: Callable[..., bool], theme: str, screen: str) -> None:
    store = Store.memory()
    seed_store(store)
    app = make_app(store, engine=FakeEngine(store), settings=UserSettings(theme=theme))

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press(SCREENS[screen])
        # A screen's module and stylesheet load on first visit: until then the previous
        # screen is current, so wait for this one before waiting for its data.
        await wait_until(
            pilot,
            lambda: app.current_mode == screen and app.screen.is_mounted,
            f"the {screen} screen",
        )
        await settle_drawn(app, pilot)
        if screen == "compare":
            current_screen(app, CompareScreen).compare([2, 3])
            await settle_drawn(app, pilot)

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)

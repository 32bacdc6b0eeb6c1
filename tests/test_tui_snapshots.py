"""Snapshots of every screen and detail view at 80x24 in the three built-in themes, and of the
main screens at 100x30 (pinned clock, no cursor blink).

The default suite draws every view at 80x24 in the default theme and the 100x30 screens in
the dark theme; the light and high-contrast themes are `slow` (run with -m slow).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, TextArea

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import frozen_store_clock, seed_store
from tests.tui_helpers import current_screen, settle, wait_until
from tunelab.store import NewModel, Store
from tunelab.themes import DEFAULT_THEME
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.config import UserSettings
from tunelab.tui.screens.compare import CompareScreen
from tunelab.tui.screens.example_detail import ExampleDetailModal
from tunelab.tui.screens.help import HelpModal
from tunelab.tui.screens.job_detail import JobDetailModal
from tunelab.tui.screens.run_detail import RunDetailModal

THEMES = ["tunelab-dark", "tunelab-light", "tunelab-high-contrast"]
OTHER_THEMES = [t for t in THEMES if t != DEFAULT_THEME]
SCREENS = {
    "home": "1",
    "prompts": "2",
    "playground": "3",
    "runs": "4",
    "compare": "5",
    "finetune": "6",
    "models": "7",
    "datasets": "8",
    "report": "9",
}
WIDE_SCREENS = ["home", "prompts", "playground", "runs", "compare", "finetune", "models"]
NARROW = (80, 24)
JOB_ERROR = "RuntimeError: CUDA out of memory while allocating the optimizer state; lower the batch"


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Input, "cursor_blink", False)
    monkeypatch.setattr(TextArea, "cursor_blink", False)


def seeded_app(theme: str) -> TunelabApp:
    store = Store.memory()
    ids = seed_store(store)
    # A second job, failed after saving a checkpoint, for the job list and its detail view.
    with frozen_store_clock():
        failed = store.create_job("lora", {"lr": 0.001}, ids["base"], ids["dataset"], ids["v2"])
        store.update_job(failed.id, status="failed", error=JOB_ERROR)
        checkpoint = store.add_model(
            NewModel("builtin-job2-step-30", "adapter", "artifact", "/models/j2-30",
                     base_model_id=ids["base"], method="lora", job_id=failed.id, step=30)
        )  # fmt: skip
        store.mark_best_model(failed.id, checkpoint.id)
    return make_app(store, engine=FakeEngine(store), settings=UserSettings(theme=theme))


async def settle_drawn(app: TunelabApp, pilot: Pilot[None]) -> None:
    """Wait until loading workers are done and every table they fill has been drawn."""
    await settle(app, pilot)
    await pilot.wait_for_scheduled_animations()


async def open_screen(app: TunelabApp, pilot: Pilot[Any], screen: str) -> None:
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


async def open_modal(
    app: TunelabApp, pilot: Pilot[Any], keys: list[str], modal: type[Screen[Any]]
) -> None:
    await pilot.press(*keys)
    await wait_until(pilot, lambda: isinstance(app.screen, modal), modal.__name__)
    await settle_drawn(app, pilot)


async def job_detail(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "finetune")
    await open_modal(app, pilot, ["enter"], JobDetailModal)


async def run_detail(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "runs")
    await pilot.press("enter")
    await settle_drawn(app, pilot)
    await open_modal(app, pilot, ["j", "enter"], RunDetailModal)


async def example_detail(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "compare")
    await pilot.press("t")
    app.screen.query_one("#compare-examples").focus()
    await open_modal(app, pilot, ["enter"], ExampleDetailModal)


async def runs_help(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "runs")
    await open_modal(app, pilot, ["question_mark"], HelpModal)


DETAILS: dict[str, Callable[[TunelabApp, Pilot[Any]], Awaitable[None]]] = {
    "job-detail": job_detail,
    "run-detail": run_detail,
    "example-detail": example_detail,
    "help": runs_help,
}
VIEWS = [*SCREENS, *DETAILS]


async def show_view(app: TunelabApp, pilot: Pilot[Any], view: str) -> None:
    if view in DETAILS:
        await DETAILS[view](app, pilot)
    else:
        await open_screen(app, pilot, view)


def snapshot_at(
    snap_compare: Callable[..., bool], theme: str, view: str, size: tuple[int, int]
) -> bool:
    app = seeded_app(theme)

    async def run_before(pilot: Pilot[Any]) -> None:
        await show_view(app, pilot, view)

    result: bool = snap_compare(app, terminal_size=size, run_before=run_before)
    return result


@pytest.mark.parametrize("view", VIEWS)
def test_view_at_80x24(snap_compare: Callable[..., bool], view: str) -> None:
    assert snapshot_at(snap_compare, DEFAULT_THEME, view, NARROW)


@pytest.mark.slow
@pytest.mark.parametrize("theme", OTHER_THEMES)
@pytest.mark.parametrize("view", VIEWS)
def test_view_at_80x24_in_other_themes(
    snap_compare: Callable[..., bool], theme: str, view: str
) -> None:
    assert snapshot_at(snap_compare, theme, view, NARROW)


@pytest.mark.parametrize("screen", WIDE_SCREENS)
def test_screen_at_100x30(snap_compare: Callable[..., bool], screen: str) -> None:
    assert snapshot_at(snap_compare, "tunelab-dark", screen, (100, 30))

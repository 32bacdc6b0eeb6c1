"""Pilot tests of what a screen switch keeps: its footer's keys, and styles following the theme."""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.color import Color
from textual.screen import Screen
from textual.widgets._footer import FooterKey

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import settle, show_screen, wait_until
from tunelab.store import Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.widgets.screen_footer import ScreenFooter

SIZE = (100, 30)


def seeded_app() -> TunelabApp:
    store = Store.memory()
    seed_store(store)
    return make_app(store, engine=FakeEngine(store))  # type: ignore[arg-type]


async def test_a_screen_shown_again_keeps_its_footer_keys() -> None:
    app = seeded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        first_keys = list(app.screen.query(FooterKey))
        assert first_keys
        await show_screen(app, pilot, "1", "Home")
        await show_screen(app, pilot, "4", "Runs")
        again = list(app.screen.query(FooterKey))
        assert len(again) == len(first_keys)
        assert all(now is before for now, before in zip(again, first_keys, strict=True))


async def test_a_screen_shown_again_after_a_theme_change_takes_the_new_theme() -> None:
    app = seeded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        await show_screen(app, pilot, "1", "Home")
        before = app.screen.styles.background
        app.action_cycle_theme()
        await wait_until(
            pilot, lambda: app.screen.styles.background != before, "Home in the new theme"
        )
        await show_screen(app, pilot, "4", "Runs")
        expected = Color.parse(app.get_css_variables()["background"])
        assert app.screen.styles.background == expected


class ToggleScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("x", "flip", "Flip")]

    def __init__(self) -> None:
        super().__init__()
        self.allowed = True

    def compose(self) -> ComposeResult:
        yield ScreenFooter(compact=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # None: shown, disabled (False would hide the key).
        return None if action == "flip" and not self.allowed else True

    def action_flip(self) -> None:
        pass


class ToggleApp(App[None]):
    def on_mount(self) -> None:
        self.push_screen(ToggleScreen())


def toggle_key(app: App[None]) -> FooterKey | None:
    return next((key for key in app.screen.query(FooterKey) if key.key == "x"), None)


async def test_the_footer_still_rebuilds_when_its_keys_change() -> None:
    app = ToggleApp()
    async with app.run_test(size=(60, 5)) as pilot:
        await wait_until(pilot, lambda: toggle_key(app) is not None, "the x key in the footer")
        shown = toggle_key(app)
        assert shown is not None and not shown.has_class("-disabled")
        screen = app.screen
        assert isinstance(screen, ToggleScreen)
        screen.allowed = False
        screen.refresh_bindings()
        await wait_until(
            pilot,
            lambda: (key := toggle_key(app)) is not None and key.has_class("-disabled"),
            "the x key shown disabled",
        )

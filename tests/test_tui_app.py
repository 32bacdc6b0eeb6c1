"""Pilot tests of the app shell: Home, navigation, help, palette, keymap, themes, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette

from tests.fake_engine import FakeEngine
from tests.tui_helpers import screen_text, settle, show_screen, wait_until
from tunelab.store import Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.config import UserSettings, load_settings
from tunelab.tui.screens.help import HelpModal

SIZE = (100, 30)


def app_for(store: Store, **kwargs: object) -> TunelabApp:
    return make_app(store, engine=FakeEngine(store), **kwargs)  # type: ignore[arg-type]


async def test_home_shows_runs_jobs_and_best(seeded: Store) -> None:
    app = app_for(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        text = screen_text(app)
        assert "classify@2" in text and "builtin-lora-1" in text
        assert "accuracy 1.000" in text
        assert "job 1 · lora · running · step 30/100" in text
        assert "sentiment" in text and "classify@2 on builtin (accuracy 0.750)" in text


async def test_number_keys_switch_screens_and_home_opens_run(seeded: Store) -> None:
    app = app_for(seeded)
    async with app.run_test(size=SIZE) as pilot:
        for key, title in (("2", "Prompts"), ("4", "Runs"), ("6", "Fine-tune"), ("1", "Home")):
            await show_screen(app, pilot, key, title)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen.sub_title == "Runs", "Home to open the run")
        await settle(app, pilot)
        assert "Run 3 · classify@2 · builtin-lora-1" in screen_text(app)


async def test_help_lists_binding_ids_and_escape_closes(seeded: Store) -> None:
    app = app_for(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpModal), "the help modal")
        assert isinstance(app.screen, HelpModal)
        ids = {row[2] for row in app.screen.rows}
        assert {"home-refresh", "show-runs", "show-help", "quit"} <= ids
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, HelpModal), "help to close")


async def test_command_palette_reaches_screens(seeded: Store) -> None:
    app = app_for(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"Go to Compare")
        commands = app.screen.query_one(CommandList)

        def best_hit() -> str:
            if not commands.option_count or commands.highlighted is None:
                return ""
            return str(commands.get_option_at_index(commands.highlighted).prompt)

        # The palette searches in the background and shows hits in batches.
        await wait_until(pilot, lambda: "Go to Compare" in best_hit(), "the Compare command")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen.sub_title == "Compare", "the Compare screen")


async def test_the_palette_finds_a_command_by_what_it_does(seeded: Store) -> None:
    """ "evaluation" is in the Runs eval command's help, not its title ("Eval (Runs)")."""
    app = app_for(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"new evaluation")
        commands = app.screen.query_one(CommandList)

        def hits() -> list[str]:
            return [
                str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)
            ]

        await wait_until(pilot, lambda: any("Eval (Runs)" in hit for hit in hits()), "the hit")
        assert not any("Go to Compare" in hit for hit in hits())


def test_title_matches_rank_above_help_matches() -> None:
    from tunelab.tui.commands import PaletteCommand, command_score

    def match(text: str) -> float:
        return 1.0 if "eval" in text.lower() else 0.0

    by_title = PaletteCommand("Eval (Runs)", "Start a new run", lambda: None)
    by_help = PaletteCommand("Judge (Runs)", "Eval the outputs with a rubric", lambda: None)
    neither = PaletteCommand("Sort (Runs)", "Sort the runs", lambda: None)
    assert command_score(match, by_title) > command_score(match, by_help) > 0
    assert command_score(match, neither) == 0


async def test_keymap_remaps_by_id(seeded: Store) -> None:
    app = app_for(seeded, settings=UserSettings(keymap={"show-runs": "f4"}))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("4")
        await settle(app, pilot)
        assert app.screen.sub_title == "Home"
        await show_screen(app, pilot, "f4", "Runs")


async def test_unknown_keymap_id_is_reported(seeded: Store) -> None:
    app = app_for(seeded, settings=UserSettings(keymap={"show-nowhere": "f9"}))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot,
            lambda: any("show-nowhere" in n.message for n in app._notifications),
            "the unknown-id notification",
        )


async def test_theme_choice_is_saved(seeded: Store, tmp_path: Path) -> None:
    path = tmp_path / "tui.toml"
    app = app_for(seeded, settings=UserSettings(), settings_path=path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: app.theme == "tunelab-light", "the light theme")
    assert load_settings(path).theme == "tunelab-light"


def test_unknown_theme_is_a_friendly_error(seeded: Store) -> None:
    with pytest.raises(ValueError, match="tunelab-high-contrast"):
        app_for(seeded, settings=UserSettings(theme="nope"))


def test_importing_the_app_does_not_import_torch() -> None:
    code = (
        "import sys, tunelab.tui.app, tunelab.engine.api.facade; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("key", "title", "needle"),
    [
        ("1", "Home", "classify@2"),
        ("2", "Prompts", "Is this review positive or negative?"),
        ("3", "Playground", "13 / 2048 tokens"),
        ("4", "Runs", "builtin-lora-1"),
        ("5", "Compare", "Run ids to compare"),
        ("6", "Fine-tune", "30/100"),
        ("7", "Models", "builtin-lora-1"),
        ("8", "Datasets", "Terrible service, never again"),
    ],
)
async def test_every_screen_is_usable_at_80x24(
    seeded: Store, key: str, title: str, needle: str
) -> None:
    app = app_for(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, key, title)
        text = screen_text(app)
        assert f"tunelab — {title}" in text
        assert needle in text
        footer = text.rstrip().splitlines()[-1]
        assert footer.startswith("? Help"), footer


@pytest.mark.parametrize("keymap", [{}, {"command-palette": "ctrl+k"}])
async def test_palette_key_stays_visible_in_a_narrow_terminal(
    seeded: Store, keymap: dict[str, str]
) -> None:
    """The footer docks the palette key at its right edge, so 80 columns never clip it, and
    it follows a remapping."""
    app = app_for(seeded, settings=UserSettings(keymap=keymap))
    key = keymap.get("command-palette", "ctrl+p")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        footer = screen_text(app).splitlines()[-1]
        assert footer.startswith("? Help")
        assert footer.endswith(f"^{key[-1]} Commands"), footer
        await pilot.press(key)
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")

"""Pilot tests of the conventions lazygit, k9s, Harlequin and Posting users expect (#21): Escape
leaves a filter, rating under a prefix, q backs out then quits, unsaved edits and cancels ask,
and the New evaluation form remembers and never preselects a mismatched pair."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, TextArea

from tests.fake_engine import FakeEngine
from tests.tui_helpers import (
    current_screen,
    screen_text,
    settle,
    show_screen,
    wait_for_text,
    wait_until,
)
from tunelab.store import NewDataset, NewSplit, PromptContent, Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.config import UserSettings, load_settings, parse_settings, save_settings
from tunelab.tui.screens.confirm import UnsavedEditsModal
from tunelab.tui.screens.eval_modal import EvalModal
from tunelab.tui.screens.prompts import PromptsScreen
from tunelab.tui.screens.runs import RunsScreen, default_split, match_count
from tunelab.tui.widgets.outputs_table import OutputsTable

SIZE = (120, 36)


def record_exit(app: TunelabApp) -> list[bool]:
    """Replace `app.exit` so a test sees that quitting was asked for and keeps running."""
    exits: list[bool] = []
    app.exit = lambda *args, **kwargs: exits.append(True)  # type: ignore[method-assign]
    return exits


async def open_first_run(app: TunelabApp, pilot: object) -> OutputsTable:
    from textual.pilot import Pilot

    assert isinstance(pilot, Pilot)
    await show_screen(app, pilot, "4", "Runs")
    await pilot.press("enter")
    await wait_for_text(app, pilot, "Run 3 · classify@2")
    await settle(app, pilot)
    table = app.screen.query_one("#outputs-table", OutputsTable)
    assert app.focused is table
    return table


def test_match_count_words() -> None:
    assert match_count(12, 80) == "12 of 80"
    assert match_count(0, 80) == "no matches"


async def test_escape_leaves_the_filter_which_shows_its_match_count(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        filter_input = app.screen.query_one("#runs-filter-input", Input)
        await pilot.press("slash", *"lora")
        await wait_for_text(app, pilot, "1 of 3")
        await pilot.press("escape")
        table = app.screen.query_one("#runs-table")
        await wait_until(pilot, lambda: app.focused is table, "focus back on the table")
        await pilot.press("k", "s")  # table and screen keys again, not typed into the filter
        assert filter_input.value == "lora"
        await wait_for_text(app, pilot, "sorted by metric")
        filter_input.value = "nothing-like-this"
        await wait_for_text(app, pilot, "no matches")
        filter_input.value = ""
        await wait_until(pilot, lambda: "of 3" not in screen_text(app), "the count to go")


async def test_number_keys_switch_screens_from_outputs_and_r_prefix_rates(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        table = await open_first_run(app, pilot)
        await pilot.press("j", "1")  # muscle memory: Home, not a one-star rating
        await wait_until(pilot, lambda: app.screen.sub_title == "Home", "the Home screen")
        await settle(app, pilot)
        assert all(o.rating is None for o in seeded.run_outputs(3))
        await show_screen(app, pilot, "4", "Runs")
        table.focus()
        await pilot.press("r")
        await wait_until(pilot, lambda: table.rating_pending, "the rating prefix")
        footer = await wait_for_text(app, pilot, "4★")  # the pending prefix shows its keys
        assert "5★" in footer
        await pilot.press("escape")  # leaves the prefix, not the run
        await wait_until(pilot, lambda: not table.rating_pending, "the prefix to end")
        assert current_screen(app, RunsScreen).open_run_id == 3
        await pilot.press("r", "4")
        await wait_until(pilot, lambda: seeded.run_outputs(3)[1].rating == 4, "the rating")
        await settle(app, pilot)
        assert not table.rating_pending
        await pilot.press("r", "j", "2")  # another key ends the prefix: 2 switches screen
        await wait_until(pilot, lambda: app.screen.sub_title == "Prompts", "the Prompts screen")
        assert seeded.run_outputs(3)[2].rating is None


async def test_q_goes_back_then_quits_but_types_in_a_field(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    exits = record_exit(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_first_run(app, pilot)
        runs = current_screen(app, RunsScreen)
        await pilot.press("q")
        await wait_until(pilot, lambda: runs.open_run_id is None, "back to the run list")
        assert not exits
        await pilot.press("slash", "q")
        assert runs.query_one("#runs-filter-input", Input).value == "q"
        assert not exits
        await pilot.press("escape", "q")
        # Quits through the app's quit action: straight away, or after its question when
        # something is running (the seeded job is).
        await wait_until(
            pilot, lambda: bool(exits) or app.screen is not runs, "quit or its question"
        )
        if not exits:
            await pilot.press("y")
            await wait_until(pilot, lambda: bool(exits), "the quit")


async def type_into_template(app: TunelabApp, pilot: object, text: str) -> None:
    from textual.pilot import Pilot

    assert isinstance(pilot, Pilot)
    area = app.screen.query_one("#edit-template", TextArea)
    area.focus()
    await pilot.press("end", *text)
    await wait_for_text(app, pilot, "● modified")


async def test_unsaved_prompt_edits_ask_before_leaving(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        prompts = current_screen(app, PromptsScreen)
        await wait_for_text(app, pilot, "Editing classify@2")
        assert "● modified" not in screen_text(app)
        await type_into_template(app, pilot, "!")
        await pilot.press("escape", "3")  # to the version list, then leave for the Playground
        await wait_until(pilot, lambda: isinstance(app.screen, UnsavedEditsModal), "the question")
        await pilot.press("escape")  # stay
        await wait_until(pilot, lambda: app.screen is prompts, "back on Prompts")
        assert prompts.unsaved_edits() == "classify@2"
        prompts.query_one("#version-list").focus()
        await pilot.press("j", "enter")  # another version: asks too
        await wait_until(pilot, lambda: isinstance(app.screen, UnsavedEditsModal), "the question")
        await pilot.press("d")  # discard, then open classify@1
        await wait_for_text(app, pilot, "Editing classify@1")
        assert prompts.unsaved_edits() is None
        await settle(app, pilot)
        await type_into_template(app, pilot, "?")
        await pilot.press("escape", "1")
        await wait_until(pilot, lambda: isinstance(app.screen, UnsavedEditsModal), "the question")
        await pilot.press("s")  # save, then go
        await wait_until(pilot, lambda: app.screen.sub_title == "Home", "the Home screen")
        await settle(app, pilot)
        saved = seeded.list_prompt_versions("classify")
        assert len(saved) == 3 and saved[-1].template.startswith("Review: {{ text }}?")


async def test_quitting_with_unsaved_edits_asks(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    exits = record_exit(app)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        await wait_for_text(app, pilot, "Editing classify@2")
        await type_into_template(app, pilot, "!")
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, UnsavedEditsModal), "the question")
        assert not exits
        await pilot.press("ctrl+q")  # asked already: a second ctrl+q adds no second question
        await settle(app, pilot)
        assert sum(isinstance(s, UnsavedEditsModal) for s in app.screen_stack) == 1
        await pilot.press("escape")
        assert not exits and seeded.list_prompt_versions("classify")[-1].version == 2


async def test_cancelling_a_job_asks_first(seeded: Store) -> None:
    engine = FakeEngine(seeded)
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "6", "Fine-tune")
        await pilot.press("x")
        await wait_for_text(app, pilot, "Cancel job 1?")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen.sub_title == "Fine-tune", "the job list")
        await settle(app, pilot)
        assert engine.cancelled_jobs == [] and seeded.get_job(1).status == "running"
        await pilot.press("x")
        await wait_for_text(app, pilot, "Cancel job 1?")
        await pilot.press("y")
        await wait_until(pilot, lambda: seeded.get_job(1).status == "cancelled", "the cancel")
        await settle(app, pilot)


def add_question_prompt(store: Store) -> None:
    """A dataset with a `question` column and a prompt that reads it (it lacks `text`)."""
    rows = [{"question": "2+2?", "answer": "4"}, {"question": "3+3?", "answer": "6"}]
    store.add_dataset(
        NewDataset(
            name="arith", source="tests", fingerprint="fp-arith",
            splits=[NewSplit("test", rows, "fp-arith-test")], task="generation",
            input_columns=["question"], reference_column="answer", metrics=["exact_match"],
        )
    )  # fmt: skip
    store.save_prompt_version("ask", PromptContent(template="Q: {{ question }}\nA:"))


def eval_form(app: TunelabApp) -> tuple[str, str, str, str]:
    modal = app.screen
    assert isinstance(modal, EvalModal), modal
    return (
        str(modal.query_one("#eval-prompt", Select).value),
        str(modal.query_one("#eval-model", Select).value),
        str(modal.query_one("#eval-split", Select).value),
        modal.query_one("#eval-limit", Input).value,
    )


def test_default_split_never_a_mismatched_dataset() -> None:
    datasets = {"sentiment": ["train", "test"], "arith": ["test"]}
    assert default_split(datasets, ["arith"], "sentiment/test") == "arith/test"
    assert default_split(datasets, ["sentiment"], "sentiment/train") == "sentiment/train"
    assert default_split(datasets, ["sentiment", "arith"], None) == "sentiment/test"
    assert default_split(datasets, [], "sentiment/test") is None


async def test_eval_form_preselects_the_viewed_version_and_remembers(
    seeded: Store, tmp_path: object
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    add_question_prompt(seeded)
    engine = FakeEngine(seeded)
    assert engine.missing_variables("ask@1", "sentiment") == ["question"]
    assert engine.missing_variables("ask@1", "arith") == []
    path = tmp_path / "tui.toml"
    settings = UserSettings(last_evaluation={"split": "sentiment/test", "model": "builtin-lora-1"})
    app = make_app(seeded, engine=engine, settings=settings, settings_path=path)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        prompts = current_screen(app, PromptsScreen)
        prompts.query_one("#prompt-list").focus()
        await pilot.press("home")  # "ask" sorts first
        await wait_for_text(app, pilot, "Editing ask@1")
        await show_screen(app, pilot, "4", "Runs")
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EvalModal), "the form")
        await settle(app, pilot)
        # The viewed version, the remembered model, and not the remembered sentiment split:
        # its rows lack `question`.
        assert eval_form(app) == ("ask@1", "builtin-lora-1", "arith/test", "")
        app.screen.query_one("#eval-limit", Input).value = "1"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: len(seeded.list_runs()) == 4, "the run")
        await settle(app, pilot)
        remembered = {"prompt": "ask@1", "model": "builtin-lora-1", "split": "arith/test",
                      "limit": "1"}  # fmt: skip
        assert load_settings(path).last_evaluation == remembered
    app = make_app(seeded, engine=engine, settings=load_settings(path), settings_path=path)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EvalModal), "the form")
        await settle(app, pilot)
        assert eval_form(app) == ("ask@1", "builtin-lora-1", "arith/test", "1")


def test_last_evaluation_round_trips_and_is_read_strictly(tmp_path: object) -> None:
    from pathlib import Path

    from tunelab.tui.config import ConfigError

    assert isinstance(tmp_path, Path)
    settings = UserSettings(last_evaluation={"prompt": "a@1", "split": "d/test", "limit": ""})
    path = save_settings(settings, tmp_path / "tui.toml")
    assert load_settings(path) == settings
    with pytest.raises(ConfigError, match="last_evaluation"):
        parse_settings({"last_evaluation": {"colour": "red"}}, "tui.toml")

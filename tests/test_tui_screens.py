"""Pilot tests of each screen's main flow with the fake engine."""

from __future__ import annotations

import threading

from textual.widgets import DataTable, Input, Select, Static, TextArea
from textual.worker import WorkerState

from tests.fake_engine import FakeEngine
from tests.tui_helpers import (
    current_screen,
    screen_text,
    settle,
    show_screen,
    wait_for_notification,
    wait_for_text,
    wait_until,
)
from tunelab.engine.errors import BadInputError, EngineError
from tunelab.store import Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.screens.compare import CompareScreen
from tunelab.tui.screens.help import HelpModal
from tunelab.tui.screens.playground import PlaygroundScreen
from tunelab.tui.screens.runs import RunsScreen

SIZE = (100, 30)


def set_field(app: TunelabApp, name: str, value: str) -> None:
    """Fill one field of the training form (an Input, or a Select for fields with choices)."""
    widget = app.screen.query_one(f"#field-{name}")
    assert isinstance(widget, Input | Select), widget
    widget.value = value


def job_command(app: TunelabApp) -> str:
    return str(app.screen.query_one("#job-command", Static).render())


async def test_prompts_save_new_version_then_unchanged(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        area = app.screen.query_one("#edit-template", TextArea)
        area.load_text("Review: {{ text }}\nLabel:")
        await pilot.press("ctrl+s")
        await wait_for_notification(app, pilot, "Saved classify@3")
        await settle(app, pilot)
        assert [v.version for v in seeded.list_prompt_versions("classify")] == [1, 2, 3]
        assert seeded.get_prompt_version("classify@3").template.endswith("Label:")
        await pilot.press("ctrl+s")
        await wait_for_notification(app, pilot, "Unchanged")
        await settle(app, pilot)
        assert len(seeded.list_prompt_versions("classify")) == 3


async def test_prompts_bad_examples_json_is_a_notification(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        app.screen.query_one("#edit-examples", TextArea).load_text("[not json")
        await pilot.press("ctrl+s")
        await wait_for_notification(app, pilot, "examples")
        await settle(app, pilot, expect=(BadInputError, ValueError))
        assert len(seeded.list_prompt_versions("classify")) == 2


async def test_prompts_diff_and_label(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        app.screen.query_one("#version-list").focus()
        await pilot.press("d")
        await wait_for_text(app, pilot, "classify@1 → classify@2")
        await settle(app, pilot)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen.sub_title == "Prompts", "the diff to close")
        await pilot.press("j", "l")
        await wait_until(pilot, lambda: isinstance(app.focused, Input), "the label input")
        await pilot.press(*"staging", "enter")
        await wait_for_notification(app, pilot, "staging")
        await settle(app, pilot)
        assert seeded.get_prompt_version("classify:staging").version == 1


async def test_playground_streams_and_stays_responsive(seeded: Store) -> None:
    engine = FakeEngine(seeded, gate=threading.Event())
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "3", "Playground")
        playground = current_screen(app, PlaygroundScreen)
        assert "Is this review positive or negative?" in screen_text(app)

        def generating() -> bool:
            workers = [w for w in app.workers if w.group == "generation"]
            return playground.generating and any(w.state is WorkerState.RUNNING for w in workers)

        await pilot.press("ctrl+r")
        # The fake engine yields its first token, then holds the stream at the gate.
        await wait_until(
            pilot, lambda: generating() and playground.output_text == "pos", "the first token"
        )
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpModal), "the help modal")
        # Keys were answered while the generation was still streaming, not after it.
        assert generating() and playground.output_text == "pos"
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is playground, "help to close")
        assert generating()
        assert engine.gate is not None
        engine.gate.set()
        await wait_until(pilot, lambda: not playground.generating, "the generation to finish")
        await settle(app, pilot)
        text = screen_text(app)
        assert "positive review" in text
        assert "first token 0.01 s" in text
        await pilot.press("ctrl+y")
        await wait_until(pilot, lambda: app.clipboard == "positive review", "the copied output")


async def test_playground_stop_and_engine_error(seeded: Store) -> None:
    engine = FakeEngine(seeded, gate=threading.Event())
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "3", "Playground")
        playground = current_screen(app, PlaygroundScreen)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: playground.output_text == "pos", "the first token")
        await pilot.press("ctrl+g")
        await wait_for_text(app, pilot, "stopped")
        await settle(app, pilot)
        assert not playground.generating
        engine.gate = None
        engine.fail_with = EngineError("the model ran out of memory")
        await pilot.press("ctrl+r")
        await wait_for_text(app, pilot, "failed: the model ran out of memory")
        errors = await settle(app, pilot, expect=(EngineError,))
        assert [str(e) for e in errors] == ["the model ran out of memory"]
        assert app.is_running
        await wait_for_notification(app, pilot, "out of memory")


async def test_playground_logit_bias_preview(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "3", "Playground")
        app.screen.query_one("#pg-bias", Input).value = "positive=2"
        await wait_for_text(app, pilot, "'positive' +2 → 'po' | 'sitive'")
        await settle(app, pilot)


async def test_runs_rate_output_and_evaluate(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        await pilot.press("enter")
        await wait_for_text(app, pilot, "Run 3 · classify@2 · builtin-lora-1")
        await settle(app, pilot)
        await pilot.press("j", "r", "4")  # rating sits under the r prefix
        await wait_until(pilot, lambda: seeded.run_outputs(3)[1].rating == 4, "the rating")
        await settle(app, pilot)
        await pilot.press("escape", "e")
        await wait_for_text(app, pilot, "New evaluation")
        await settle(app, pilot)
        await pilot.press("ctrl+s")
        await wait_for_text(app, pilot, "Run 4 succeeded")
        await settle(app, pilot)
        assert len(seeded.list_runs()) == 4


async def test_runs_filter_sort_and_compare(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        table = app.screen.query_one("#runs-table", DataTable)
        await pilot.press("slash", *"lora", "enter")
        await wait_until(pilot, lambda: table.row_count == 1, "the filter to keep one run")
        app.screen.query_one("#runs-filter-input", Input).value = ""
        await wait_until(pilot, lambda: table.row_count == 3, "the filter to clear")
        await pilot.press("space", "j", "space", "c")
        await wait_until(pilot, lambda: app.screen.sub_title == "Compare", "the Compare screen")
        compare = current_screen(app, CompareScreen)
        await wait_until(pilot, lambda: compare.comparison is not None, "the comparison")
        await settle(app, pilot)
        text = screen_text(app)
        assert "not significant: run 2 (classify@2 on builtin) differs from run 3" in text
        assert "accuracy" in text and "-0.250" in text


async def test_finetune_jobs_curves_launch_and_cancel(seeded: Store) -> None:
    engine = FakeEngine(seeded)
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "6", "Fine-tune")
        text = screen_text(app)
        assert "running" in text and "30/100" in text
        assert "queued: job created" in text
        await pilot.press("n")
        # The focused field's help.
        await wait_for_text(app, pilot, "base: model to fine-tune")
        await settle(app, pilot)
        await pilot.press("tab")
        await wait_for_text(app, pilot, "dataset: dataset to train on")
        set_field(app, "dataset", "sentiment")
        set_field(app, "lora_r", "16")
        await wait_for_text(app, pilot, "tunelab tune --dataset sentiment --lora-r 16")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: len(seeded.list_jobs()) == 2, "the new job")
        await settle(app, pilot)
        await pilot.press("x")
        await wait_for_text(app, pilot, "Cancel job 2?")  # asks first
        await pilot.press("y")
        await wait_until(pilot, lambda: seeded.get_job(2).status == "cancelled", "the cancel")
        await settle(app, pilot)


async def test_models_and_datasets(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "7", "Models")
        await pilot.press("j")
        await wait_for_text(app, pilot, "builtin-lora-1 (lora on sentiment step 40) ← builtin")
        await show_screen(app, pilot, "8", "Datasets")
        await wait_for_text(app, pilot, "Terrible service, never again")


async def test_real_engine_compare_and_prompt_diff_without_a_model(seeded: Store) -> None:
    """Store-only engine calls go through the real facade: compare, diff, editor parsing."""
    from tunelab.engine.api.facade import Engine

    app = make_app(seeded, engine=Engine(seeded))
    # Taller than SIZE: the Cost pane's last line (break-even) sits below the tab bar's row.
    async with app.run_test(size=(100, 32)) as pilot:
        await show_screen(app, pilot, "5", "Compare")
        screen = current_screen(app, CompareScreen)
        screen.compare([2, 3])
        await wait_until(pilot, lambda: screen.comparison is not None, "the comparison")
        await settle(app, pilot)
        comparison = screen.comparison
        assert comparison is not None and [r.id for r in comparison.runs] == [2, 3]
        assert comparison.metrics[0].name == "accuracy"
        assert comparison.metrics[0].values == [0.75, 1.0]
        assert any(e.change == "fixed" for e in comparison.examples)
        text = screen_text(app)
        assert "accuracy" in text and "0.750" in text and "1.000" in text
        assert "run 3 (classify@2 on builtin-lora-1) differs from run 2" in text
        await pilot.press("t")
        await settle(app, pilot)
        await pilot.press("w")
        await wait_for_text(app, pilot, "[-positive-]{+negative+}")
        await settle(app, pilot)
        assert "row 1: [-negative-]{+positive+}" not in screen_text(app)
        await pilot.press("t")
        await wait_for_text(app, pilot, "break-even (run 3)")
        await show_screen(app, pilot, "2", "Prompts")
        app.screen.query_one("#version-list").focus()
        await pilot.press("d")
        await wait_for_text(app, pilot, "+Is this review positive or negative?")
        await settle(app, pilot)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen.sub_title == "Prompts", "the diff to close")
        settings_area = app.screen.query_one("#edit-settings", TextArea)
        settings_area.load_text('mode = "plain"\ntemperature = 0.5')
        await pilot.press("ctrl+s")
        await wait_for_notification(app, pilot, "Saved classify@3")
        await settle(app, pilot)
        saved = seeded.get_prompt_version("classify@3")
        assert saved.mode == "plain" and saved.settings["temperature"] == 0.5
        # Normalised exactly as `tunelab prompt new/edit` would store it.
        assert saved.settings["max_new_tokens"] == 64


async def test_finetune_resume_after_cancel(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "6", "Fine-tune")
        await pilot.press("x")
        await wait_for_text(app, pilot, "Cancel job 1?")
        await pilot.press("y")
        await wait_until(pilot, lambda: seeded.get_job(1).status == "cancelled", "the cancel")
        await settle(app, pilot)
        await pilot.press("R")
        await wait_until(pilot, lambda: seeded.get_job(1).status == "queued", "the resume")
        await settle(app, pilot)
        await pilot.press("R")
        await wait_for_notification(app, pilot, "only failed or cancelled")
        await settle(app, pilot, expect=(BadInputError, EngineError, ValueError))


async def test_real_training_form_lists_every_setting_and_its_command(seeded: Store) -> None:
    from dataclasses import fields

    from tunelab.engine.api.facade import Engine
    from tunelab.engine.training.config import TrainingConfig

    app = make_app(seeded, engine=Engine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "6", "Fine-tune")
        await pilot.press("n")
        await wait_until(
            pilot, lambda: bool(app.screen.query("#field-lora_r")), "the training form"
        )
        await settle(app, pilot)
        screen = app.screen
        for field in fields(TrainingConfig):
            assert screen.query(f"#field-{field.name}"), field.name
        set_field(app, "dataset", "sentiment")
        set_field(app, "prompt", "classify@2")
        set_field(app, "lora_r", "16")
        expected = "tunelab tune --dataset sentiment --prompt classify@2 --lora-r 16"
        await wait_until(pilot, lambda: expected in job_command(app), lambda: job_command(app))
        set_field(app, "scheduler", "cosine")
        set_field(app, "eval_every_steps", "10")
        await wait_until(
            pilot, lambda: "--eval-every 10 --config training.toml" in job_command(app),
            lambda: job_command(app),
        )  # fmt: skip
        assert 'scheduler = "cosine"' in job_command(app)
        set_field(app, "lora_r", "sixteen")
        await wait_until(pilot, lambda: "lora_r" in job_command(app), lambda: job_command(app))
        set_field(app, "lora_r", "16")
        await wait_until(pilot, lambda: expected in job_command(app), lambda: job_command(app))
        await pilot.press("ctrl+s")
        # No workspace folder behind an in-memory store: the engine refuses, the app says so.
        await wait_for_notification(app, pilot, "needs a workspace")
        await settle(app, pilot, expect=(BadInputError, EngineError))
        assert app.is_running
        assert seeded.list_jobs()[0].id == 1


async def test_evaluation_progress_keeps_keys_answered_and_cancels(seeded: Store) -> None:
    engine = FakeEngine(seeded, gate=threading.Event())
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        runs = current_screen(app, RunsScreen)
        await pilot.press("e")
        await wait_for_text(app, pilot, "New evaluation")
        await settle(app, pilot)
        await pilot.press("ctrl+s")
        # The fake engine scores one row, then holds the evaluation at the gate.
        # Its rows are read from the store by the live refresh, as a worker process writes them.
        await wait_for_text(app, pilot, "Evaluating run 4 · 1/4")
        assert runs.followed_run_id == 4
        assert any(call.startswith("start_evaluation:") for call in engine.calls)
        await pilot.press("s")
        await wait_for_text(app, pilot, "sorted by metric")
        # Answered while the evaluation was still held open.
        assert seeded.get_run(4).status == "running"
        await pilot.press("x")
        await wait_for_text(app, pilot, "Stop run 4?")  # asks first
        await pilot.press("y")
        await wait_for_text(app, pilot, "Run 4 interrupted")
        await settle(app, pilot)
        assert seeded.get_run(4).status == "interrupted"
        assert not runs.query_one("#eval-progress").display  # nothing keeps animating


async def test_playground_render_error_is_shown_not_raised(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        app.screen.query_one("#edit-template", TextArea).load_text("{{ missing }}")
        await pilot.press("ctrl+s")
        await wait_for_notification(app, pilot, "Saved classify@3")
        await settle(app, pilot)
        await pilot.press("3")
        await wait_until(pilot, lambda: app.screen.sub_title == "Playground", "the Playground")
        message = "not rendered: the template uses a variable the row does not have"

        def flat_text() -> str:
            return " ".join(screen_text(app).replace("│", " ").split())

        await wait_until(pilot, lambda: message in flat_text(), flat_text)
        await settle(app, pilot, expect=(BadInputError,))
        assert app.screen.query_one("#pg-version", Select).value == "classify@3"
        assert app.is_running


async def test_prompts_new_prompt_saves_version_one(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.focused, Input), "the name input")
        await pilot.press(*"summarize", "enter")
        template = app.screen.query_one("#edit-template", TextArea)
        await wait_until(pilot, lambda: template.has_focus, "the template editor's focus")
        await pilot.press("ctrl+s")
        await wait_for_notification(app, pilot, "Saved summarize@1")
        await settle(app, pilot)
        version = seeded.get_prompt_version("summarize")
        assert version.version == 1 and version.template == "{{ text }}"
        assert "summarize" in screen_text(app)

"""Pilot tests of each screen's main flow with the fake engine."""

from __future__ import annotations

import threading

import pytest

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import screen_text, settle
from tunelab.engine.errors import EngineError
from tunelab.store import Store
from tunelab.tui.app import make_app
from tunelab.tui.screens.help import HelpModal

SIZE = (100, 30)


@pytest.fixture
def seeded() -> Store:
    store = Store.memory()
    seed_store(store)
    return store


async def test_prompts_save_new_version_then_unchanged(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(app, pilot)
        area = app.screen.query_one("#edit-template")
        area.load_text("Review: {{ text }}\nLabel:")
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert [v.version for v in seeded.list_prompt_versions("classify")] == [1, 2, 3]
        assert seeded.get_prompt_version("classify@3").template.endswith("Label:")
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert len(seeded.list_prompt_versions("classify")) == 3
        assert any("Unchanged" in n.message for n in app._notifications)


async def test_prompts_bad_examples_json_is_a_notification(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(app, pilot)
        app.screen.query_one("#edit-examples").load_text("[not json")
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert len(seeded.list_prompt_versions("classify")) == 2
        assert any("examples" in n.message for n in app._notifications)


async def test_prompts_diff_and_label(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(app, pilot)
        app.screen.query_one("#version-list").focus()
        await pilot.press("d")
        await settle(app, pilot)
        assert "classify@1 → classify@2" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("j", "l")
        await pilot.pause()
        await pilot.press(*"staging", "enter")
        await settle(app, pilot)
        assert seeded.get_prompt_version("classify:staging").version == 1


async def test_playground_streams_and_stays_responsive(seeded: Store) -> None:
    engine = FakeEngine(seeded, gate=threading.Event())
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        assert "Is this review positive or negative?" in screen_text(app)
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        # The generation is held open: keys are still answered.
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpModal)
        await pilot.press("escape")
        assert engine.gate is not None
        engine.gate.set()
        await settle(app, pilot)
        text = screen_text(app)
        assert "positive review" in text
        assert "first token 0.01 s" in text
        await pilot.press("ctrl+y")
        assert app.clipboard == "positive review"


async def test_playground_stop_and_engine_error(seeded: Store) -> None:
    engine = FakeEngine(seeded, gate=threading.Event())
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        engine.gate = None
        engine.fail_with = EngineError("the model ran out of memory")
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert app.is_running
        assert any("out of memory" in n.message for n in app._notifications)
        assert "failed: the model ran out of memory" in screen_text(app)


async def test_playground_logit_bias_preview(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        app.screen.query_one("#pg-bias").value = "positive=2"
        await settle(app, pilot)
        assert "'positive' +2 → 'po' | 'sitive'" in screen_text(app)


async def test_runs_rate_output_and_evaluate(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.press("j", "4")
        await settle(app, pilot)
        outputs = seeded.run_outputs(3)
        assert outputs[1].rating == 4
        await pilot.press("escape", "e")
        await settle(app, pilot)
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert len(seeded.list_runs()) == 4
        assert "Run 4 succeeded" in screen_text(app)


async def test_runs_filter_sort_and_compare(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(app, pilot)
        await pilot.press("slash", *"lora", "enter")
        await pilot.pause()
        assert app.screen.query_one("#runs-table").row_count == 1
        app.screen.query_one("#runs-filter-input").value = ""
        await pilot.pause()
        await pilot.press("space", "j", "space", "c")
        await settle(app, pilot)
        assert app.screen.sub_title == "Compare"
        text = screen_text(app)
        assert "run 2 vs run 3 on accuracy: not significant" in text
        assert "accuracy" in text and "-0.250" in text


async def test_finetune_jobs_curves_launch_and_cancel(seeded: Store) -> None:
    engine = FakeEngine(seeded)
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await settle(app, pilot)
        text = screen_text(app)
        assert "running" in text and "30/100" in text
        assert "queued: job created" in text
        await pilot.press("n")
        await settle(app, pilot)
        assert "base: model to fine-tune" in screen_text(app)  # the focused field's help
        await pilot.press("tab")
        await pilot.pause()
        assert "dataset: dataset to train on" in screen_text(app)
        app.screen.query_one("#field-dataset").value = "sentiment"
        app.screen.query_one("#field-lora_r").value = "16"
        await pilot.pause()
        assert "tunelab tune --dataset sentiment --lora-r 16" in screen_text(app)
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert len(seeded.list_jobs()) == 2
        await pilot.press("x")
        await settle(app, pilot)
        assert seeded.get_job(2).status == "cancelled"


async def test_models_and_datasets(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7", "j")
        await settle(app, pilot)
        assert "builtin-lora-1 (lora on sentiment step 40) ← builtin" in screen_text(app)
        await pilot.press("8")
        await settle(app, pilot)
        assert "Terrible service, never again" in screen_text(app)


async def test_real_engine_compare_and_prompt_diff_without_a_model(seeded: Store) -> None:
    """Store-only engine calls go through the real facade: compare, diff, editor parsing."""
    from tunelab.engine.api.facade import Engine

    app = make_app(seeded, engine=Engine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(app, pilot)
        app.screen.compare([2, 3])
        await settle(app, pilot)
        screen = app.screen
        comparison = screen.comparison
        assert comparison is not None and [r.id for r in comparison.runs] == [2, 3]
        assert comparison.metrics[0].name == "accuracy"
        assert comparison.metrics[0].values == [0.75, 1.0]
        assert any(e.change == "fixed" for e in comparison.examples)
        text = screen_text(app)
        assert "accuracy" in text and "0.750" in text and "1.000" in text
        assert "run 3 vs run 2 on accuracy:" in text
        await pilot.press("t")
        await settle(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
        assert "row 1: [-negative-]{+positive+}" not in screen_text(app)
        assert "[-positive-]{+negative+}" in screen_text(app)
        await pilot.press("t")
        await pilot.pause()
        assert "break-even (run 3)" in screen_text(app)
        await pilot.press("2")
        await settle(app, pilot)
        app.screen.query_one("#version-list").focus()
        await pilot.press("d")
        await settle(app, pilot)
        assert "+Is this review positive or negative?" in screen_text(app)
        await pilot.press("escape")
        app.screen.query_one("#edit-settings").load_text('mode = "plain"\ntemperature = 0.5')
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        saved = seeded.get_prompt_version("classify@3")
        assert saved.mode == "plain" and saved.settings["temperature"] == 0.5
        # Normalised exactly as `tunelab prompt new/edit` would store it.
        assert saved.settings["max_new_tokens"] == 64


async def test_finetune_resume_after_cancel(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await settle(app, pilot)
        await pilot.press("x")
        await settle(app, pilot)
        assert seeded.get_job(1).status == "cancelled"
        await pilot.press("R")
        await settle(app, pilot)
        assert seeded.get_job(1).status == "queued"
        await pilot.press("R")
        await settle(app, pilot)
        assert any("only failed or cancelled" in n.message for n in app._notifications)


async def test_real_training_form_lists_every_setting_and_its_command(seeded: Store) -> None:
    from dataclasses import fields

    from tunelab.engine.api.facade import Engine
    from tunelab.engine.training.config import TrainingConfig

    app = make_app(seeded, engine=Engine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await settle(app, pilot)
        await pilot.press("n")
        await settle(app, pilot)
        screen = app.screen
        for field in fields(TrainingConfig):
            assert screen.query(f"#field-{field.name}"), field.name
        screen.query_one("#field-dataset").value = "sentiment"
        screen.query_one("#field-prompt").value = "classify@2"
        screen.query_one("#field-lora_r").value = "16"
        await pilot.pause()
        command = str(screen.query_one("#job-command").render())
        assert "tunelab tune --dataset sentiment --prompt classify@2 --lora-r 16" in command
        screen.query_one("#field-scheduler").value = "cosine"
        screen.query_one("#field-eval_every_steps").value = "10"
        await pilot.pause()
        command = str(screen.query_one("#job-command").render())
        assert "--eval-every 10 --config training.toml" in command
        assert 'scheduler = "cosine"' in command
        screen.query_one("#field-lora_r").value = "sixteen"
        await pilot.pause()
        assert "lora_r" in str(screen.query_one("#job-command").render())
        screen.query_one("#field-lora_r").value = "16"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        # No workspace folder behind an in-memory store: the engine refuses, the app says so.
        assert app.is_running
        assert any("needs a workspace" in n.message for n in app._notifications)
        assert seeded.list_jobs()[0].id == 1


async def test_evaluation_progress_keeps_keys_answered_and_cancels(seeded: Store) -> None:
    engine = FakeEngine(seeded, gate=threading.Event())
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert app.screen.evaluating
        await pilot.press("s")  # answered while the evaluation is held open
        await pilot.pause()
        assert "sorted by metric" in screen_text(app)
        assert "Evaluating run 4 · 1/4" in screen_text(app)
        await pilot.press("x")
        await settle(app, pilot)
        assert seeded.get_run(4).status == "interrupted"
        assert not app.screen.evaluating
        assert "Run 4 interrupted" in screen_text(app)


async def test_playground_render_error_is_shown_not_raised(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(app, pilot)
        app.screen.query_one("#edit-template").load_text("{{ missing }}")
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        await pilot.press("3")
        await settle(app, pilot)
        assert app.screen.query_one("#pg-version").value == "classify@3"
        text = " ".join(screen_text(app).replace("│", " ").split())
        assert "not rendered: the template uses a variable the row does not have" in text
        assert app.is_running


async def test_prompts_new_prompt_saves_version_one(seeded: Store) -> None:
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(app, pilot)
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"summarize", "enter")
        await pilot.pause()
        assert app.screen.query_one("#edit-template").has_focus
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        version = seeded.get_prompt_version("summarize")
        assert version.version == 1 and version.template == "{{ text }}"
        assert "summarize" in screen_text(app)

"""Snapshots of every screen and detail view (modals, forms and confirmations too) at 80x24 in
the three built-in themes, and of the main screens at 100x30 (pinned clock, no cursor blink).

The default suite draws every view at 80x24 in the default theme and the 100x30 screens in
the dark theme; the light and high-contrast themes are `slow` (run with -m slow).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any
from unittest import mock

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Input, TextArea

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import SENTIMENT_ROWS, frozen_store_clock, seed_store
from tests.tui_helpers import current_screen, settle, wait_for_text, wait_until
from tunelab.store import (
    NewDataset,
    NewModel,
    NewRunOutput,
    NewRunSample,
    NewSplit,
    NewSweep,
    Store,
)
from tunelab.themes import DEFAULT_THEME
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.config import UserSettings
from tunelab.tui.screens.blind_ab import BlindABModal
from tunelab.tui.screens.compare import CompareScreen
from tunelab.tui.screens.confirm import ConfirmModal, QuitModal, UnsavedEditsModal
from tunelab.tui.screens.correction import CorrectionModal
from tunelab.tui.screens.eval_modal import EvalModal
from tunelab.tui.screens.example_detail import ExampleDetailModal
from tunelab.tui.screens.help import HelpModal
from tunelab.tui.screens.job_detail import JobDetailModal
from tunelab.tui.screens.optimize import OptimizeModal, SearchModal
from tunelab.tui.screens.run_detail import RunDetailModal
from tunelab.tui.screens.stability import StabilityModal
from tunelab.tui.screens.sweeps import SweepsModal
from tunelab.tui.screens.trend import TrendModal

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


def seeded_app(theme: str, view: str) -> TunelabApp:
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
        if view in EXTRA_SEED:
            EXTRA_SEED[view](store, ids)
    return make_app(store, engine=FakeEngine(store), settings=UserSettings(theme=theme))


def scored_checkpoints(store: Store, ids: dict[str, int]) -> None:
    """Three scored checkpoints on every job, so whichever job is selected has a trend."""
    names = {m.name: m for m in store.list_models()}
    for job in store.list_jobs():
        for step, accuracy in ((10, 0.5), (20, 0.75), (30, 0.625)):
            name = f"builtin-job{job.id}-step-{step}"
            model = names.get(name) or store.add_model(
                NewModel(name, "adapter", "artifact", f"/models/j{job.id}-{step}",
                         base_model_id=ids["base"], method="lora", job_id=job.id, step=step)
            )  # fmt: skip
            store.update_model_metrics(model.id, {"accuracy": accuracy})


def vote_run(store: Store, ids: dict[str, int]) -> None:
    """A finished three-sample run of classify@2, its rows agreeing less and less."""
    samples = [
        ["positive", "positive", "positive"],
        ["negative", "positive", "negative"],
        ["positive", "negative", "negative"],
        ["negative", "positive", "positive"],
    ]
    run = store.create_run(
        ids["v2"], ids["base"], ids["dataset"], "test", len(SENTIMENT_ROWS),
        {"temperature": 0.7}, metric_names=["accuracy"], samples=3,
    )  # fmt: skip
    outputs: list[NewRunOutput] = []
    others: list[NewRunSample] = []
    for idx, (row, answers) in enumerate(zip(SENTIMENT_ROWS, samples, strict=True)):
        for k, answer in enumerate(answers):
            right = float(answer == row["label"])
            fields: dict[str, Any] = {
                "output": answer, "prediction": answer, "scores": {"accuracy": right},
                "tokens_in": 10, "tokens_out": 1, "latency_ms": 12.0,
            }  # fmt: skip
            if k == 0:
                outputs.append(NewRunOutput(row_idx=idx, rendered_prompt=row["text"],
                                            reference=row["label"], **fields))  # fmt: skip
            else:
                others.append(NewRunSample(row_idx=idx, sample_idx=k, **fields))
    store.add_sampled_outputs(run.id, outputs, others)
    store.finish_run(run.id, "succeeded", {"accuracy": 0.5})


def finished_sweep(store: Store, ids: dict[str, int]) -> None:
    """A sweep of three trials (two complete, one pruned) whose best is the tuned model."""
    sweep = store.create_sweep(
        NewSweep(
            method="lora", base_model_id=ids["base"], dataset_id=ids["dataset"],
            prompt_version_id=ids["v2"], space="lora_r=4|8|16", metric="val_accuracy",
            direction="maximize", n_trials=3, parallel=1, pruner="median", seed=0, config={},
            study_path="unused",
        )
    )  # fmt: skip
    for number, rank, state, value in ((0, 4, "complete", 0.75), (1, 8, "pruned", None),
                                       (2, 16, "complete", 0.5)):  # fmt: skip
        store.add_sweep_trial(sweep.id, number, {"lora_r": rank})
        if value is None:
            store.update_sweep_trial(sweep.id, number, state=state, pruned_at_step=5)
        else:
            store.update_sweep_trial(sweep.id, number, state=state, value=value)
    store.finish_sweep(sweep.id, 0, ids["tuned"], [f"sweep-{sweep.id}-best"])


def prompt_search(store: Store, ids: dict[str, int]) -> None:
    """The fake engine's prompt search from classify@1 on a dataset with a validation split."""
    from tests.fake_engine import FakeSearch
    from tunelab.engine.optimize.search import OptimizeRequest

    store.add_dataset(
        NewDataset(
            name="reviews", source="tests", fingerprint="fp-reviews", task="classification",
            splits=[NewSplit("train", SENTIMENT_ROWS, "fp-rt"),
                    NewSplit("validation", SENTIMENT_ROWS, "fp-rv")],
            input_columns=["text"], reference_column="label", labels=["positive", "negative"],
            metrics=["accuracy"],
        )
    )  # fmt: skip
    request = OptimizeRequest(prompt="classify@1", dataset="reviews", budget=3)
    FakeSearch(store).run(request, lambda progress: None, lambda: False)


EXTRA_SEED: dict[str, Callable[[Store, dict[str, int]], None]] = {
    "finetune-trend": scored_checkpoints,
    "search": prompt_search,
    "stability": vote_run,
    "sweeps": finished_sweep,
}
"""Rows only some views need, seeded for those views alone (the other snapshots stay as
they are)."""


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


async def prompts_trend(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "prompts")
    await open_modal(app, pilot, ["T"], TrendModal)


async def finetune_trend(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "finetune")
    await open_modal(app, pilot, ["T"], TrendModal)


async def blind_ab(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "compare")
    # The sides and order come from a fresh random seed: pin it.
    with mock.patch.object(random.SystemRandom, "randrange", return_value=7):
        await open_modal(app, pilot, ["b"], BlindABModal)


async def stability(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "runs")
    await open_modal(app, pilot, ["v"], StabilityModal)


async def sweeps(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "finetune")
    await open_modal(app, pilot, ["w"], SweepsModal)


async def optimize_form(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "prompts")
    await open_modal(app, pilot, ["o"], OptimizeModal)


async def search(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "prompts")
    versions = app.screen.query_one("#version-list", DataTable)
    versions.move_cursor(row=versions.get_row_index("classify@1"))
    await settle_drawn(app, pilot)
    await open_modal(app, pilot, ["O"], SearchModal)


async def correction(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "runs")
    await pilot.press("enter")
    await settle_drawn(app, pilot)
    await open_modal(app, pilot, ["w"], CorrectionModal)


async def new_evaluation(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "runs")
    await open_modal(app, pilot, ["e"], EvalModal)


async def unsaved_edits(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "prompts")
    await wait_for_text(app, pilot, "Editing classify@2")
    app.screen.query_one("#edit-template", TextArea).focus()
    await pilot.press("end", "!")
    await wait_for_text(app, pilot, "● modified")
    await open_modal(app, pilot, ["escape", "3"], UnsavedEditsModal)


async def cancel_job(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "finetune")
    await open_modal(app, pilot, ["x"], ConfirmModal)


async def quit_while_running(app: TunelabApp, pilot: Pilot[Any]) -> None:
    await open_screen(app, pilot, "home")
    await wait_until(pilot, lambda: app.activity is not None, "the activity count")
    await open_modal(app, pilot, ["ctrl+q"], QuitModal)


DETAILS: dict[str, Callable[[TunelabApp, Pilot[Any]], Awaitable[None]]] = {
    "job-detail": job_detail,
    "run-detail": run_detail,
    "example-detail": example_detail,
    "help": runs_help,
    "prompts-trend": prompts_trend,
    "finetune-trend": finetune_trend,
    "blind-ab": blind_ab,
    "stability": stability,
    "sweeps": sweeps,
    "optimize": optimize_form,
    "search": search,
    "correction": correction,
    "new-evaluation": new_evaluation,
    "unsaved-edits": unsaved_edits,
    "cancel-job": cancel_job,
    "quit": quit_while_running,
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
    app = seeded_app(theme, view)

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

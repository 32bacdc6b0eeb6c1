"""Detail views (a job, a run, a compared row), column priorities at 80 columns, and help
grouped by screen with keys as typed."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import current_screen, screen_text, settle, show_screen, wait_until
from tunelab.store import NewModel, Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.screens.compare import CompareScreen
from tunelab.tui.screens.example_detail import ExampleDetailModal
from tunelab.tui.screens.help import HelpModal, help_table, typed_key, typed_keys
from tunelab.tui.screens.job_detail import JobDetailModal
from tunelab.tui.screens.run_detail import RunDetailModal
from tunelab.tui.widgets.columns import Column, PriorityTable, elide_middle, fit_columns

NARROW = (80, 24)
LONG_ERROR = (
    "RuntimeError: CUDA out of memory while allocating the optimizer state for the adapter of "
    "layer 23; lower batch_size or gradient_accumulation_steps and resume the job"
)


@pytest.fixture
def seeded() -> tuple[Store, dict[str, int]]:
    store = Store.memory()
    ids = seed_store(store)
    return store, ids


def app_for(store: Store) -> TunelabApp:
    return make_app(store, engine=FakeEngine(store))


async def test_enter_on_a_job_opens_its_detail(seeded: tuple[Store, dict[str, int]]) -> None:
    store, ids = seeded
    job_id = ids["job"]
    store.update_job(job_id, status="failed", error=LONG_ERROR, config={"lr": 0.001, "epochs": 1.0})
    checkpoint = store.add_model(
        NewModel("builtin-job1-step-30", "adapter", "artifact", "/models/j1-30",
                 base_model_id=ids["base"], method="lora", job_id=job_id, step=30)
    )  # fmt: skip
    store.mark_best_model(job_id, checkpoint.id)
    app = app_for(store)
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "6", "Fine-tune")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailModal), "the job detail")
        await settle(app, pilot)
        modal = current_screen(app, JobDetailModal)
        text = modal.body().plain
        assert "Job 1 · lora · failed" in screen_text(app)
        assert "lr = 0.001" in text
        assert "epochs" not in text.split("Settings changed")[1].split("Validation")[0]
        assert "eval_loss 0.0833 at step 30" in text
        assert "★ builtin-job1-step-30 · step 30" in text
        assert LONG_ERROR in text  # whole; the view wraps it
        assert "Error" in screen_text(app)  # right below the job's summary, on the first page
        await pilot.press("q")
        await wait_until(pilot, lambda: not isinstance(app.screen, JobDetailModal), "closing")


async def test_enter_on_an_output_opens_the_run_at_that_row(
    seeded: tuple[Store, dict[str, int]],
) -> None:
    store, _ids = seeded
    app = app_for(store)
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        await pilot.press("enter")  # run 3's outputs
        await settle(app, pilot)
        await pilot.press("j", "enter")  # the second output, in full
        await wait_until(pilot, lambda: isinstance(app.screen, RunDetailModal), "the run detail")
        await settle(app, pilot)
        text = screen_text(app)
        assert "Run 3 · classify@2 on builtin-lora-1" in text
        assert "accuracy 1.0000" in text
        assert "Row 1 (2 of 4" in text
        assert "Review: Terrible service, never again" in text
        assert "reference negative" in text and "scores accuracy 1.0000" in text
        assert "rating —" in text
        await pilot.press("n")
        await wait_until(pilot, lambda: "Row 2 (3 of 4" in screen_text(app), "the next row")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, RunDetailModal), "closing")


async def test_i_on_the_run_list_opens_the_run_detail(
    seeded: tuple[Store, dict[str, int]],
) -> None:
    store, _ids = seeded
    app = app_for(store)
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, RunDetailModal), "the run detail")
        await settle(app, pilot)
        text = screen_text(app)
        assert "Latency probe (batch size 1)" in text and "none taken" in text
        assert "Row 0 (1 of 4" in text


async def test_enter_on_a_compared_example_opens_input_outputs_and_diff(
    seeded: tuple[Store, dict[str, int]],
) -> None:
    store, ids = seeded
    app = app_for(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "5", "Compare")
        compare = current_screen(app, CompareScreen)
        compare.compare([ids["run2"], ids["run3"]])
        await settle(app, pilot)
        await pilot.press("t")
        compare.query_one("#compare-examples").focus()
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ExampleDetailModal), "the example detail"
        )
        await settle(app, pilot)
        text = screen_text(app)
        assert "Row 3 · fixed" in text
        assert "text: The plot made no sense" in text
        assert "Output of" in text and "[-positive-]" in text and "{+negative+}" in text
        assert isinstance(app.screen, ExampleDetailModal)
        assert app.screen.detail.shared_rows == 4


@pytest.mark.parametrize(("key", "title", "table"), [("4", "Runs", "#runs-table"),
                                                     ("1", "Home", "#home-runs")])  # fmt: skip
async def test_main_metric_and_status_stay_at_80_columns(
    seeded: tuple[Store, dict[str, int]], key: str, title: str, table: str
) -> None:
    store, _ids = seeded
    app = app_for(store)
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, key, title)
        shown = app.screen.query_one(table, PriorityTable).shown_columns
        assert {"Status", "Main metric"} <= set(shown)
        text = screen_text(app)
        assert "accuracy 1.000" in text and "succeeded" in text
        if title == "Home":
            assert "builtin-lora-1 (accuracy 1.000)" in text  # the best checkpoint, whole


async def test_columns_drop_by_priority_as_the_terminal_narrows(
    seeded: tuple[Store, dict[str, int]],
) -> None:
    store, _ids = seeded
    app = app_for(store)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        table = app.screen.query_one("#runs-table", PriorityTable)
        assert "Dataset" in table.shown_columns
        await pilot.resize_terminal(50, 24)
        await wait_until(pilot, lambda: "Dataset" not in table.shown_columns, "a narrower table")
        assert {"Run", "Status", "Main metric"} <= set(table.shown_columns)
        assert table.selected_key() == "3"


def test_fit_columns_drops_the_highest_priority_number_first() -> None:
    columns = [Column("Name", 0, 30, "middle"), Column("Notes", 2), Column("Where", 1),
               Column("Metric", 0)]  # fmt: skip
    rows = [["emotion-lora-job-3-step-400", "a long note about it", "slurm job 7", "f1 0.81"]]
    assert [i for i, _w in fit_columns(columns, rows, 200)] == [0, 1, 2, 3]
    assert [i for i, _w in fit_columns(columns, rows, 52)] == [0, 2, 3]
    assert fit_columns(columns, rows, 40) == [(0, 27), (3, 7)]
    # With only never-dropping columns left, the name gives way, the metric is never cut.
    assert fit_columns(columns, rows, 24) == [(0, 13), (3, 7)]
    assert elide_middle("emotion-lora-job-3-step-400", 18) == "emotion-l…step-400"
    assert elide_middle("short", 18) == "short"


def test_keys_read_as_typed() -> None:
    assert typed_key("question_mark") == "?"
    assert typed_key("slash") == "/"
    assert typed_key("ctrl+p") == "ctrl+p"
    assert typed_key("escape") == "escape"
    assert typed_keys("escape,question_mark,q") == "escape, ?, q"


async def test_help_is_grouped_with_typed_keys_and_no_textual_internals(
    seeded: tuple[Store, dict[str, int]],
) -> None:
    store, _ids = seeded
    app = app_for(store)
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpModal), "the help modal")
        help_modal = current_screen(app, HelpModal)
        groups = list(help_modal.groups())
        assert groups[0] == "Runs screen"
        assert {"Lists", "Go to a screen", "Everywhere"} <= set(groups)
        by_id = {row.id: row for row in help_modal.rows}
        assert by_id["show-help"].keys == "?" and by_id["show-help"].group == "Everywhere"
        assert by_id["runs-filter"].keys == "/"
        assert by_id["command-palette"].keys == "ctrl+p"
        assert not any(row.action.startswith(("cursor_", "page_")) for row in help_modal.rows)
        assert "question_mark" not in screen_text(app)
        # "What it does" wraps at 80 columns instead of being cut.
        console = Console(width=76, file=io.StringIO(), record=True)
        console.print(help_table(help_modal.groups()["Runs screen"]))
        printed = " ".join(console.export_text().split())
        assert "…" not in printed
        assert "kept beside the original; each save is a new version" in printed


async def test_the_detail_views_are_palette_commands_from_home(
    seeded: tuple[Store, dict[str, int]],
) -> None:
    from tunelab.tui.commands import palette_commands

    store, _ids = seeded
    app = app_for(store)
    async with app.run_test(size=NARROW) as pilot:
        await settle(app, pilot)
        titles = {command.title: command.help for command in palette_commands(app, app.screen)}
        assert {"Details (Runs)", "Details (Fine-tune)", "Example (Compare)"} <= set(titles)
        assert "[i]" in titles["Details (Runs)"]

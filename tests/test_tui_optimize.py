"""Prompt optimization in the TUI (#22): `o` on the Prompts screen starts a search from the
selected version through a small form; `O` shows the search (table, plot, best diff, gap)."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Select, Static

from tests.fake_engine import FakeEngine
from tests.tui_helpers import current_screen, show_screen, wait_for_text, wait_until
from tunelab.engine.optimize.history import search_history
from tunelab.store import NewDataset, NewModel, NewRunOutput, NewSplit, PromptContent, Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.keys import all_bindings
from tunelab.tui.screens.optimize import OptimizeModal, SearchModal, gap_line
from tunelab.tui.screens.prompts import PromptsScreen

SIZE = (120, 40)
ROWS = [{"text": f"review {i}", "label": "positive" if i % 2 else "negative"} for i in range(4)]


def _store() -> Store:
    store = Store.memory()
    store.add_dataset(
        NewDataset(
            name="sentiment",
            source="tests",
            fingerprint="fp",
            splits=[
                NewSplit("train", ROWS, "a"),
                NewSplit("validation", ROWS, "b"),
                NewSplit("test", ROWS, "c"),
            ],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=["positive", "negative"],
            metrics=["accuracy"],
        )
    )
    store.add_model(NewModel("builtin", "base", "builtin", "/models/builtin"))
    store.save_prompt_version("classify", PromptContent(template="Review: {{ text }}\nLabel:"))
    return store


def test_the_optimize_bindings_have_ids() -> None:
    ids = {binding.id for _, binding in all_bindings(TunelabApp)}
    assert {"prompts-optimize", "prompts-search", "optimize-start", "search-close"} <= ids


async def test_o_starts_a_search_and_shows_its_candidates_best_and_diff() -> None:
    store = _store()
    engine = FakeEngine(store)
    app = make_app(store, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        prompts = current_screen(app, PromptsScreen)
        await wait_until(pilot, lambda: prompts.selected_version() is not None, "a version")
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, OptimizeModal), "the form")
        form = app.screen
        assert isinstance(form, OptimizeModal)
        form.query_one("#optimize-budget", Input).value = "0"
        await pilot.press("ctrl+s")  # a budget of 0 is refused in the form, which stays open
        await wait_until(
            pilot,
            lambda: any("budget must be at least 1" in n.message for n in app._notifications),
            "the refusal",
        )
        assert isinstance(app.screen, OptimizeModal)
        form.query_one("#optimize-budget", Input).value = "3"
        form.query_one("#optimize-strategy", Select).value = "tpe"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchModal), "the search view")
        assert engine.calls[-1] == "optimize:classify@1:3:tpe"
        view = app.screen
        assert isinstance(view, SearchModal)
        table = view.query_one("#search-points", DataTable)
        names = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert names == ["classify@1 (seed)", "classify@2", "classify@3 ★", "classify@4"]
        await wait_for_text(app, pilot, "best classify@3: validation accuracy 0.7500")
        assert "not evaluated on test yet" in str(view.query_one("#search-gap", Static).render())
        assert "candidate 2" in str(view.query_one("#search-diff", Static).render())
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is prompts, "the view to close")


async def test_shift_o_reads_a_search_back_with_its_validation_test_gap() -> None:
    store = _store()
    engine = FakeEngine(store)
    app = make_app(store, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        prompts = current_screen(app, PromptsScreen)
        await wait_until(pilot, lambda: prompts.selected_version() is not None, "a version")
        # A search ran earlier (say from the CLI); its best was then evaluated on test.
        from tunelab.engine.optimize.search import OptimizeRequest

        engine.optimize(OptimizeRequest(prompt="classify@1", dataset="sentiment", budget=2),
                        lambda p: None, lambda: False)  # fmt: skip
        best = store.get_prompt_version("classify:optimized")
        model = store.get_model("builtin")
        run = store.create_run(best.id, model.id, 1, "test", 1, {}, metric_names=["accuracy"])
        store.add_run_outputs(run.id, [NewRunOutput(row_idx=0, rendered_prompt="p", output="x",
                                                    scores={"accuracy": 0.5})])  # fmt: skip
        store.finish_run(run.id, "succeeded", {"accuracy": 0.5})
        history = search_history(store, "classify@1")
        assert history.gap == 0.25
        prompts.query_one("#version-list", DataTable).move_cursor(row=0)
        await pilot.press("O")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchModal), "the search view")
        await wait_for_text(app, pilot, "validation/test gap +0.2500")
        assert gap_line(history) in str(app.screen.query_one("#search-gap", Static).render())

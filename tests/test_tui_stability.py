"""The stability view in the TUI: `v` on the Runs screen opens a vote run's most fragile rows."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from tests.fake_engine import FakeEngine
from tests.tui_helpers import (
    current_screen,
    settle,
    show_screen,
    wait_for_notification,
    wait_for_text,
    wait_until,
)
from tests.vote_helpers import stored_vote_run
from tunelab.engine.errors import BadInputError
from tunelab.store import Store
from tunelab.tui.app import make_app
from tunelab.tui.keys import all_bindings
from tunelab.tui.screens.runs import RunsScreen
from tunelab.tui.screens.stability import StabilityModal

SIZE = (120, 40)


def _store() -> Store:
    store = Store.memory()
    stored_vote_run(store, [["4", "4", "4"], ["1", "2", "3"], ["5", "5", None]], ["4", "2", "5"])
    stored_vote_run(store, [["4"], ["2"], ["5"]], ["4", "2", "5"])  # a single-sample run
    return store


def test_the_stability_binding_is_documented_with_an_id() -> None:
    from tunelab.tui.app import TunelabApp

    ids = {binding.id for _, binding in all_bindings(TunelabApp)}
    assert {"runs-stability", "stability-close"} <= ids


async def test_stability_view_ranks_rows_and_shows_their_answers() -> None:
    store = _store()
    engine = FakeEngine(store)
    app = make_app(store, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        runs = current_screen(app, RunsScreen)
        await wait_until(pilot, lambda: len(runs.all_runs) == 2, "the runs")
        await pilot.press("G")  # the oldest run, run 1, is the vote run
        await pilot.press("v")
        await wait_until(
            pilot, lambda: isinstance(app.screen, StabilityModal) and app.screen.is_mounted, "it"
        )
        await wait_for_text(app, pilot, "Run 1 stability · 3 samples per row")
        modal = app.screen
        assert isinstance(modal, StabilityModal) and engine.calls[-1] == "stability:1"
        table = modal.query_one("#stability-table", DataTable)
        keys = [row.key.value for row in table.ordered_rows]
        assert keys == ["1", "2", "0"]  # all three answers differ, then 2 of 3, then unanimous
        await wait_for_text(app, pilot, "1× 2 ✓  (samples 1)")
        assert "so the answer is 2" in str(modal.query_one("#stability-detail", Static).render())
        await pilot.press("j")
        await wait_for_text(app, pilot, "1× (no answer) ✗  (samples 2)")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is runs, "the Runs screen again")
        await pilot.press("g", "v")  # run 2 has one sample per row: a one-line notice
        await wait_for_notification(app, pilot, "run 2 has one sample per row")
        errors = await settle(app, pilot, expect=(BadInputError,))
        assert len(errors) == 1 and not isinstance(app.screen, StabilityModal)

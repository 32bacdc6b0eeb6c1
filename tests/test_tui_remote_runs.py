"""The Runs screen ingests remote events while a run a Slurm job evaluates goes on: its rows
arrive as files, which change nothing in the database until a front end ingests them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import settle, show_screen, wait_for_workers, wait_until
from tunelab.store import Store
from tunelab.tui.app import make_app
from tunelab.tui.screens.runs import REMOTE_POLL_SECONDS, RunsScreen
from tunelab.tui.widgets.nav_table import NavTable


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store, dict[str, int]]]:
    """The TUI's store and a second one on the same file (the ingesting CLI, say)."""
    path = tmp_path / "tunelab.db"
    mine = Store(path)
    ids = seed_store(mine)
    other = Store(path)
    yield mine, other, ids
    other.close()
    mine.close()


async def test_the_runs_screen_ingests_while_a_remote_run_goes_on(
    stores: tuple[Store, Store, dict[str, int]],
) -> None:
    mine, other, ids = stores
    run = other.create_run(ids["v1"], ids["base"], ids["dataset"], "test", 4, {},
                           metric_names=["accuracy"]).id  # fmt: skip
    other.hand_run_to_scheduler(run, "slurm:job-1")  # a Slurm job evaluates it: no pid here
    engine = FakeEngine(mine)
    app = make_app(mine, engine=engine)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        table = app.screen.query_one("#runs-table", NavTable)
        await wait_until(pilot, lambda: str(run) in [str(k.value) for k in table.rows], "run")
        before = engine.calls.count("refresh")
        await wait_until(
            pilot,
            lambda: engine.calls.count("refresh") >= before + 2,
            "two ingests with nothing committed meanwhile",
            timeout=4 * REMOTE_POLL_SECONDS,
        )
        # What an ingest commits (the run ending) shows by the live reload.
        other.finish_run(run, "succeeded", {"accuracy": 1.0})
        await wait_until(pilot, lambda: "succeeded" in str(table.get_row(str(run))), "the end")
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        calls = engine.calls.count("refresh")
        screen.poll_remote()  # nothing remote goes on any more: no ingest
        await wait_for_workers(app, pilot)
        assert engine.calls.count("refresh") == calls

"""The tab bar, the status line, quitting while work runs, and status lines that always end.

Pilot tests over the fake engine: an evaluation "process" is a thread writing real store
rows, so the status line and the Runs screen learn of it only through the store.
"""

from __future__ import annotations

import threading

from tests.fake_engine import FakeEngine
from tests.tui_helpers import (
    current_screen,
    screen_text,
    settle,
    show_screen,
    wait_for_text,
    wait_until,
)
from tunelab.engine.api.types import Activity
from tunelab.engine.errors import BadInputError, EngineError
from tunelab.store import Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.screens.compare import CompareScreen
from tunelab.tui.screens.confirm import ConfirmModal, QuitModal, running_summary
from tunelab.tui.screens.runs import RunsScreen
from tunelab.tui.widgets.status_line import StatusLine, activity_text, elide_middle

SIZE = (120, 30)


def status_of(app: TunelabApp) -> str:
    return str(app.screen.query_one(StatusLine).render())


async def start_held_evaluation(app: TunelabApp, pilot: object) -> RunsScreen:
    """Start an evaluation from the Runs form; the fake holds it after its first row."""
    await show_screen(app, pilot, "4", "Runs")  # type: ignore[arg-type]
    await pilot.press("e")  # type: ignore[attr-defined]
    await wait_for_text(app, pilot, "New evaluation")  # type: ignore[arg-type]
    await pilot.press("ctrl+s")  # type: ignore[attr-defined]
    await wait_for_text(app, pilot, "Evaluating run 4 · 1/4")  # type: ignore[arg-type]
    return current_screen(app, RunsScreen)


def test_middle_elision_and_activity_wording() -> None:
    assert elide_middle("/home/me/projects/irony-workspace", 15) == "/home/m…rkspace"
    assert len(elide_middle("x" * 50, 15)) == 15 and elide_middle("short", 15) == "short"
    assert activity_text(Activity()) == "nothing running"
    assert activity_text(Activity(evaluations=2, jobs_queued=1)) == "2 evals · 1 queued running"
    assert running_summary(Activity(evaluations=1, jobs_running=2, sweeps=1)) == (
        "1 evaluation, 2 fine-tuning jobs and 1 sweep"
    )


async def test_tab_bar_names_every_screen_with_its_key_and_follows_the_keymap(
    seeded: Store,
) -> None:
    from tunelab.tui.config import UserSettings

    settings = UserSettings(keymap={"show-runs": "f4"})
    app = make_app(seeded, engine=FakeEngine(seeded), settings=settings)
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(app, pilot)
        text = await wait_for_text(app, pilot, "1 Home")
        assert "2 Prompts" in text and "9 Report" in text and "f4 Runs" in text
        await show_screen(app, pilot, "f4", "Runs")
        assert "f4 Runs" in screen_text(app)
    async with make_app(seeded, engine=FakeEngine(seeded)).run_test(size=(80, 24)) as pilot:
        narrow = await wait_for_text(pilot.app, pilot, "1 Home")
        assert "9 Rep" in narrow  # at 80 columns the others shorten; the current stays whole
        assert "1 job running" in narrow  # what runs keeps its room; the workspace gives way
    async with make_app(seeded, engine=FakeEngine(seeded)).run_test(size=(160, 24)) as pilot:
        await wait_for_text(pilot.app, pilot, "(no workspace folder) · 1 job running")


async def test_status_line_counts_an_evaluation_then_quit_asks_and_stays(seeded: Store) -> None:
    engine = FakeEngine(seeded, gate=threading.Event())
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        # The seeded workspace has one fine-tuning job running (in "another session").
        await wait_until(pilot, lambda: "1 job running" in status_of(app), "the job counted")
        await start_held_evaluation(app, pilot)
        await wait_until(
            pilot, lambda: "1 eval · 1 job running" in status_of(app), lambda: status_of(app)
        )
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitModal), "the quit question")
        text = screen_text(app)
        assert "1 evaluation and 1 fine-tuning job keep running in the background" in text
        assert "Quit — keeps running" in text and "Stay" in text
        await pilot.press("n")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmModal), "it to close")
        assert app.is_running
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitModal), "the quit question")
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.is_running, "the app to quit")
    assert seeded.get_run(4).status == "running"  # quitting stopped nothing
    engine.evaluation_stops[4].set()


async def test_quit_with_nothing_running_just_quits(seeded: Store) -> None:
    for job in seeded.list_jobs(statuses=("queued", "running")):
        seeded.update_job(job.id, status="succeeded")
    app = make_app(seeded, engine=FakeEngine(seeded))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await wait_until(pilot, lambda: "nothing running" in status_of(app), "an idle status")
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: not app.is_running, "the app to quit")


async def test_an_evaluation_that_cannot_start_ends_its_status_line(seeded: Store) -> None:
    engine = FakeEngine(seeded, fail_with=BadInputError("split 'test' of 'reviews' has no rows"))
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        runs = current_screen(app, RunsScreen)
        await pilot.press("e")
        await wait_for_text(app, pilot, "New evaluation")
        await pilot.press("ctrl+s")
        await wait_for_text(app, pilot, "Evaluation did not start: split 'test' of 'reviews'")
        await settle(app, pilot, expect=(BadInputError,))
        assert not runs.query_one("#eval-progress").display


async def test_a_failed_evaluation_shows_its_reason_and_no_progress_bar(seeded: Store) -> None:
    engine = FakeEngine(seeded, gate=threading.Event())
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        runs = await start_held_evaluation(app, pilot)
        assert runs.query_one("#eval-progress").display
        # Its worker process dies with a reason (as the real worker records it).
        seeded.finish_run(4, "failed", {}, "CUDA out of memory")
        await wait_for_text(app, pilot, "Run 4 failed: CUDA out of memory")
        assert not runs.query_one("#eval-progress").display
        engine.evaluation_stops[4].set()
        assert engine.gate is not None
        engine.gate.set()
        await settle(app, pilot)


async def test_a_failed_compare_says_why_instead_of_comparing_forever(seeded: Store) -> None:
    engine = FakeEngine(seeded)
    app = make_app(seeded, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "5", "Compare")
        screen = current_screen(app, CompareScreen)
        screen.compare([1, 999])
        await wait_for_text(app, pilot, "Comparison failed:")
        assert "Comparing…" not in screen_text(app)
        await settle(app, pilot, expect=(BadInputError, EngineError, Exception))

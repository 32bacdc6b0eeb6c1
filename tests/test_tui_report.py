"""The Report screen: the decision report's Markdown on screen, from any screen's key or the
command palette; a request typed in narrows it; the engine's one-line refusal stays shown."""

from __future__ import annotations

from textual.widgets import Input, Markdown, Static

from tests import compare_helpers as ch
from tests.fake_engine import FakeEngine
from tests.tui_helpers import current_screen, screen_text, settle, show_screen, wait_until
from tunelab.engine.errors import BadInputError
from tunelab.store import Store
from tunelab.tui.app import make_app
from tunelab.tui.commands import palette_commands
from tunelab.tui.screens.report import ReportRequest, ReportScreen, parse_request

SIZE = (110, 40)


def _store() -> tuple[Store, int, int]:
    """A prompt run (4 of 10 right) and a fine-tuned run (9 of 10) on ds/test."""
    store = Store.memory()
    pv = ch.prompt(store)
    base = ch.base_model(store)
    tuned = ch.finetuned_model(store, base, "ft")
    ds = ch.dataset(store, n=10)
    prompt_run = ch.classification_run(store, pv, base, ds, [1, 0, 0, 1, 0, 1, 0, 1, 0, 0])
    tuned_run = ch.classification_run(store, pv, tuned, ds, [1] * 9 + [0], latency_ms=80.0)
    return store, prompt_run.id, tuned_run.id


def test_a_typed_request_names_a_dataset_and_runs() -> None:
    assert parse_request("") == ReportRequest()
    assert parse_request("emotion") == ReportRequest(dataset="emotion")
    assert parse_request("3, 7") == ReportRequest(prompt_run=3, finetune_run=7)
    assert parse_request("emotion 3") == ReportRequest(dataset="emotion", prompt_run=3)


async def test_the_report_screen_shows_the_engines_report() -> None:
    store, prompt_run, tuned_run = _store()
    engine = FakeEngine(store)
    app = make_app(store, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        titles = [c.title for c in palette_commands(app, app.screen)]
        assert "Go to Report" in titles and "Rebuild (Report)" in titles
        await show_screen(app, pilot, "9", "Report")
        screen = current_screen(app, ReportScreen)
        await wait_until(pilot, lambda: screen.report is not None, "the report")
        await settle(app, pilot)
        report = screen.report
        assert report is not None
        assert (report.prompt_run.id, report.finetune_run.id) == (prompt_run, tuned_run)
        # The same record the CLI writes: its verdict heads the screen, its Markdown below.
        status = str(screen.query_one("#report-status", Static).render())
        assert status == report.about("verdict")[0].text.replace("\n", " ")[: len(status)]
        markdown = screen.query_one("#report-page", Markdown)
        await wait_until(pilot, lambda: "Which is better" in screen_text(app), "the page")
        assert markdown.source.startswith("# Prompt or fine-tune? ds/test")
        await pilot.press("end")  # the page scrolls (its scroll has the focus)
        await wait_until(
            pilot, lambda: "Training cost and break-even" in screen_text(app), "the page's end"
        )

        await pilot.press("slash", *"nope", "enter")
        errors = await settle(app, pilot, expect=(Exception,))
        assert errors and "nope" in str(errors[0])
        await wait_until(
            pilot,
            lambda: "nope" in str(screen.query_one("#report-status", Static).render()),
            "the refusal on screen",
        )
        screen.query_one("#report-request", Input).value = ""
        await pilot.press("slash", *f"{tuned_run}", "enter")
        errors = await settle(app, pilot, expect=(BadInputError,))
        assert "--prompt-run names a run on a base model" in str(errors[0])

"""Correcting an output from the Runs screen: the editor, the saved versions, the key's reach."""

from __future__ import annotations

from textual.widgets import TextArea

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import settle, show_screen, wait_for_text, wait_until
from tunelab.store import Store
from tunelab.tui.app import make_app
from tunelab.tui.commands import palette_commands
from tunelab.tui.screens.correction import CorrectionModal

SIZE = (100, 30)


async def test_w_writes_a_correction_and_a_second_one_is_a_new_version() -> None:
    store = Store.memory()
    seed_store(store)
    app = make_app(store, engine=FakeEngine(store))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        assert any("Correct" in c.title for c in palette_commands(app, app.screen))
        await pilot.press("enter")
        await wait_for_text(app, pilot, "Run 3 · classify@2")
        await settle(app, pilot)
        output = store.run_outputs(3)[0]
        for attempt in ("first fix", "second fix"):
            await pilot.press("w")
            await wait_until(pilot, lambda: isinstance(app.screen, CorrectionModal), "the editor")
            editor = app.screen.query_one("#correction-text", TextArea)
            before = editor.text
            editor.text = attempt
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: not isinstance(app.screen, CorrectionModal), "close")

            def saved(text: str = attempt) -> bool:
                history = store.corrections(output.id)
                return bool(history) and history[-1].text == text

            await wait_until(pilot, saved, "the saved correction")
            await settle(app, pilot)
        # the second editor started from the first correction, and both versions are kept
        assert before == "first fix"
        assert [(c.version, c.text, c.author) for c in store.corrections(output.id)] == [
            (1, "first fix", "tester"), (2, "second fix", "tester"),
        ]  # fmt: skip
        assert store.run_outputs(3)[0].output == output.output  # the original stays

        await pilot.press("w")
        await wait_until(pilot, lambda: isinstance(app.screen, CorrectionModal), "the editor")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, CorrectionModal), "cancel")
        await settle(app, pilot)
        assert len(store.corrections(output.id)) == 2

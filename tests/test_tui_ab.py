"""Blind A/B in the TUI: `b` on Compare shows two runs' outputs of a row, sides shuffled and
runs hidden; keys store preferences (left as A) and Compare shows the win rate."""

from __future__ import annotations

from textual.widgets import Input

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import (
    current_screen,
    screen_text,
    settle,
    show_screen,
    wait_for_notification,
    wait_for_text,
    wait_until,
)
from tunelab.store import Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.commands import palette_commands
from tunelab.tui.keys import all_bindings
from tunelab.tui.screens.blind_ab import BlindABModal
from tunelab.tui.screens.compare import CompareScreen

SIZE = (120, 40)


def test_the_blind_ab_keys_have_ids() -> None:
    ids = {binding.id for _, binding in all_bindings(TunelabApp)}
    assert {"compare-blind-ab", "ab-left", "ab-right", "ab-tie", "ab-skip", "ab-close"} <= ids


async def _open_blind_ab(app: TunelabApp, pilot: object, run_ids: str) -> BlindABModal:
    from textual.pilot import Pilot

    assert isinstance(pilot, Pilot)
    await show_screen(app, pilot, "5", "Compare")
    compare = current_screen(app, CompareScreen)
    await pilot.press("slash")
    compare.query_one("#compare-runs", Input).value = run_ids
    await pilot.press("enter")
    await wait_until(pilot, lambda: compare.comparison is not None, "the comparison")
    await settle(app, pilot)
    await pilot.press("b")
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, BlindABModal) and app.screen.session is not None,
        "the blind A/B session",
    )
    modal = app.screen
    assert isinstance(modal, BlindABModal)
    return modal


async def test_sides_are_shuffled_names_hidden_and_keys_store_preferences() -> None:
    store = Store.memory()
    ids = seed_store(store)
    engine = FakeEngine(store)
    app = make_app(store, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        modal = await _open_blind_ab(app, pilot, f"{ids['run1']}, {ids['run2']}")
        assert engine.calls[-1] == f"blind:{ids['run1']}:{ids['run2']}:{modal.seed}"
        session = modal.session
        assert session is not None and len(session.pairs) == 4
        first = modal.pair
        assert first is not None
        text = await wait_for_text(app, pilot, "row 1 of 4")
        assert f"seed {modal.seed}" in text
        assert first.left_text in text and first.right_text in text
        for run_id in (ids["run1"], ids["run2"]):  # neither run is named before a judgement
            assert f"run {run_id}" not in text and "classify@" not in text
        await pilot.press("left")
        await wait_for_text(app, pilot, "row 2 of 4")
        (stored,) = store.preferences((ids["run1"], ids["run2"]))
        assert (stored.output_a_id, stored.output_b_id, stored.choice) == (
            first.left_output_id, first.right_output_id, "a",
        )  # fmt: skip
        assert (stored.author, stored.row_idx, stored.run_a_id) == (
            "tester", first.row_idx, first.left_run_id,
        )  # fmt: skip
        revealed = screen_text(app)
        assert f"left was run {first.left_run_id} (classify@" in revealed
        assert f"right was run {first.right_run_id} (classify@" in revealed
        second = modal.pair
        assert second is not None
        await pilot.press("s")  # skip: nothing stored
        await wait_for_text(app, pilot, "row 3 of 4")
        assert len(store.preferences((ids["run1"], ids["run2"]))) == 1
        third = modal.pair
        await pilot.press("right")
        await wait_for_text(app, pilot, "row 4 of 4")
        await pilot.press("t")
        await wait_for_text(app, pilot, "nothing left to judge")
        stored_all = store.preferences((ids["run1"], ids["run2"]))
        assert [p.choice for p in stored_all] == ["a", "b", "tie"]
        assert third is not None and stored_all[1].output_b_id == third.right_output_id
        assert second.row_idx not in {p.row_idx for p in stored_all}
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen), "Compare again")
        await wait_for_text(app, pilot, "Blind A/B, run 2 vs run 1 (3 judged by 1 person)")
        await settle(app, pilot)


async def test_compare_shows_the_win_rate_of_stored_preferences() -> None:
    from tunelab.engine.feedback.preferences import prefer_row

    store = Store.memory()
    ids = seed_store(store)
    prefer_row(store, ids["run1"], ids["run2"], 0, "b", author="ann")
    prefer_row(store, ids["run2"], ids["run1"], 1, "a", author="bob")
    prefer_row(store, ids["run1"], ids["run2"], 2, "a", author="bob")
    app = make_app(store, engine=FakeEngine(store))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "5", "Compare")
        current_screen(app, CompareScreen).compare([ids["run1"], ids["run2"]])
        await wait_for_text(
            app, pilot, "run 2 preferred in 2 of 3 decisive (67%, 95% CI 9%–99%), 0 ties"
        )
        await settle(app, pilot)


async def test_blind_ab_needs_a_comparison_and_is_in_the_palette() -> None:
    store = Store.memory()
    seed_store(store)
    app = make_app(store, engine=FakeEngine(store))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        titles = [c.title for c in palette_commands(app, app.screen)]
        assert "Blind A/B (Compare)" in titles
        await app.run_screen_action("compare", "blind_ab")
        await wait_for_notification(app, pilot, "Compare two runs first")
        assert not isinstance(app.screen, BlindABModal)

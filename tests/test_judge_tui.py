"""The Runs screen shows each output's newest judge score, and its rationale when selected."""

from __future__ import annotations

from textual.widgets import Static

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import settle, show_screen, wait_for_text, wait_until
from tunelab.store import NewJudgement, PromptContent, Store
from tunelab.tui.app import make_app
from tunelab.tui.widgets.outputs_table import OutputsTable

SIZE = (120, 30)


def judged_store() -> Store:
    store = Store.memory()
    ids = seed_store(store)
    rubric = store.save_prompt_version(
        "helpful", PromptContent(template="{{ input }} {{ output }}", settings={"judge": {}})
    ).version
    outputs = store.run_outputs(ids["run3"])
    older = store.create_judge_run("score", rubric.id, ids["base"], ids["run3"], scale=(1, 5))
    store.add_judgements(older.id, [NewJudgement(outputs[0].id, 1, "old", "Score: 1", False)])
    newer = store.create_judge_run("score", rubric.id, ids["base"], ids["run3"], scale=(1, 5))
    store.add_judgements(
        newer.id,
        [
            NewJudgement(outputs[0].id, 4, "names the sentiment", "Score: 4", False),
            NewJudgement(outputs[1].id, None, "", "fine", False, "no score in the reply"),
        ],
    )
    return store


async def test_outputs_show_the_newest_judge_score_and_rationale() -> None:
    store = judged_store()
    app = make_app(store, engine=FakeEngine(store))
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        await pilot.press("enter")
        await wait_for_text(app, pilot, "Run 3 · classify@2")
        await settle(app, pilot)
        table = app.screen.query_one("#outputs-table", OutputsTable)
        judge_column = [str(table.get_row_at(i)[5]) for i in range(table.row_count)]
        assert judge_column == ["4", "unparseable", "—", "—"]
        text = app.screen.query_one("#output-text", Static)
        await wait_until(
            pilot, lambda: "judge: 4 · names the sentiment" in str(text.render()), "rationale"
        )

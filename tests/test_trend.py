"""Metric trend: the engine's request over a real store, `tunelab trend`, and the TUI's chart
opened with `T` from Prompts and from Fine-tune (and the palette)."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable

from tests import compare_helpers as h
from tests.conftest import run_cli
from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import (
    current_screen,
    settle,
    show_screen,
    wait_for_notification,
    wait_for_text,
    wait_until,
)
from tunelab.engine.compare.trend import TrendRequest, trend_metrics, trend_of
from tunelab.engine.errors import BadInputError
from tunelab.store import NotFoundError, Store, Workspace
from tunelab.tui.app import make_app
from tunelab.tui.commands import palette_commands
from tunelab.tui.screens.finetune import FinetuneScreen
from tunelab.tui.screens.prompts import PromptsScreen
from tunelab.tui.screens.trend import TrendModal, TrendPlot

SIZE = (120, 40)


def _prompt_and_job(store: Store) -> int:
    """Prompt p: v1 and v3 evaluated on the base model, v2 not; job 1: two checkpoints, one
    evaluated, one with its training-time accuracy only."""
    base = h.base_model(store)
    ds = h.dataset(store, n=4)
    v1 = h.prompt(store, "p", "{{ text }}")
    h.prompt(store, "p", "Label: {{ text }}")
    v3 = h.prompt(store, "p", "Label this: {{ text }}")
    job = store.create_job("lora", {}, base.id, None, None)
    c1 = h.finetuned_model(store, base, "ck1", hours=None, step=100, job_id=job.id)
    c2 = h.finetuned_model(store, base, "ck2", hours=None, step=200, job_id=job.id)
    store.update_model_metrics(c2.id, {"accuracy": 0.9})
    h.classification_run(store, v1, c1, ds, [1, 1, 0, 0])
    h.classification_run(store, v1, base, ds, [1, 0, 0, 0])
    h.classification_run(store, v3, base, ds, [1, 1, 1, 0])  # the latest: model base
    return job.id


def test_a_trend_request_picks_the_main_metric_and_checks_the_metric(store: Store) -> None:
    job_id = _prompt_and_job(store)
    assert trend_metrics(store, TrendRequest(prompt_name="p")) == ["accuracy"]
    trend = trend_of(store, TrendRequest(prompt_name="p"))
    assert trend.metric == "accuracy" and (trend.dataset, trend.split) == ("ds", "test")
    assert [(p.label, p.value) for p in trend.points] == [("p@1", 0.25), ("p@2", None),
                                                          ("p@3", 0.75)]  # fmt: skip
    job_trend = trend_of(store, TrendRequest(job_id=job_id, metric="accuracy"))
    assert [(p.label, p.value, p.source) for p in job_trend.points] == [
        ("step 100", 0.5, "run"),
        ("step 200", 0.9, "training"),
    ]
    with pytest.raises(BadInputError, match="prompt p has no metric 'bleu'; it has accuracy"):
        trend_of(store, TrendRequest(prompt_name="p", metric="bleu"))
    with pytest.raises(NotFoundError):
        trend_of(store, TrendRequest(prompt_name="nope"))
    with pytest.raises(BadInputError, match="not both"):
        trend_of(store, TrendRequest())
    empty = store.create_job("lora", {}, h.base_model(store).id, None, None)
    with pytest.raises(BadInputError, match=f"job {empty.id} has no finished run"):
        trend_of(store, TrendRequest(job_id=empty.id))


def test_the_cli_prints_a_trend_and_refuses_bad_input_in_one_line(workspace: Workspace) -> None:
    with workspace.open_store() as store:
        job_id = _prompt_and_job(store)
    shown = run_cli("trend", "p", workspace=workspace)
    assert shown.returncode == 0, shown.stderr
    assert "accuracy across prompt p (ds/test, model base)" in shown.stdout
    assert "0.2500" in shown.stdout and "0.7500" in shown.stdout
    as_json = run_cli("trend", "--job", str(job_id), "--json", workspace=workspace)
    assert as_json.returncode == 0, as_json.stderr
    points = json.loads(as_json.stdout)["points"]
    assert [(p["label"], p["value"], p["source"]) for p in points] == [
        ("step 100", 0.5, "run"), ("step 200", 0.9, "training"),
    ]  # fmt: skip
    for args, needle in (
        (["trend", "nope"], "nope"),
        (["trend", "--job", "99"], "99"),
        (["trend", "p", "--metric", "bleu"], "no metric 'bleu'"),
        (["trend"], "give a prompt name or --job ID"),
    ):
        bad = run_cli(*args, workspace=workspace)
        lines = [line for line in bad.stderr.strip().splitlines() if line.strip()]
        assert bad.returncode == 2, (args, bad.stderr)
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in bad.stderr


async def test_prompts_opens_the_selected_prompts_trend_and_m_changes_metric() -> None:
    store = Store.memory()
    seed_store(store)
    engine = FakeEngine(store)
    app = make_app(store, engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await show_screen(app, pilot, "2", "Prompts")
        current_screen(app, PromptsScreen)
        await pilot.press("T")
        await wait_until(
            pilot, lambda: isinstance(app.screen, TrendModal) and bool(app.screen.trends), "it"
        )
        modal = app.screen
        assert isinstance(modal, TrendModal)
        await wait_for_text(app, pilot, "accuracy across prompt classify · sentiment/test")
        assert engine.calls[-1].startswith("trend:classify:")
        table = modal.query_one("#trend-points", DataTable)
        assert [row.key.value for row in table.ordered_rows] == ["classify@1", "classify@2"]
        plot = modal.query_one("#trend-plot", TrendPlot)
        assert plot.trend is not None and plot.trend.metric == "accuracy"
        await pilot.press("m")  # one metric only: m keeps it
        assert modal.shown == 0
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, PromptsScreen), "Prompts again")
        await settle(app, pilot)


async def test_finetune_opens_the_selected_jobs_trend_and_the_palette_has_both() -> None:
    store = Store.memory()
    ids = seed_store(store)
    base = store.get_model("builtin")
    checkpoint = h.finetuned_model(store, base, "ck-10", hours=None, step=10, job_id=ids["job"])
    store.update_model_metrics(checkpoint.id, {"accuracy": 0.5})
    app = make_app(store, engine=FakeEngine(store))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        titles = [c.title for c in palette_commands(app, app.screen)]
        assert {"Trend (Prompts)", "Trend (Fine-tune)"} <= set(titles)
        await show_screen(app, pilot, "6", "Fine-tune")
        finetune = current_screen(app, FinetuneScreen)
        await wait_until(pilot, lambda: finetune._selected() is not None, "the job list")
        await pilot.press("T")
        await wait_for_text(app, pilot, f"accuracy across job {ids['job']}")
        await wait_for_text(app, pilot, "training eval")
        await pilot.press("q")
        await wait_until(pilot, lambda: app.screen is finetune, "Fine-tune again")
        bare = store.create_job("lora", {}, base.id, None, None)  # a job without checkpoints
        jobs = finetune.query_one("#job-list", DataTable)
        await wait_until(pilot, lambda: jobs.row_count == 2, "the new job listed")

        def bare_selected() -> bool:
            """Put the cursor on the new job until the screen's own polls keep it there."""
            if finetune._selected() != bare.id:
                jobs.move_cursor(row=jobs.get_row_index(str(bare.id)))
            return finetune.selected_job_id == bare.id and finetune._selected() == bare.id

        await wait_until(pilot, bare_selected, "the new job selected")
        await pilot.press("T")
        await wait_for_notification(app, pilot, "has no finished run with a metric")
        await wait_until(pilot, lambda: app.screen is finetune, "the trend to close")
        await settle(app, pilot, expect=(BadInputError,))

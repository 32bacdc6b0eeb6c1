"""Data-efficiency curves: nested subsets, the crossover decision, bad input, and the driver
and a whole curve on the real built-in model."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import run_cli
from tunelab.engine.curves import (
    CurvePoint,
    CurveSummary,
    crossover_sentence,
    crossover_size,
    summarize_curve,
)
from tunelab.engine.curves.crossover import fallbacks
from tunelab.engine.curves.launch import capped_steps
from tunelab.engine.curves.subsets import nested_subset, parse_sizes, repeat_seed
from tunelab.engine.errors import BadInputError
from tunelab.engine.training.config import TrainingConfig
from tunelab.store import (
    NewCurve,
    NewCurveEntry,
    NewDataset,
    NewModel,
    NewSplit,
    PromptContent,
    Store,
    Workspace,
)

LABELS = ["anger", "joy", "optimism", "sadness"]
TEMPLATE = "Classify the emotion (anger, joy, optimism, sadness).\nTweet: {{ text }}\nEmotion:"


# Nested subsets -----------------------------------------------------------------------------


@given(
    n_rows=st.integers(min_value=1, max_value=400),
    data=st.data(),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_a_smaller_subset_is_contained_in_every_larger_one(
    n_rows: int, data: st.DataObject, seed: int
) -> None:
    small = data.draw(st.integers(min_value=0, max_value=n_rows))
    large = data.draw(st.integers(min_value=small, max_value=n_rows))
    smaller, larger = nested_subset(n_rows, small, seed), nested_subset(n_rows, large, seed)
    assert len(smaller) == small and len(larger) == large
    assert len(set(larger)) == large and all(0 <= i < n_rows for i in larger)
    assert set(smaller) <= set(larger)
    assert nested_subset(n_rows, large, seed) == larger  # seeded: the same rows every time
    assert nested_subset(n_rows, n_rows, seed) == list(range(n_rows))  # `all`: the whole split


def test_each_repeat_draws_its_own_permutation() -> None:
    first, second = (nested_subset(1000, 50, repeat_seed(7, r)) for r in (0, 1))
    assert first != second and repeat_seed(7, 0) != repeat_seed(7, 1)


@given(n_rows=st.integers(min_value=1, max_value=5000), sizes=st.lists(st.integers(1, 5000)))
def test_sizes_parse_sorted_and_refuse_more_than_the_split(n_rows: int, sizes: list[int]) -> None:
    text = ",".join([*map(str, sizes), "all"])
    if any(s > n_rows for s in sizes):
        with pytest.raises(BadInputError, match=f"larger than the {n_rows} rows"):
            parse_sizes(text, n_rows, "train")
        return
    assert parse_sizes(text, n_rows, "train") == sorted({*sizes, n_rows})


@pytest.mark.parametrize("text", ["", "ten", "0", "-5", "5,,x"])
def test_sizes_that_are_not_sizes_are_refused(text: str) -> None:
    with pytest.raises(BadInputError):
        parse_sizes(text, 100, "train")


@given(
    size=st.integers(1, 5000),
    epochs=st.floats(0.1, 5),
    batch=st.integers(1, 32),
    cap=st.integers(1, 500),
)
def test_the_steps_cap_bounds_epochs_of_each_subset(
    size: int, epochs: float, batch: int, cap: int
) -> None:
    steps = capped_steps(TrainingConfig(epochs=epochs, batch_size=batch), size, cap)
    assert 1 <= steps <= cap
    if steps < cap:  # not capped: at least the asked epochs of the subset
        assert steps * batch >= epochs * size - 1e-6


# The crossover ------------------------------------------------------------------------------


def point(size: int, better: bool, done: bool = True) -> CurvePoint:
    return CurvePoint(
        size=size,
        repeats_planned=1,
        repeats_done=1 if done else 0,
        metric_mean=0.7 if better else 0.4 if done else None,
        ci=None,
        run_ids=(size,) if done else (),
        job_ids=(size,),
        train_seconds=1.0,
        train_cost_usd=0.001,
        delta_vs_prompt=0.2 if better else -0.01 if done else None,
        delta_ci=None,
        p_value=0.01 if better else 0.6 if done else None,
        significantly_better=better and done,
    )


def summary(points: list[CurvePoint], state: str = "finished") -> CurveSummary:
    return CurveSummary(
        curve_id=1, dataset="d", base_model="builtin", method="lora", metric="accuracy",
        eval_split="validation", prompt_ref="p@1", prompt_run_id=9, prompt_metric=0.5,
        prompt_ci=(0.4, 0.6), points=tuple(sorted(points, key=lambda p: p.size)),
        crossover_size=crossover_size(points), state=state,
    )  # fmt: skip


sizes_strategy = st.lists(st.integers(1, 10_000), min_size=1, max_size=8, unique=True)


@given(sizes=sizes_strategy, threshold=st.integers(1, 10_001))
def test_a_monotone_curve_crosses_at_its_first_size_past_the_threshold(
    sizes: list[int], threshold: int
) -> None:
    points = [point(s, better=s >= threshold) for s in sizes]
    past = [s for s in sizes if s >= threshold]
    assert crossover_size(points) == (min(past) if past else None)
    assert fallbacks(points, crossover_size(points)) == []
    sentence = crossover_sentence(summary(points))
    if past:
        assert sentence.startswith(f"crossover at {min(past)} examples")
    else:
        assert sentence.startswith("no crossover:")


@given(sizes=sizes_strategy, data=st.data())
def test_any_curve_crosses_at_its_smallest_significantly_better_finished_size(
    sizes: list[int], data: st.DataObject
) -> None:
    points = [point(s, better=data.draw(st.booleans()), done=data.draw(st.booleans()))
              for s in sizes]  # fmt: skip
    found = crossover_size(points)
    better = [p.size for p in points if p.significantly_better and p.repeats_done]
    if not better:
        assert found is None
        assert "no crossover" in crossover_sentence(summary(points))
        return
    assert found == min(better)
    assert all(not p.significantly_better for p in points if p.size < found)
    # A non-monotone curve says where it fell back, so one lucky point is not read as a trend.
    back = [
        p.size for p in points if p.size > found and p.repeats_done and not p.significantly_better
    ]
    assert fallbacks(points, found) == sorted(back)
    sentence = crossover_sentence(summary(points))
    assert sentence.startswith(f"crossover at {found} examples")
    assert ("not significantly better again" in sentence) == bool(back)


def test_a_running_curve_says_more_points_are_coming() -> None:
    points = [point(10, better=False), point(20, better=False, done=False)]
    assert crossover_sentence(summary(points, "running")).endswith("still running")


# Bad input: exit 2, one line, nothing queued -------------------------------------------------


def _add_data(store: Store, n_train: int = 12, n_val: int = 6) -> None:
    source = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    path = source / "tweeteval-emotion-train.jsonl"
    if path.exists():
        with path.open() as fh:
            rows = [json.loads(line) for _, line in zip(range(n_train + n_val), fh, strict=False)]
        rows = [{"text": r["text"][:100], "label": r["label"]} for r in rows]
    else:
        rows = [{"text": f"tweet {i}", "label": LABELS[i % 4]} for i in range(n_train + n_val)]
    store.add_dataset(
        NewDataset(
            "emo", "test", "fp-emo",
            [NewSplit("train", rows[:n_train], "fp-t"),
             NewSplit("validation", rows[n_train:], "fp-v")],
            task="classification", input_columns=["text"], reference_column="label",
            labels=LABELS, metrics=["accuracy"],
        )
    )  # fmt: skip
    store.add_model(NewModel("builtin", "base", "builtin", "builtin"), exist_ok=True)
    store.save_prompt_version("emo", PromptContent(template=TEMPLATE, mode="plain"))


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    with workspace.open_store() as store:
        _add_data(store)
    return workspace


def _prompt_run(store: Store) -> int:
    """A finished prompt run on the validation split, its outputs written as a run writes them."""
    from tunelab.store import NewRunOutput

    dataset = store.get_dataset("emo")
    rows = store.dataset_rows("emo", "validation")
    run = store.create_run(
        store.get_prompt_version("emo@1").id, store.get_model("builtin").id, dataset.id,
        "validation", len(rows), {}, metric_names=["accuracy"],
    )  # fmt: skip
    store.add_run_outputs(
        run.id,
        [NewRunOutput(r.idx, "p", "joy", "joy", r.data["label"],
                      {"accuracy": float(r.data["label"] == "joy")}, row_id=r.id) for r in rows],
    )  # fmt: skip
    store.finish_run(run.id, "succeeded", {"accuracy": 0.25})
    return run.id


def _assert_refused(ws: Workspace, args: list[str], needle: str) -> None:
    result = run_cli("curve", *args, workspace=ws)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    with ws.open_store() as store:
        assert store.list_curves() == [] and store.list_jobs() == []
        assert store.dataset_names() == ["emo"]  # no subsets stored


CURVE = ["--dataset", "emo", "--prompt", "emo@1", "--max-steps", "2", "--batch-size", "2"]


def test_bad_curves_exit_2_in_one_line_and_queue_nothing(ws: Workspace) -> None:
    _assert_refused(ws, [*CURVE, "--sizes", "4,13"], "larger than the 12 rows of split 'train'")
    _assert_refused(ws, ["--dataset", "nope", "--prompt", "emo@1", "--sizes", "4"], "nope")
    _assert_refused(ws, [*CURVE, "--sizes", "1"], "batch_size 2 is larger than the 1")
    _assert_refused(ws, [*CURVE, "--sizes", "4", "--eval-split", "train"], "is the training split")
    _assert_refused(ws, [*CURVE, "--sizes", "4", "--against", "99"], "99")


def test_a_prompt_run_whose_rows_are_gone_is_refused(ws: Workspace) -> None:
    with ws.open_store() as store:
        run_id = _prompt_run(store)
    # Rows removed behind tunelab's back (the store itself refuses to delete used rows).
    with sqlite3.connect(ws.db_path) as db:
        db.execute("DELETE FROM dataset_rows WHERE idx >= 3 AND split_id = "
                   "(SELECT id FROM dataset_splits WHERE name = 'validation')")  # fmt: skip
    _assert_refused(
        ws,
        [*CURVE, "--sizes", "4", "--against", str(run_id)],
        "3 of the 6 rows run 1 scored are gone",
    )


# The driver on the real model (default suite) ------------------------------------------------


@pytest.mark.model
def test_the_driver_evaluates_the_prompt_then_each_finished_job_on_the_same_rows(
    ws: Workspace,
) -> None:
    """A curve whose one job has finished: the driver evaluates the prompt on the base model,
    then the job's checkpoint (here the built-in weights, registered as the job's model, so
    no training is needed) on the same rows, and records device, time and cost."""
    from tunelab.engine.curves.driver import drive

    store = ws.open_store()
    dataset = store.get_dataset("emo")
    base = store.get_model("builtin")
    version = store.get_prompt_version("emo@1")
    job = store.create_job("lora", {"device": "cpu"}, base.id, dataset.id, version.id)
    started = datetime.now(UTC)
    finished = started + timedelta(seconds=36)
    store.update_job(job.id, status="succeeded", started_at=started.isoformat(),
                     finished_at=finished.isoformat())  # fmt: skip
    store.add_model(
        NewModel(f"job-{job.id}-best", "base", "builtin", "builtin",
                 base_model_id=base.id, method="lora", job_id=job.id, step=2)
    )  # fmt: skip
    curve = store.create_curve(
        NewCurve(base.id, dataset.id, version.id, "lora", "train", "validation", 4, "accuracy",
                 0, 1, TrainingConfig().to_dict(), None, "evaluated",
                 launch={"scoring": "likelihood"}),
        [NewCurveEntry(4, 0, 0, dataset.id, "train")],
    )  # fmt: skip
    entry = store.curve_entries(curve.id)[0]
    store.update_curve_entry(entry.id, job_id=job.id)

    assert drive(ws, store, curve.id, poll_s=0.1)

    summary = summarize_curve(store, curve.id)
    assert summary.state == "finished" and summary.prompt_run_source == "evaluated"
    prompt_run = store.get_run(summary.prompt_run_id or 0)
    assert (prompt_run.model_name, prompt_run.rows_total, prompt_run.scoring) == (
        "builtin", 4, "likelihood")  # fmt: skip
    (only,) = summary.points
    run = store.get_run(only.run_ids[0])
    assert run.model_name == f"job-{job.id}-best" and run.split == "validation"
    assert {o.row_idx for o in store.run_outputs(run.id)} == {
        o.row_idx for o in store.run_outputs(prompt_run.id)}  # fmt: skip
    assert only.metric_mean == run.metrics["accuracy"]
    # Same weights, same rows, same scoring: the paired delta is exactly zero, not significant.
    assert only.delta_vs_prompt == 0 and not only.significantly_better
    assert summary.crossover_size is None
    assert only.devices == ("cpu",) and only.train_seconds == pytest.approx(36, abs=1)
    assert only.train_cost_usd == pytest.approx(36 / 3600 * 0.1, rel=0.05)  # the CPU-hour rate
    # Run again (a resumed driver): nothing is evaluated twice.
    runs_before = len(store.list_runs())
    assert drive(ws, store, curve.id, poll_s=0.1)
    assert len(store.list_runs()) == runs_before
    store.close()


# A whole curve through the CLI: real 2-step LoRA jobs (slow) ---------------------------------


@pytest.mark.model
@pytest.mark.slow
def test_a_two_size_curve_end_to_end(ws: Workspace) -> None:
    started = run_cli(
        "curve", *CURVE, "--sizes", "4,8", "--eval-every", "0", "--eval-samples", "4",
        "--eval-limit", "6", "--scoring", "likelihood", "--json", "--wait",
        workspace=ws, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    curve_id = json.loads(started.stdout)["curve_id"]
    shown = run_cli("curve", "show", str(curve_id), "--json", workspace=ws)
    assert shown.returncode == 0, shown.stderr
    curve = json.loads(shown.stdout)
    assert curve["state"] == "finished", curve["notes"]
    assert [p["size"] for p in curve["points"]] == [4, 8]
    assert all(p["repeats_done"] == 1 and p["delta_vs_prompt"] is not None for p in curve["points"])
    assert curve["crossover"].startswith(("crossover at", "no crossover:"))
    with ws.open_store() as store:
        entries = store.curve_entries(curve_id)
        subset = store.get_dataset_by_id(entries[0].subset_dataset_id)
        small, large = (
            [r.data["text"] for r in store.dataset_rows(subset.name, e.subset_split)]
            for e in entries
        )
        assert set(small) < set(large)  # the 4 rows are among the 8
        assert {j.status for j in store.list_jobs()} == {"succeeded"}
    again = run_cli("curve", "extend", str(curve_id), "--sizes", "8", workspace=ws)
    assert again.returncode == 2 and "already has sizes 4, 8" in again.stderr


# Stored subsets and honest states (no model) -------------------------------------------------


def test_stored_subsets_are_nested_with_their_lineage(ws: Workspace) -> None:
    from tunelab.engine.curves.subsets import store_subsets

    with ws.open_store() as store:
        dataset = store.get_dataset("emo")
        derived, planned = store_subsets(
            store, dataset, 5, "train", "validation", [(3, 0, 11), (6, 0, 11), (12, 0, 11)]
        )
        texts = [
            {r.data["text"] for r in store.dataset_rows(derived.name, p.split)} for p in planned
        ]
        assert [len(t) for t in texts] == [3, 6, 12] and texts[0] < texts[1] < texts[2]
        assert texts[2] == {r.data["text"] for r in store.dataset_rows("emo", "train")}
        # The jobs pick their best checkpoint on a copy of the same validation split.
        copied = [r.data for r in store.dataset_rows(derived.name, "validation")]
        assert copied == [r.data for r in store.dataset_rows("emo", "validation")] and copied
        lineage = store.dataset_lineage(derived.id)
        assert lineage is not None and lineage["dataset"] == "emo"
        assert lineage["subsets"]["n6-r0"] == {"size": 6, "repeat": 0, "seed": 11}
        assert derived.name == "emo~curve5" and derived.reference_column == "label"


def test_a_failed_job_makes_the_curve_failed_and_says_how_to_resume(ws: Workspace) -> None:
    from tunelab.engine.curves.driver import drive

    with ws.open_store() as store:
        run_id = _prompt_run(store)
        dataset = store.get_dataset("emo")
        base = store.get_model("builtin")
        version = store.get_prompt_version("emo@1")
        job = store.create_job("lora", {}, base.id, dataset.id, version.id)
        store.update_job(job.id, status="failed", error="out of memory")
        curve = store.create_curve(
            NewCurve(base.id, dataset.id, version.id, "lora", "train", "validation", None,
                     "accuracy", 0, 1, TrainingConfig().to_dict(), run_id, "given"),
            [NewCurveEntry(4, 0, 0, dataset.id, "train")],
        )  # fmt: skip
        store.update_curve_entry(store.curve_entries(curve.id)[0].id, job_id=job.id)
        assert drive(ws, store, curve.id, poll_s=0.1)  # settles at once: nothing to evaluate
        summary = summarize_curve(store, curve.id)
        assert summary.state == "failed" and summary.prompt_metric == 0.25
        assert summary.points[0].errors == (f"job {job.id} failed: out of memory",)
        assert any(f"tunelab curve resume {curve.id}" in note for note in summary.notes)
        assert summary.crossover_size is None

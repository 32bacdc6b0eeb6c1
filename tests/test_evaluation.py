"""Evaluation runs end to end: the real built-in model on a few TweetEval irony rows."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import shared_dataset
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation import plan as plan_module
from tunelab.engine.evaluation.metrics import INVALID
from tunelab.engine.evaluation.plan import (
    BATCHES_PER_CHUNK,
    EvalPlan,
    RowJob,
    cache_key,
    in_chunks,
    select_indices,
)
from tunelab.engine.evaluation.run import EvalProgress, EvalRequest, evaluate, resume_run
from tunelab.store import DatasetRow, NewDataset, NewSplit, PromptContent, Store

LABELS = ["irony", "non_irony"]
TEMPLATE = "Is this tweet ironic? Reply with one word: irony or non_irony.\n\nTweet: {{ text }}"


def _rows(n: int) -> list[dict[str, str]]:
    path = shared_dataset("tweeteval-irony-test.jsonl")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(n)]


@pytest.fixture
def irony(store: Store) -> Store:
    rows = _rows(12)
    store.add_dataset(
        NewDataset(
            name="irony",
            source="tweeteval-irony-test.jsonl",
            fingerprint="test",
            splits=[NewSplit("test", rows[:8], "t"), NewSplit("validation", rows[8:], "v")],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=LABELS,
            metrics=["accuracy", "macro_f1"],
        )
    )
    store.save_prompt_version(
        "irony", PromptContent(template=TEMPLATE, settings={"max_new_tokens": 4})
    )
    return store


def _request(**changes: object) -> EvalRequest:
    base: dict[str, object] = {
        "prompt": "irony",
        "model": "builtin",
        "dataset": "irony",
        "split": "test",
        "limit": 4,
        "batch_size": 2,
        "latency_probe": 0,  # the probe has its own tests; the rest need not pay for it
    }
    base.update(changes)
    return EvalRequest(**base)  # type: ignore[arg-type]


def test_unknown_variable_refused_before_any_run(irony: Store) -> None:
    irony.save_prompt_version("typo", PromptContent(template="Tweet: {{ tweet }}"))
    with pytest.raises(BadInputError, match="tweet"):
        evaluate(irony, _request(prompt="typo"))
    assert irony.list_runs() == []


def test_bad_requests_are_one_line_errors(irony: Store) -> None:
    with pytest.raises(BadInputError, match="splits test, validation"):
        evaluate(irony, _request(split=None))
    with pytest.raises(BadInputError, match="unknown metric"):
        evaluate(irony, _request(metrics=["acuracy"]))
    with pytest.raises(BadInputError, match="temperature"):
        evaluate(irony, _request(settings={"temperature": -1}))
    with pytest.raises(BadInputError, match="either a limit"):
        _request(sample=3)
    with pytest.raises(BadInputError, match="cannot sample"):
        evaluate(irony, _request(limit=None, sample=50))
    assert irony.list_runs() == []


def test_resume_refuses_a_changed_request(irony: Store) -> None:
    from tunelab.engine.models.sources import resolve_model

    version = irony.get_prompt_version("irony")
    run = irony.create_run(
        version.id,
        resolve_model(irony, "builtin").id,
        irony.get_dataset("irony").id,
        "test",
        rows_total=4,
        settings={"max_new_tokens": 4},
    )
    with pytest.raises(BadInputError, match="other settings"):
        evaluate(irony, _request(limit=3, resume_run_id=run.id))
    assert irony.get_run(run.id).status == "running" and irony.run_outputs(run.id) == []


def test_row_selection_is_reproducible() -> None:
    assert select_indices(10, 3, None, 0) == [0, 1, 2]
    assert select_indices(2, 5, None, 0) == [0, 1]
    drawn = select_indices(100, 5, None, 0)
    assert drawn == [0, 1, 2, 3, 4]
    sampled = select_indices(100, None, 5, 7)
    assert sampled == select_indices(100, None, 5, 7)
    assert sampled != select_indices(100, None, 5, 8)
    assert len(set(sampled)) == 5 and sampled == sorted(sampled)


def _jobs(lengths: list[int]) -> list[RowJob]:
    return [
        RowJob(cast("DatasetRow", SimpleNamespace(idx=i)), f"p{i}", n, None, f"k{i}")
        for i, n in enumerate(lengths)
    ]


@given(st.lists(st.integers(min_value=1, max_value=500), max_size=60), st.integers(1, 9))
def test_local_rows_are_chunked_longest_first_four_batches_at_a_time(
    lengths: list[int], batch_size: int
) -> None:
    local = cast(
        "EvalPlan", SimpleNamespace(model=SimpleNamespace(kind="builtin"), scoring="generate")
    )
    chunks = in_chunks(local, _jobs(lengths), batch_size)
    flat = [job for chunk in chunks for job in chunk]
    assert sorted(j.row.idx for j in flat) == list(range(len(lengths)))
    assert [j.token_count for j in flat] == sorted(lengths, reverse=True)
    assert all(len(c) == batch_size * BATCHES_PER_CHUNK for c in chunks[:-1])
    # Likelihood scoring batches by its own token budget: a chunk is one batch.
    scoring = cast("EvalPlan", SimpleNamespace(model=local.model, scoring="likelihood"))
    assert all(len(c) <= batch_size for c in in_chunks(scoring, _jobs(lengths), batch_size))
    # An endpoint's rows keep the dataset's order, a batch (its requests in flight) a chunk.
    remote = cast(
        "EvalPlan", SimpleNamespace(model=SimpleNamespace(kind="endpoint"), scoring="generate")
    )
    sent = in_chunks(remote, _jobs(lengths), batch_size)
    assert [j.row.idx for c in sent for j in c] == list(range(len(lengths)))
    assert all(len(c) == batch_size for c in sent[:-1])


def test_cache_key_covers_what_changes_the_output() -> None:
    greedy = {"temperature": 0.0, "seed": 0, "max_new_tokens": 8}
    key = cache_key("m1", "prompt", greedy, "generate", LABELS)
    assert key == cache_key("m1", "prompt", {**greedy, "seed": 5}, "generate", LABELS)
    assert key != cache_key("m2", "prompt", greedy, "generate", LABELS)
    assert key != cache_key("m1", "prompt!", greedy, "generate", LABELS)
    assert key != cache_key("m1", "prompt", {**greedy, "max_new_tokens": 9}, "generate", LABELS)
    sampled = {**greedy, "temperature": 0.7}
    assert cache_key("m1", "p", sampled, "generate", LABELS) != cache_key(
        "m1", "p", {**sampled, "seed": 1}, "generate", LABELS
    )
    assert cache_key("m1", "p", greedy, "likelihood", LABELS) == cache_key(
        "m1", "p", sampled, "likelihood", LABELS
    )


@pytest.mark.model
def test_run_writes_outputs_and_metrics(irony: Store) -> None:
    seen: list[EvalProgress] = []
    result = evaluate(irony, _request(), on_progress=seen.append)
    run = result.run
    assert run.status == "succeeded" and run.rows_total == 4 and result.rows == 4
    outputs = irony.run_outputs(run.id)
    assert [o.row_idx for o in outputs] == [0, 1, 2, 3]
    for out in outputs:
        assert out.prediction in [*LABELS, INVALID]
        assert out.reference in LABELS
        assert out.scores["accuracy"] == float(out.prediction == out.reference)
        assert out.tokens_in > 0 and 0 < out.tokens_out <= 4
        assert "Tweet:" in out.rendered_prompt
    metrics = result.metrics
    assert metrics["accuracy"] == pytest.approx(sum(o.scores["accuracy"] for o in outputs) / 4)
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 4
    # Batches of 2 from one chunk of 4 batches' worth: the 4 rows shared one pool.
    assert all(o.batch_rows == 4 and o.batch_ms is not None for o in outputs)
    for out in outputs:
        assert out.latency_ms == pytest.approx((out.batch_ms or 0) / 4)
    assert metrics["rows_per_second"] > 0 and metrics["tokens_per_second"] > 0
    # A batched row's time is a share of its batch, not a latency: no latency is claimed.
    assert not any(name.startswith("latency") for name in metrics)
    assert "probe_latency_p50_ms" not in metrics and irony.probe_requests(run.id) == []
    assert irony.get_run(run.id).metrics["accuracy"] == metrics["accuracy"]
    assert seen[-1].done == seen[-1].total == 4
    assert [p.done for p in seen] == sorted(p.done for p in seen)


@pytest.mark.model
def test_resume_after_interruption_finishes_without_duplicates(
    irony: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_module, "BATCHES_PER_CHUNK", 1)  # chunks of 2 of the 4 rows
    progress: list[EvalProgress] = []
    interrupted = evaluate(
        irony,
        _request(),
        on_progress=progress.append,
        should_stop=lambda: bool(progress) and progress[-1].done >= 2,
    )
    assert interrupted.interrupted and interrupted.run.status == "interrupted"
    assert interrupted.rows == 2
    run_id = interrupted.run.id
    resumed = resume_run(irony, run_id, batch_size=2)
    assert resumed.run.id == run_id and resumed.run.status == "succeeded"
    assert resumed.new_rows == 2 and resumed.rows == 4
    outputs = irony.run_outputs(run_id)
    assert [o.row_idx for o in outputs] == [0, 1, 2, 3]
    assert resumed.metrics["n"] == 4
    with pytest.raises(BadInputError, match="already finished"):
        resume_run(irony, run_id)
    fresh = evaluate(irony, _request(use_cache=False))
    assert [o.output for o in irony.run_outputs(fresh.run.id)] == [o.output for o in outputs]


@pytest.mark.model
def test_cached_rerun_reports_all_rows_cached(irony: Store) -> None:
    first = evaluate(irony, _request())
    assert first.cached_rows == 0
    again = evaluate(irony, _request())
    assert again.run.id != first.run.id
    assert again.cached_rows == 4 and again.run.cached_rows == 4
    before = [(o.output, o.prediction) for o in irony.run_outputs(first.run.id)]
    after = irony.run_outputs(again.run.id)
    assert [(o.output, o.prediction) for o in after] == before
    assert all(o.cached for o in after)
    assert again.metrics["accuracy"] == first.metrics["accuracy"]
    # A sampled generation without a fixed seed is not deterministic, so it is never cached.
    sampled = evaluate(irony, _request(limit=2, settings={"temperature": 0.9}))
    resampled = evaluate(irony, _request(limit=2, settings={"temperature": 0.9}))
    assert sampled.cached_rows == resampled.cached_rows == 0


@pytest.mark.model
def test_likelihood_scoring_predicts_a_label_without_generating(irony: Store) -> None:
    result = evaluate(irony, _request(scoring="likelihood"))
    outputs = irony.run_outputs(result.run.id)
    assert len(outputs) == 4
    assert all(o.prediction in LABELS and o.tokens_out == 0 for o in outputs)
    assert result.metrics["invalid_rate"] == 0.0
    assert "accuracy" in result.metrics and "macro_f1" in result.metrics
    assert evaluate(irony, _request(scoring="likelihood")).cached_rows == 4


@pytest.mark.model
def test_context_window_checked_before_the_run(irony: Store) -> None:
    with pytest.raises(BadInputError, match="context window"):
        evaluate(irony, _request(settings={"max_new_tokens": 30000}))
    assert irony.list_runs() == []


def test_probe_sample_is_seeded_and_capped_at_the_rows() -> None:
    from tunelab.engine.evaluation.latency_probe import probe_sample
    from tunelab.engine.evaluation.plan import RowJob
    from tunelab.store import DatasetRow

    jobs = [RowJob(DatasetRow(i, i, {}), f"p{i}", 3, None, f"k{i}") for i in range(10)]
    first = [j.row.idx for j in probe_sample(jobs, 4, seed=1)]
    assert first == [j.row.idx for j in probe_sample(jobs, 4, seed=1)]
    assert first != [j.row.idx for j in probe_sample(jobs, 4, seed=2)]
    assert len(set(first)) == 4
    assert sorted(j.row.idx for j in probe_sample(jobs, 50, seed=1)) == list(range(10))


@pytest.mark.model
def test_latency_probe_times_each_request_alone(irony: Store) -> None:
    result = evaluate(irony, _request(latency_probe=4, batch_size=4))
    probe = irony.probe_requests(result.run.id)
    assert [r.seq for r in probe] == [0, 1, 2, 3]
    assert sorted(r.row_idx for r in probe) == [0, 1, 2, 3]
    # Real per-request timings differ from row to row (batch shares are copies within a batch).
    assert len({r.total_ms for r in probe}) == 4
    for r in probe:
        assert r.ttft_ms is not None and 0 < r.ttft_ms <= r.total_ms
        assert r.tokens_in > 0 and 0 < r.tokens_out <= 4
    metrics = result.metrics
    assert metrics["probe_requests"] == 4
    assert metrics["probe_latency_p95_ms"] > metrics["probe_latency_p50_ms"] > 0
    assert metrics["probe_ttft_p50_ms"] <= metrics["probe_latency_p50_ms"]
    assert irony.get_run(result.run.id).metrics["probe_latency_p50_ms"] == pytest.approx(
        metrics["probe_latency_p50_ms"]
    )


@pytest.mark.model
def test_latency_probe_runs_on_cached_rows_and_for_likelihood(irony: Store) -> None:
    evaluate(irony, _request(scoring="likelihood"))
    again = evaluate(irony, _request(scoring="likelihood", latency_probe=2))
    assert again.cached_rows == 4
    probe = irony.probe_requests(again.run.id)
    assert len(probe) == 2 and all(r.ttft_ms is None and r.total_ms > 0 for r in probe)
    assert "probe_ttft_p50_ms" not in again.metrics


@pytest.mark.model
def test_a_run_with_no_scored_rows_has_no_quality_metrics(irony: Store) -> None:
    from tunelab.tui.data import format_metric, main_metric

    result = evaluate(irony, _request(latency_probe=3), should_stop=lambda: True)
    run = result.run
    assert result.interrupted and run.rows_done == 0
    assert "accuracy" not in run.metrics and "macro_f1" not in run.metrics
    assert irony.probe_requests(run.id) == []  # an interrupted run is not probed
    assert format_metric(main_metric(run)) == "—"

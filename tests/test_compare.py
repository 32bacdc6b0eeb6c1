"""compare_runs on hand-built runs: per-example classes, refusals, shared rows, costs, trends."""

from __future__ import annotations

import pytest
import sacrebleu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import compare_helpers as h
from tunelab.engine.compare import stats
from tunelab.engine.compare.cost import RunCost, break_even
from tunelab.engine.compare.report import cost_lines
from tunelab.engine.compare.runs import classify_rows, compare_row, compare_runs, metric_trend
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.metrics import Example, get_metric
from tunelab.store import Store


def _pair(store: Store, a: list[int], b: list[int], **kw: object):  # type: ignore[no-untyped-def]
    pv = h.prompt(store)
    base = h.base_model(store)
    ds = h.dataset(store, n=len(a))
    run_a = h.classification_run(store, pv, base, ds, a)
    pv2 = h.prompt(store, template="Answer: {{ text }}")
    ft = h.finetuned_model(store, base)
    run_b = h.classification_run(store, pv2, ft, ds, b, **kw)  # type: ignore[arg-type]
    return run_a, run_b


def test_per_example_classes_on_hand_built_runs(store: Store) -> None:
    run_a, run_b = _pair(store, [1, 1, 0, 0, 1, 0], [1, 0, 1, 0, 1, 1])
    c = compare_runs(store, [run_a.id, run_b.id], n_boot=200)
    counts = c.pairs[0].counts
    assert counts is not None and counts.score == "accuracy"
    assert (counts.fixed, counts.broken, counts.both_right, counts.both_wrong) == (2, 1, 2, 1)
    assert counts.fixed_rows == [2, 5] and counts.broken_rows == [1]
    assert c.pairs[0].differing_rows == [1, 2, 5]
    accuracy = c.metric("accuracy")
    assert accuracy.values == pytest.approx([0.5, 4 / 6])
    assert accuracy.delta == pytest.approx(1 / 6)
    assert accuracy.deltas[0].test == "mcnemar-exact"
    assert accuracy.p_value == pytest.approx(stats.mcnemar_exact(2, 1).p_value)
    assert not accuracy.significant
    assert accuracy.verdict.startswith("not significant: would need about")
    assert {e.change for e in c.examples} == {"fixed", "broken"}


def test_flattened_views_for_screens_that_show_one_pair(store: Store) -> None:
    run_a, run_b = _pair(store, [1, 0, 0, 1], [1, 1, 0, 0])
    c = compare_runs(store, [run_a.id, run_b.id], n_boot=200)
    assert c.labels == [f"run {run_a.id} (cls@1 on base)", f"run {run_b.id} (cls@2 on ft)"]
    assert c.verdict == c.metric("accuracy").deltas[0].verdict
    assert [(e.row_idx, e.change, e.reference) for e in c.examples] == [
        (1, "fixed", "neg"),
        (3, "broken", "neg"),
    ]
    assert c.examples[0].outputs == ["The answer is pos", "The answer is neg"]
    assert any(line.startswith("latency p50 (ms): 100 | 100") for line in cost_lines(c))
    assert cost_lines(c)[-1].startswith(f"break-even (run {run_b.id}): never")


def test_a_clear_improvement_is_significant_and_says_who_wins(store: Store) -> None:
    a = [0] * 30 + [1] * 30
    b = [1] * 28 + [0] * 2 + [1] * 30
    run_a, run_b = _pair(store, a, b)
    c = compare_runs(store, [run_a.id, run_b.id], n_boot=500)
    accuracy = c.metric("accuracy")
    assert accuracy.significant and accuracy.p_value is not None and accuracy.p_value < 1e-5
    assert accuracy.verdict.startswith(f"run {run_b.id} is better")
    assert accuracy.ci_low is not None and accuracy.ci_high is not None
    assert 0 < accuracy.ci_low <= accuracy.delta <= accuracy.ci_high


def test_same_seed_same_numbers(store: Store) -> None:
    run_a, run_b = _pair(store, [1, 0, 1, 0, 1, 1, 0, 1], [1, 1, 1, 0, 0, 1, 1, 1])
    first = compare_runs(store, [run_a.id, run_b.id], seed=3, n_boot=300)
    again = compare_runs(store, [run_a.id, run_b.id], seed=3, n_boot=300)
    assert first.metric("accuracy").deltas == again.metric("accuracy").deltas


def test_refuses_runs_on_different_datasets_or_splits(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds1 = h.dataset(store, "one", n=4, splits=("test", "validation"))
    ds2 = h.dataset(store, "two", n=4)
    a = h.classification_run(store, pv, base, ds1, [1, 0, 1, 0])
    b = h.classification_run(store, pv, base, ds2, [1, 1, 1, 0])
    c = h.classification_run(store, pv, base, ds1, [1, 1, 1, 0], split="validation")
    with pytest.raises(BadInputError, match="same dataset and split"):
        compare_runs(store, [a.id, b.id])
    with pytest.raises(BadInputError, match="same dataset and split"):
        compare_runs(store, [a.id, c.id], shared_rows_only=True)
    with pytest.raises(BadInputError, match="at least two"):
        compare_runs(store, [a.id, a.id])


def test_different_rows_refused_unless_shared_rows_only(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=8)
    a = h.classification_run(store, pv, base, ds, [1, 0, 1, 0, 1, 0], rows=range(6))
    b = h.classification_run(store, pv, base, ds, [1, 1, 1, 1], rows=[2, 3, 4, 7])
    with pytest.raises(BadInputError, match="--shared-rows"):
        compare_runs(store, [a.id, b.id])
    c = compare_runs(store, [a.id, b.id], shared_rows_only=True, n_boot=200)
    assert c.rows == 3 and c.shared_rows_only
    assert any("only the 3 rows" in note for note in c.notes)
    counts = c.pairs[0].counts
    assert counts is not None
    assert (counts.fixed, counts.broken, counts.both_right, counts.both_wrong) == (1, 0, 2, 0)


def test_break_even_arithmetic_through_compare(store: Store) -> None:
    # A: 200 ms per request, no training. B: 100 ms, trained 1 h on 2 GPUs. $3.60 per GPU-hour.
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=4)
    ft = h.finetuned_model(store, base, hours=1.0, gpus=2)
    a = h.classification_run(store, pv, base, ds, [1, 0, 1, 0], latency_ms=200)
    b = h.classification_run(store, pv, ft, ds, [1, 1, 1, 0], latency_ms=100)
    c = compare_runs(store, [a.id, b.id], n_boot=200, price_per_gpu_hour=3.6)
    cost_a, cost_b = c.costs
    assert cost_a.cost_per_1k_requests == pytest.approx(0.2)
    assert cost_b.cost_per_1k_requests == pytest.approx(0.1)
    assert cost_a.training_cost == 0 and cost_a.training_gpu_hours is None
    assert cost_b.training_seconds == pytest.approx(3600)
    assert cost_b.training_gpu_hours == pytest.approx(2.0)
    assert cost_b.training_cost == pytest.approx(7.2)
    assert cost_b.latency_p50_ms == 100 and cost_b.tokens_per_second == pytest.approx(50.0)
    assert cost_b.tokens_in_per_request == 20 and cost_b.tokens_out_per_request == 5
    even = c.break_even[0]
    assert even.requests == pytest.approx(72_000)
    assert "72,000 requests" in even.verdict


def test_break_even_when_the_fine_tune_is_not_cheaper(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=4)
    ft = h.finetuned_model(store, base, hours=0.5)
    a = h.classification_run(store, pv, base, ds, [1, 0, 1, 0], latency_ms=100)
    b = h.classification_run(store, pv, ft, ds, [1, 1, 1, 0], latency_ms=150)
    even = compare_runs(store, [a.id, b.id], n_boot=200).break_even[0]
    assert even.requests is None and even.verdict.startswith("never")


def _cost(run_id: int, per_1k: float, training: float) -> RunCost:
    return RunCost(run_id, 10, 1.0, 1.0, 1.0, 1.0, 1.0, per_1k, None, None, training, "")


def test_break_even_branches() -> None:
    assert break_even(_cost(1, 1.0, 0.0), _cost(2, 0.5, 0.0)).requests == 0.0
    assert break_even(_cost(1, 1.0, 0.0), _cost(2, 1.0, 0.0)).verdict == "same cost at any volume"
    repaid_by_a = break_even(_cost(1, 0.5, 10.0), _cost(2, 1.0, 0.0))
    assert repaid_by_a.requests == pytest.approx(20_000)
    assert "run 1's extra training cost" in repaid_by_a.verdict
    assert break_even(_cost(1, 1.0, 0.0), _cost(2, 1.5, 5.0)).requests is None


def test_corpus_metrics_match_the_engine_aggregates(store: Store) -> None:
    pv, base = h.prompt(store, "gen"), h.base_model(store)
    refs = [
        "the cat sat on the mat",
        "a dog runs fast",
        "birds fly south in winter",
        "the sun is hot",
        "rain falls down",
        "we like green tea",
    ]
    preds_a = ["the cat sat", "a dog runs", "birds fly north", "sun is hot", "rain", "tea"]
    preds_b = [
        "the cat sat on a mat",
        "a dog runs fast",
        "birds fly south",
        "the sun is hot",
        "rain falls",
        "we like tea",
    ]
    ds = h.dataset(store, "gen", n=6, task="generation", labels=())
    a = h.generation_run(store, pv, base, ds, preds_a, refs, metrics=("bleu", "chrf"))
    b = h.generation_run(store, pv, base, ds, preds_b, refs, metrics=("bleu", "chrf"))
    c = compare_runs(store, [a.id, b.id], n_boot=300)
    bleu = c.metric("bleu")
    assert bleu.kind == "corpus" and bleu.deltas[0].test == "paired bootstrap"
    expected = [sacrebleu.corpus_bleu(p, [refs]).score for p in (preds_a, preds_b)]
    assert bleu.values == pytest.approx(expected)
    chrf = c.metric("chrf")
    examples = [Example(p, p, r) for p, r in zip(preds_b, refs, strict=True)]
    assert chrf.values[1] == pytest.approx(get_metric("chrf").aggregate(examples, [])["chrf"])
    assert bleu.ci_low is not None and bleu.ci_high is not None
    assert bleu.ci_low <= bleu.delta <= bleu.ci_high
    assert c.pairs[0].counts is None


def test_macro_f1_matches_the_engine_and_continuous_scores_use_sign_flip(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=8, labels=("pos", "neg", "neutral"))
    both = ("accuracy", "macro_f1")
    a = h.classification_run(
        store,
        pv,
        base,
        ds,
        [1, 0, 1, 0, 1, 1, 0, 1],
        metrics=both,
        latency_ms=[90 + i for i in range(8)],
    )
    b = h.classification_run(
        store,
        pv,
        base,
        ds,
        [1, 1, 1, 0, 1, 1, 1, 1],
        metrics=both,
        latency_ms=[50 + i for i in range(8)],
    )
    c = compare_runs(store, [a.id, b.id], n_boot=300)
    outputs = store.run_outputs(b.id)
    examples = [Example(o.output, o.prediction or "", o.reference) for o in outputs]
    engine_value = get_metric("macro_f1", ds.labels).aggregate(examples, [])["macro_f1"]
    assert c.metric("macro_f1").values[1] == pytest.approx(engine_value)
    latency = c.metric("latency_ms")
    assert latency.kind == "continuous" and not latency.higher_is_better
    assert latency.delta == pytest.approx(-40)
    assert latency.deltas[0].test == "sign-flip permutation (exact)"
    assert latency.p_value == pytest.approx(2 / 256)
    assert latency.verdict.startswith(f"run {b.id} is better")


def test_three_runs_compare_each_with_the_first(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=4)
    runs = [
        h.classification_run(store, pv, base, ds, v)
        for v in ([1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1])
    ]
    c = compare_runs(store, [r.id for r in runs], n_boot=200)
    assert [d.run_id for d in c.metric("accuracy").deltas] == [runs[1].id, runs[2].id]
    assert [p.counts.fixed for p in c.pairs if p.counts] == [1, 3]


def test_word_diff_of_one_row(store: Store) -> None:
    run_a, run_b = _pair(store, [1, 0], [1, 1])
    diff = compare_row(store, run_a.id, run_b.id, 1)
    assert diff.output_a == "The answer is pos" and diff.output_b == "The answer is neg"
    assert [(s.op, s.text) for s in diff.segments] == [
        ("equal", "The answer is "),
        ("delete", "pos"),
        ("insert", "neg"),
    ]
    with pytest.raises(BadInputError, match="no output for row 9"):
        compare_row(store, run_a.id, run_b.id, 9)


def test_metric_trend_over_prompt_versions_and_checkpoints(store: Store) -> None:
    base = h.base_model(store)
    ds = h.dataset(store, n=4)
    v1 = h.prompt(store, "p", "{{ text }}")
    v2 = h.prompt(store, "p", "Label: {{ text }}")
    v3 = h.prompt(store, "p", "Label this: {{ text }}")
    h.classification_run(store, v1, base, ds, [1, 0, 0, 0])
    h.classification_run(store, v3, base, ds, [1, 1, 1, 0])
    trend = metric_trend(store, prompt_name="p", metric="accuracy")
    assert [p.label for p in trend.points] == [v1.ref, v2.ref, v3.ref]
    assert [p.value for p in trend.points] == [0.25, None, 0.75]
    job = store.create_job("lora", {}, base.id, None, None)
    c1 = h.finetuned_model(store, base, "ck1", hours=None, step=100, job_id=job.id)
    c2 = h.finetuned_model(store, base, "ck2", hours=None, step=200, job_id=job.id)
    store.update_model_metrics(c2.id, {"accuracy": 0.9})
    h.classification_run(store, v1, c1, ds, [1, 1, 0, 0])
    trend = metric_trend(store, job_id=job.id, metric="accuracy")
    assert [(p.label, p.value, p.source) for p in trend.points] == [
        ("step 100", 0.5, "run"),
        ("step 200", 0.9, "training"),
    ]
    with pytest.raises(BadInputError):
        metric_trend(store, metric="accuracy")


outcomes = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outcomes, st.integers(0, 1000))
def test_counts_partition_the_rows_and_match_the_delta(
    pairs: list[tuple[int, int]], seed: int
) -> None:
    store = Store.memory()
    try:
        run_a, run_b = _pair(store, [p[0] for p in pairs], [p[1] for p in pairs])
        c = compare_runs(store, [run_a.id, run_b.id], seed=seed, n_boot=200)
        k = c.pairs[0].counts
        assert k is not None
        assert k.fixed + k.broken + k.both_right + k.both_wrong == c.rows == len(pairs)
        accuracy = c.metric("accuracy")
        assert accuracy.delta == pytest.approx((k.fixed - k.broken) / len(pairs))
        assert accuracy.ci_low is not None and accuracy.ci_high is not None
        assert accuracy.ci_low - 1e-9 <= accuracy.delta <= accuracy.ci_high + 1e-9
        direct = classify_rows(store.run_outputs(run_a.id), store.run_outputs(run_b.id), "accuracy")
        assert direct == k
    finally:
        store.close()


def test_a_bootstrap_interval_that_disagrees_with_the_test_on_few_rows_is_flagged(
    store: Store,
) -> None:
    # 4 rows fixed, none broken, on 10 rows: the exact McNemar test gives p = 0.125, while
    # the percentile bootstrap interval excludes 0.
    run_a, run_b = _pair(store, [0] * 4 + [1] * 6, [1] * 10)
    accuracy = compare_runs(store, [run_a.id, run_b.id], n_boot=1000).metric("accuracy")
    assert not accuracy.significant
    assert accuracy.ci_low is not None and accuracy.ci_low > 0
    assert "the 95% CI excludes 0, but bootstrap intervals are too narrow on 10 rows" in (
        accuracy.verdict
    )
    assert accuracy.verdict.endswith("trust the test")

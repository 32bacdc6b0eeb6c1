"""compare_runs on hand-built runs: per-example classes, refusals, shared rows, costs, trends."""

from __future__ import annotations

import re

import pytest
import sacrebleu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import compare_helpers as h
from tunelab.engine.compare import stats
from tunelab.engine.compare.cost import RunCost, break_even
from tunelab.engine.compare.records import MetricDelta
from tunelab.engine.compare.report import cost_lines
from tunelab.engine.compare.runs import (
    classify_rows,
    compare_row,
    compare_runs,
    describe_model,
    metric_trend,
)
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
    assert accuracy.verdict.startswith(
        f"not significant: run {run_b.id} (cls@2 on LoRA job 1) differs from run {run_a.id} "
        "(cls@1 on base) on accuracy by +0.1667 on 6 rows, but the 95% CI"
    )
    assert "about 139 rows would be needed to detect a difference this size" in accuracy.verdict
    assert {e.change for e in c.examples} == {"fixed", "broken"}


def test_flattened_views_for_screens_that_show_one_pair(store: Store) -> None:
    run_a, run_b = _pair(store, [1, 0, 0, 1], [1, 1, 0, 0])
    c = compare_runs(store, [run_a.id, run_b.id], n_boot=200)
    assert c.labels == [f"run {run_a.id} (cls@1 on base)", f"run {run_b.id} (cls@2 on LoRA job 1)"]
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
    assert accuracy.verdict.startswith(
        f"run {run_b.id} (cls@2 on LoRA job 1) is better than run {run_a.id} (cls@1 on base) "
        "on accuracy by 0.4667 on 60 rows (95% CI +"
    )
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
    assert bleu.kind == "corpus" and bleu.deltas[0].test == "paired bootstrap (BCa)"
    expected = [sacrebleu.corpus_bleu(p, [refs]).score for p in (preds_a, preds_b)]
    assert bleu.values == pytest.approx(expected)
    chrf = c.metric("chrf")
    examples = [Example(p, p, r) for p, r in zip(preds_b, refs, strict=True)]
    assert chrf.values[1] == pytest.approx(get_metric("chrf").aggregate(examples, [])["chrf"])
    assert bleu.ci_low is not None and bleu.ci_high is not None
    assert bleu.ci_low <= bleu.delta <= bleu.ci_high
    assert c.pairs[0].counts is None


def test_macro_f1_matches_the_engine_and_continuous_scores_use_the_bootstrap(store: Store) -> None:
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
    assert latency.deltas[0].test == "paired bootstrap (BCa)"
    # Every row is exactly 40 ms faster: no resample varies, so the difference is certain.
    assert latency.ci_low == latency.ci_high == pytest.approx(-40) and latency.p_value == 0
    assert latency.verdict.startswith(f"run {b.id} (cls@1 on base) is better than run {a.id}")
    assert "on latency_ms by 40 on 8 rows (95% CI +40 to +40;" in latency.verdict


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
        d = accuracy.deltas[0]
        assert d.ci is not None and d.p_value is not None
        # One procedure: the interval excludes 0 exactly when the exact test rejects.
        assert stats.excludes_zero(d.ci) == d.significant == (d.p_value < 0.05)
        _assert_consistent_sentence(d, c.labels)
    finally:
        store.close()


def _assert_consistent_sentence(d: MetricDelta, labels: list[str]) -> None:
    """The verdict claims what the interval says, with the interval on the claim's scale."""
    numbers = re.search(r"CI ([-+][\d.e+-]+) to ([-+][\d.e+-]+)", d.verdict)
    assert numbers is not None, d.verdict
    low, high = float(numbers[1]), float(numbers[2])
    if d.significant:
        assert re.match(r"run \d+ \(.*\) is better than run \d+ \(.*\) on ", d.verdict)
        assert 0 < low <= high, d.verdict
    else:
        assert d.verdict.startswith("not significant: ")
        assert low <= 0 <= high, d.verdict
        assert "includes 0" in d.verdict or "the same" in d.verdict
    assert all(label in d.verdict for label in labels[:2])


def test_few_rows_give_one_coherent_sentence(store: Store) -> None:
    # 4 rows fixed, none broken, on 10 rows: McNemar's exact p = 0.125. The percentile
    # bootstrap interval used to exclude 0 here, and the verdict had to say "trust the test".
    run_a, run_b = _pair(store, [0] * 4 + [1] * 6, [1] * 10)
    accuracy = compare_runs(store, [run_a.id, run_b.id], n_boot=1000).metric("accuracy")
    d = accuracy.deltas[0]
    assert not d.significant and d.p_value == pytest.approx(0.125)
    assert d.ci is not None and d.ci[0] < 0 < d.ci[1]
    assert "trust the test" not in d.verdict
    assert d.verdict.endswith(
        "includes 0 (McNemar exact p=0.12); about 18 rows would be needed to detect a "
        "difference this size (80% power)"
    )
    _assert_consistent_sentence(d, [f"run {run_a.id} (cls@1 on base)", f"run {run_b.id}"])


def test_when_the_baseline_wins_the_interval_has_the_sign_of_the_claim(store: Store) -> None:
    # The baseline is right on 7 of 16 rows more: delta (run - baseline) = -0.4375, and the
    # sentence used to read "run A is better by 0.4375 (95% CI -0.6875 to -0.1875)".
    a = [1] * 7 + [0] * 9
    b = [0] * 16
    run_a, run_b = _pair(store, a, b)
    d = compare_runs(store, [run_a.id, run_b.id], n_boot=200).metric("accuracy").deltas[0]
    assert d.significant and d.delta == pytest.approx(-0.4375)
    assert d.ci is not None and d.ci[1] < 0
    assert d.verdict.startswith(
        f"run {run_a.id} (cls@1 on base) is better than run {run_b.id} (cls@2 on LoRA job 1) "
        "on accuracy by 0.4375 on 16 rows (95% CI +"
    )
    assert f"{-d.ci[1]:+.4g} to {-d.ci[0]:+.4g}" in d.verdict
    _assert_consistent_sentence(d, [])


def test_a_fine_tune_is_named_by_its_job_and_step(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=4)
    job = store.create_job("lora", {}, base.id, None, None)
    step80 = h.finetuned_model(store, base, "ft-80", hours=None, step=80, job_id=job.id)
    assert describe_model(base) == "base"
    assert describe_model(step80) == f"LoRA job {job.id}, step 80"
    a = h.classification_run(store, pv, base, ds, [1, 0, 1, 0])
    b = h.classification_run(store, pv, step80, ds, [1, 1, 1, 1])
    c = compare_runs(store, [a.id, b.id], n_boot=200)
    assert c.labels == [f"run {a.id} (cls@1 on base)", f"run {b.id} (cls@1 on LoRA job 1, step 80)"]


def test_several_runs_are_holm_adjusted_and_their_intervals_agree(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=40)
    baseline = [0] * 20 + [1] * 20
    others = [
        [1] * 8 + [0] * 12 + [1] * 20,  # 8 fixed: p = 2 / 256 alone
        [1] * 6 + [0] * 14 + [1] * 20,  # 6 fixed: p = 2 / 64 alone
        [1] * 2 + [0] * 18 + [1] * 20,  # 2 fixed: p = 0.5
    ]
    runs = [h.classification_run(store, pv, base, ds, v) for v in (baseline, *others)]
    c = compare_runs(store, [r.id for r in runs], n_boot=200)
    deltas = c.metric("accuracy").deltas
    p = [2 / 256, 2 / 64, 0.5]
    assert [d.p_value for d in deltas] == pytest.approx(p)
    assert [d.p_adjusted for d in deltas] == pytest.approx([3 * p[0], 2 * p[1], p[2]])
    # 0.0234 < 0.05/3 rejects; 0.0625 is not below 0.025, so the step-down stops there.
    assert [d.significant for d in deltas] == [True, False, False]
    assert [d.confidence for d in deltas] == pytest.approx([1 - 0.05 / 3, 0.975, 0.975])
    for d in deltas:
        assert d.comparisons == 3 and d.ci is not None
        assert stats.excludes_zero(d.ci) == d.significant
        assert "after Holm's adjustment for 3 comparisons" in d.verdict
        _assert_consistent_sentence(d, [])
    assert "98.3% CI" in deltas[0].verdict and "97.5% CI" in deltas[1].verdict
    assert any("adjusted (Holm) for the 3 comparisons" in note for note in c.notes)
    # Alone, the second run would be significant (p = 0.03 < 0.05).
    alone = compare_runs(store, [runs[0].id, runs[2].id], n_boot=200).metric("accuracy")
    assert alone.significant and alone.deltas[0].comparisons == 1


def test_the_verdict_says_how_many_rows_were_shared(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=8)
    a = h.classification_run(store, pv, base, ds, [1, 0, 1, 0, 1, 0], rows=range(6))
    b = h.classification_run(store, pv, base, ds, [1, 1, 1, 1], rows=[2, 3, 4, 7])
    c = compare_runs(store, [a.id, b.id], shared_rows_only=True, n_boot=200)
    assert " on 3 shared rows" in c.metric("accuracy").verdict
    same = h.classification_run(store, pv, base, ds, [1, 1, 1, 1], rows=[2, 3, 4, 7])
    assert " on 4 rows" in compare_runs(store, [same.id, b.id], n_boot=200).verdict


def test_a_running_run_is_refused_unless_allowed(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=4)
    a = h.classification_run(store, pv, base, ds, [1, 0, 1, 0])
    b = h.classification_run(store, pv, base, ds, [1, 1, 1, 0], finished=False)
    with pytest.raises(BadInputError, match=f"run {b.id} is still running .*--allow-running"):
        compare_runs(store, [a.id, b.id], n_boot=200)
    c = compare_runs(store, [a.id, b.id], n_boot=200, allow_running=True)
    assert f"run {b.id} is running" in c.notes


def test_a_run_whose_process_vanished_is_compared_as_interrupted(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.engine.evaluation import run as evaluation_run

    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=4)
    a = h.classification_run(store, pv, base, ds, [1, 0, 1, 0])
    b = h.classification_run(store, pv, base, ds, [1, 1, 1, 0], finished=False)
    monkeypatch.setattr(evaluation_run, "run_process_alive", lambda run: False)  # killed
    c = compare_runs(store, [a.id, b.id], n_boot=200)
    assert c.runs[1].status == "interrupted"
    assert f"run {b.id} is interrupted" in c.notes and f"run {b.id} is running" not in c.notes


def test_one_shared_row_leaves_bootstrap_metrics_untested(store: Store) -> None:
    pv, base = h.prompt(store, "gen"), h.base_model(store)
    ds = h.dataset(store, "gen", n=1, task="generation", labels=())
    runs = [
        h.generation_run(store, pv, base, ds, ["a"], ["b"], scores=[{"similarity": v}],
                         metrics=("similarity",))
        for v in (0.3, 0.6)
    ]  # fmt: skip
    c = compare_runs(store, [r.id for r in runs], n_boot=200)
    assert "similarity: not tested (a bootstrap needs at least 2 rows)" in c.notes
    assert c.metrics == [] and c.verdict == "no comparable metric"

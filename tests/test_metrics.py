"""Metrics against values computed directly with sacrebleu / rouge-score and hand tables."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.metrics import (
    INVALID,
    Example,
    aggregate_metrics,
    confusion_matrix,
    f1_scores,
    get_metric,
    normalize_label,
    percentile,
    resolve_metrics,
    run_stats,
    score_example,
)

LABELS = ["irony", "non_irony"]


def _run(names: list[str], rows: Sequence[tuple[str, str | None]], labels=LABELS, raw=None):
    metrics = [get_metric(n, labels) for n in names]
    examples = [Example(raw[i] if raw else pred, pred, ref) for i, (pred, ref) in enumerate(rows)]
    scores = [score_example(metrics, e) for e in examples]
    return scores, aggregate_metrics(metrics, examples, scores)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("irony", "irony"),
        ("  IRONY.\n", "irony"),
        ("non_irony", "non_irony"),
        ("Non-irony", "non_irony"),
        ("non irony", "non_irony"),
        ("**non_irony**", "non_irony"),
        ("irony - the tweet mocks itself", "irony"),
        ("Answer: non_irony", "non_irony"),
        ("I think this is irony.", "irony"),
        ("ironyish", INVALID),
        ("sarcasm", INVALID),
        ("", INVALID),
    ],
)
def test_normalize_label(text: str, expected: str) -> None:
    assert normalize_label(text, LABELS) == expected


def test_normalize_label_prefers_first_mention() -> None:
    assert normalize_label("positive, not negative", ["negative", "positive"]) == "positive"


def test_accuracy_and_macro_f1_against_hand_table() -> None:
    # refs:  a a a b b c ; preds: a a b b invalid c
    refs = ["a", "a", "a", "b", "b", "c"]
    preds = ["a", "a", "b", "b", INVALID, "c"]
    scores, agg = _run(
        ["accuracy", "macro_f1"], list(zip(preds, refs, strict=True)), labels=["a", "b", "c"]
    )
    assert [s["accuracy"] for s in scores] == [1, 1, 0, 1, 0, 1]
    assert agg["accuracy"] == pytest.approx(4 / 6)
    # a: tp2 fp0 fn1 → 4/5; b: tp1 fp1 fn1 → 2/4; c: tp1 → 1
    assert agg["f1_a"] == pytest.approx(0.8)
    assert agg["f1_b"] == pytest.approx(0.5)
    assert agg["f1_c"] == pytest.approx(1.0)
    assert agg["macro_f1"] == pytest.approx((0.8 + 0.5 + 1.0) / 3)
    assert agg["invalid_rate"] == pytest.approx(1 / 6)
    matrix = agg["confusion_matrix"]
    assert matrix["labels"] == ["a", "b", "c", INVALID]
    assert matrix["matrix"] == [[2, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_absent_class_counts_zero_in_macro() -> None:
    assert f1_scores(["a", "a"], ["a", "a"], ["a", "b"]) == {"a": 1.0, "b": 0.0}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.sampled_from(["a", "b", "c", INVALID])),
        min_size=1,
        max_size=40,
    )
)
def test_macro_f1_bounds_and_matrix_totals(pairs: list[tuple[str, str]]) -> None:
    refs = [r for r, _ in pairs]
    preds = [p for _, p in pairs]
    _, agg = _run(
        ["accuracy", "macro_f1"], list(zip(preds, refs, strict=True)), labels=["a", "b", "c"]
    )
    assert 0.0 <= agg["macro_f1"] <= 1.0
    assert 0.0 <= agg["accuracy"] <= 1.0
    matrix = agg["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == len(pairs)
    diagonal = sum(matrix[i][i] for i in range(len(matrix)))
    assert diagonal / len(pairs) == pytest.approx(agg["accuracy"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from("abc"), min_size=1, max_size=30))
def test_perfect_predictions(refs: list[str]) -> None:
    _, agg = _run(["accuracy", "macro_f1"], [(r, r) for r in refs], labels=sorted(set(refs)))
    assert agg["accuracy"] == 1.0
    assert agg["macro_f1"] == pytest.approx(1.0)


def test_confusion_matrix_orders_labels_then_extras() -> None:
    order, matrix = confusion_matrix(["x"], ["zz"], ["x", "y"])
    assert order == ["x", "y", "zz"]
    assert matrix == [[0, 0, 1], [0, 0, 0], [0, 0, 0]]


def test_bleu_and_chrf_match_sacrebleu() -> None:
    hyps = ["the cat sat on the mat today", "a quick brown fox jumps"]
    refs = ["the cat sat on the mat", "the quick brown fox jumped over"]
    scores, agg = _run(["bleu", "chrf"], list(zip(hyps, refs, strict=True)))
    assert agg["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert agg["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    for score, hyp, ref in zip(scores, hyps, refs, strict=True):
        assert score["bleu"] == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score)
        assert score["chrf"] == pytest.approx(sacrebleu.sentence_chrf(hyp, [ref]).score)
    assert 0 < agg["bleu"] < 100


def test_rouge_matches_rouge_score() -> None:
    hyps = ["the cats are sitting", "nothing in common"]
    refs = ["the cat sat on the mat", "entirely different words"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores, agg = _run(["rouge1", "rouge2", "rougeL"], list(zip(hyps, refs, strict=True)))
    for kind in ("rouge1", "rouge2", "rougeL"):
        expected = [scorer.score(r, h)[kind].fmeasure for h, r in zip(hyps, refs, strict=True)]
        assert [s[kind] for s in scores] == pytest.approx(expected)
        assert agg[kind] == pytest.approx(sum(expected) / 2)
    assert scores[0]["rouge1"] > 0 and scores[1]["rouge1"] == 0


def test_exact_match_contains_regex_json() -> None:
    rows = [("Paris", " paris "), ("Lyon", "Paris")]
    scores, agg = _run(["exact_match"], rows)
    assert [s["exact_match"] for s in scores] == [1.0, 0.0]
    assert agg["exact_match"] == 0.5

    raw = ["The capital is Paris.", "I do not know"]
    scores, _ = _run(
        ["contains", "contains:capital", "regex:\\bParis\\b", "regex"],
        [("x", "paris"), ("y", "kn.w")],
        raw=raw,
    )
    assert [s["contains"] for s in scores] == [1.0, 0.0]
    assert [s["contains:capital"] for s in scores] == [1.0, 0.0]
    assert [s["regex:\\bParis\\b"] for s in scores] == [1.0, 0.0]
    assert [s["regex"] for s in scores] == [0.0, 1.0]

    raw = ['```json\n{"a": 1}\n```', "{not json", "[1, 2]"]
    scores, agg = _run(["valid_json"], [("", None)] * 3, raw=raw)
    assert [s["valid_json"] for s in scores] == [1.0, 0.0, 1.0]
    assert agg["valid_json"] == pytest.approx(2 / 3)


def test_unknown_or_misused_metrics_are_bad_input() -> None:
    with pytest.raises(BadInputError, match="unknown metric 'blue'"):
        get_metric("blue")
    with pytest.raises(BadInputError, match="bad pattern"):
        get_metric("regex:(")
    with pytest.raises(BadInputError, match="needs a reference"):
        resolve_metrics(["bleu"], "generation", [], has_reference=False)
    with pytest.raises(BadInputError, match="classification"):
        resolve_metrics(["macro_f1"], "generation", [], has_reference=True)
    assert [m.name for m in resolve_metrics([], "classification", LABELS, True)] == [
        "accuracy",
        "macro_f1",
    ]
    assert [m.name for m in resolve_metrics(["valid_json"], "generation", [], False)] == [
        "valid_json"
    ]


def test_run_stats() -> None:
    stats = run_stats([100.0, 200.0, 300.0, 400.0], [10, 20, 30, 40], [5, 5, 5, 5])
    assert stats["latency_p50"] == pytest.approx(250.0)
    assert stats["latency_p95"] == pytest.approx(385.0)
    assert stats["tokens_in_mean"] == 25
    assert stats["tokens_out_mean"] == 5
    assert stats["tokens_per_second"] == pytest.approx(20 / 1.0)
    assert run_stats([], [], []) == {}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=30), st.floats(0, 100))
def test_percentile_within_range_and_monotonic(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert min(values) - 1e-6 <= p <= max(values) + 1e-6
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)
    assert percentile(values, q) <= percentile(values, min(100.0, q + 10)) + 1e-6

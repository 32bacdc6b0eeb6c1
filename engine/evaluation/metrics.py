"""Metrics by name: what each example contributes, and the run-level aggregate.

A run scores every example as it is produced (so an interrupted run keeps its scores) and
aggregates at the end from the stored rows, so a resumed run aggregates over all of them.
BLEU, chrF and ROUGE come from sacrebleu and rouge-score; classification F1 comes from a
small confusion-matrix routine (sklearn is not a dependency).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.answers import answers_match

INVALID = "invalid"
"""The prediction recorded when a generated text maps to none of the dataset's labels."""

Scores = dict[str, float]


@dataclass(frozen=True)
class Example:
    """What a metric sees of one scored row."""

    output: str
    """The raw generated text."""
    prediction: str
    """The text that is scored: the extracted answer, or for classification the label."""
    reference: str | None = None
    """The reference, or its extracted final answer when the dataset has an answer rule."""
    answer_found: bool | None = None
    """Whether the answer rule found an answer in the output; None when no rule applies."""


@dataclass(frozen=True)
class Metric:
    """A named metric: an optional per-example score and an aggregate over a run."""

    name: str
    description: str
    needs_reference: bool
    per_example: Callable[[Example], float | None] | None
    aggregate: Callable[[Sequence[Example], Sequence[float | None]], dict[str, Any]]
    task: str = "any"
    """'classification', 'generation' or 'any': which datasets it makes sense for."""


def normalize_text(text: str) -> str:
    """Strip, collapse whitespace and case-fold, so formatting noise never costs a match."""
    return " ".join(text.split()).casefold()


def _label_forms(label: str) -> list[str]:
    base = normalize_text(label)
    forms = {base, base.replace("_", " "), base.replace("-", " "), base.replace("_", "-")}
    return sorted(forms, key=len, reverse=True)


def normalize_label(text: str, labels: Sequence[str]) -> str:
    """Map a generated text to the closest dataset label, or INVALID.

    Tries an exact match (case-folded, punctuation around it stripped), then a label the
    text starts with, then the first label contained as a whole word; the longest label wins
    a tie so 'non_irony' is not read as 'irony'.
    """
    if not labels:
        return text.strip()
    cleaned = normalize_text(text).strip(" \t\n\"'`*.,:;!?()[]{}<>")
    if not cleaned:
        return INVALID
    forms = [(form, label) for label in labels for form in _label_forms(label)]
    forms.sort(key=lambda pair: len(pair[0]), reverse=True)
    for form, label in forms:
        if cleaned == form:
            return label
    for form, label in forms:
        if cleaned.startswith(form) and not _continues_word(cleaned, len(form)):
            return label
    spans: list[tuple[int, int, str]] = []
    for form, label in forms:
        for match in re.finditer(rf"(?<![\w-]){re.escape(form)}(?![\w-])", cleaned):
            spans.append((match.start(), match.end(), label))
    outer = [s for s in spans if not any(o[0] <= s[0] and s[1] <= o[1] and o != s for o in spans)]
    if not outer:
        return INVALID
    return min(outer, key=lambda s: (s[0], -(s[1] - s[0])))[2]


def _continues_word(text: str, end: int) -> bool:
    return end < len(text) and (text[end].isalnum() or text[end] in "_-")


# ----------------------------------------------------------------------- per-example checks


def _exact(example: Example) -> float:
    if example.reference is None:
        return 0.0
    return float(normalize_text(example.prediction) == normalize_text(example.reference))


def _contains(example: Example) -> float:
    if not example.reference:
        return 0.0
    return float(normalize_text(example.reference) in normalize_text(example.output))


def _strip_fences(text: str) -> str:
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    return (fenced.group(1) if fenced else text).strip()


def _valid_json(example: Example) -> float:
    try:
        json.loads(_strip_fences(example.output))
    except ValueError:
        return 0.0
    return 1.0


def _sentence_bleu(example: Example) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_bleu(example.prediction, [example.reference or ""]).score)


def _sentence_chrf(example: Example) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_chrf(example.prediction, [example.reference or ""]).score)


@cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def _rouge(kind: str) -> Callable[[Example], float]:
    def score(example: Example) -> float:
        result = _rouge_scorer().score(example.reference or "", example.prediction)
        return float(result[kind].fmeasure)

    return score


# --------------------------------------------------------------------------- aggregates


def _mean_of(name: str) -> Callable[[Sequence[Example], Sequence[float | None]], dict[str, Any]]:
    def aggregate(examples: Sequence[Example], values: Sequence[float | None]) -> dict[str, Any]:
        present = [v for v in values if v is not None]
        return {name: sum(present) / len(present) if present else 0.0}

    return aggregate


def _corpus_bleu(examples: Sequence[Example], values: Sequence[float | None]) -> dict[str, Any]:
    import sacrebleu

    hyps = [e.prediction for e in examples]
    refs = [[e.reference or "" for e in examples]]
    return {"bleu": float(sacrebleu.corpus_bleu(hyps, refs).score) if examples else 0.0}


def _corpus_chrf(examples: Sequence[Example], values: Sequence[float | None]) -> dict[str, Any]:
    import sacrebleu

    hyps = [e.prediction for e in examples]
    refs = [[e.reference or "" for e in examples]]
    return {"chrf": float(sacrebleu.corpus_chrf(hyps, refs).score) if examples else 0.0}


def confusion_matrix(
    references: Sequence[str], predictions: Sequence[str], labels: Sequence[str]
) -> tuple[list[str], list[list[int]]]:
    """Counts[true][predicted] over `labels` plus INVALID (and any other predicted value).

    Returns:
        (the row/column label order, the matrix as nested lists).
    """
    order = list(dict.fromkeys([*labels, *references]))
    extra = [p for p in dict.fromkeys(predictions) if p not in order]
    order += sorted(extra, key=lambda p: (p == INVALID, p))
    index = {label: i for i, label in enumerate(order)}
    matrix = [[0] * len(order) for _ in order]
    for ref, pred in zip(references, predictions, strict=True):
        matrix[index[ref]][index[pred]] += 1
    return order, matrix


def f1_scores(
    references: Sequence[str], predictions: Sequence[str], labels: Sequence[str]
) -> dict[str, float]:
    """Per-class F1 for each label; a class never predicted nor present scores 0."""
    out: dict[str, float] = {}
    for label in labels:
        tp = sum(1 for r, p in zip(references, predictions, strict=True) if r == p == label)
        fp = sum(1 for r, p in zip(references, predictions, strict=True) if p == label != r)
        fn = sum(1 for r, p in zip(references, predictions, strict=True) if r == label != p)
        denominator = 2 * tp + fp + fn
        out[label] = 2 * tp / denominator if denominator else 0.0
    return out


def _classification_labels(examples: Sequence[Example], labels: Sequence[str]) -> list[str]:
    found = [e.reference for e in examples if e.reference is not None]
    return list(dict.fromkeys([*labels, *found]))


def _macro_f1_for(
    labels: Sequence[str],
) -> Callable[[Sequence[Example], Sequence[float | None]], dict[str, Any]]:
    def aggregate(examples: Sequence[Example], values: Sequence[float | None]) -> dict[str, Any]:
        scored = [e for e in examples if e.reference is not None]
        refs = [str(e.reference) for e in scored]
        preds = [e.prediction for e in scored]
        classes = _classification_labels(scored, labels)
        per_class = f1_scores(refs, preds, classes)
        order, matrix = confusion_matrix(refs, preds, classes)
        result: dict[str, Any] = {
            "macro_f1": sum(per_class.values()) / len(per_class) if per_class else 0.0
        }
        result.update({f"f1_{label}": value for label, value in per_class.items()})
        result["invalid_rate"] = (
            sum(1 for p in preds if p == INVALID) / len(preds) if preds else 0.0
        )
        result["confusion_matrix"] = {"labels": order, "matrix": matrix}
        return result

    return aggregate


def _regex_metric(name: str, pattern: str | None) -> Metric:
    """`regex` treats the reference as the pattern; `regex:PATTERN` uses a fixed one."""
    compiled = None
    if pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise BadInputError(f"bad pattern in metric {name!r}: {exc}") from None

    def score(example: Example) -> float:
        if compiled is not None:
            return float(compiled.search(example.output) is not None)
        if example.reference is None:
            return 0.0
        try:
            return float(re.search(example.reference, example.output) is not None)
        except re.error:
            return 0.0

    return Metric(
        name, "output matches a regular expression", pattern is None, score, _mean_of(name)
    )


def _contains_metric(name: str, needle: str | None) -> Metric:
    if needle is None:
        return Metric(name, "the reference appears in the output", True, _contains, _mean_of(name))
    wanted = normalize_text(needle)

    def score(example: Example) -> float:
        return float(wanted in normalize_text(example.output))

    return Metric(name, f"the output contains {needle!r}", False, score, _mean_of(name))


def _final_answer_metric(name: str, tolerance: str | None) -> Metric:
    """`final_answer[:TOLERANCE]`: the extracted answer equals the reference's final answer
    (numbers within the tolerance, default exact); also reports the extraction-failure rate."""
    try:
        allowed = float(tolerance) if tolerance is not None else 0.0
    except ValueError:
        allowed = -1.0
    if not (allowed >= 0 and math.isfinite(allowed)):
        raise BadInputError(f"tolerance in {name!r} must be a number >= 0, got {tolerance!r}")

    def score(example: Example) -> float:
        if example.reference is None or example.answer_found is False:
            return 0.0
        return float(answers_match(example.prediction, example.reference, allowed))

    def aggregate(examples: Sequence[Example], values: Sequence[float | None]) -> dict[str, Any]:
        result = _mean_of(name)(examples, values)
        ruled = [e for e in examples if e.answer_found is not None]
        failed = sum(1 for e in ruled if e.answer_found is False)
        result["extraction_failure_rate"] = failed / len(ruled) if ruled else 0.0
        return result

    return Metric(name, "the final answer equals the reference's", True, score, aggregate)


def _accuracy(example: Example) -> float:
    return float(example.reference is not None and example.prediction == example.reference)


def _build(name: str, labels: Sequence[str]) -> Metric:
    base, sep, arg = name.partition(":")
    parameter = arg if sep else None
    if base == "regex":
        return _regex_metric(name, parameter)
    if base == "contains":
        return _contains_metric(name, parameter)
    if base == "final_answer":
        return _final_answer_metric(name, parameter)
    if sep:
        raise BadInputError(f"metric {base!r} takes no ':' argument (in {name!r})")
    simple: dict[str, Metric] = {
        "exact_match": Metric(
            name, "normalised prediction equals the reference", True, _exact, _mean_of(name)
        ),
        "accuracy": Metric(
            name,
            "predicted label equals the reference",
            True,
            _accuracy,
            _mean_of(name),
            "classification",
        ),
        "macro_f1": Metric(
            name,
            "unweighted mean of per-class F1 (+ confusion matrix)",
            True,
            None,
            _macro_f1_for(labels),
            "classification",
        ),
        "bleu": Metric(
            name,
            "sacrebleu BLEU (corpus; sentence BLEU per row)",
            True,
            _sentence_bleu,
            _corpus_bleu,
            "generation",
        ),
        "chrf": Metric(
            name,
            "sacrebleu chrF (corpus; sentence chrF per row)",
            True,
            _sentence_chrf,
            _corpus_chrf,
            "generation",
        ),
        "valid_json": Metric(name, "the output parses as JSON", False, _valid_json, _mean_of(name)),
        # Test-case datasets: the row's assertions give these scores (evaluation/assertions.py).
        "pass": Metric(name, "every assertion of the case passed", False, None, _mean_of(name)),
        "assertion_pass": Metric(
            name, "share of the case's assertions that passed", False, None, _mean_of(name)
        ),
    }
    for kind in ("rouge1", "rouge2", "rougeL"):
        simple[kind] = Metric(
            name,
            f"rouge-score {kind} F-measure (mean)",
            True,
            _rouge(kind),
            _mean_of(name),
            "generation",
        )
    if base not in simple:
        known = ", ".join(
            [*METRIC_NAMES, "regex:PATTERN", "contains:TEXT", "final_answer:TOLERANCE"]
        )
        raise BadInputError(f"unknown metric {name!r}; choose from {known}")
    return simple[base]


METRIC_NAMES = (
    "exact_match",
    "accuracy",
    "macro_f1",
    "bleu",
    "chrf",
    "rouge1",
    "rouge2",
    "rougeL",
    "contains",
    "regex",
    "valid_json",
    "final_answer",
    "pass",
    "assertion_pass",
)
"""Names `get_metric` knows; `regex:PATTERN`, `contains:TEXT` and `final_answer:TOLERANCE`
take an argument."""


def get_metric(name: str, labels: Sequence[str] = ()) -> Metric:
    """Look a metric up by name; unknown names are bad input that lists the known ones."""
    return _build(name.strip(), labels)


def default_metrics(task: str) -> list[str]:
    """Metrics used when neither the run nor the dataset names any."""
    if task == "classification":
        return ["accuracy", "macro_f1"]
    return ["exact_match", "bleu", "chrf", "rougeL"]


def resolve_metrics(
    names: Sequence[str], task: str, labels: Sequence[str], has_reference: bool
) -> list[Metric]:
    """Validate metric names for a dataset before any run starts."""
    chosen = list(dict.fromkeys(n.strip() for n in names if n.strip())) or default_metrics(task)
    metrics = [get_metric(n, labels) for n in chosen]
    for metric in metrics:
        if metric.needs_reference and not has_reference:
            raise BadInputError(
                f"metric {metric.name!r} needs a reference column, and this dataset has none"
            )
        if metric.task == "classification" and task != "classification":
            raise BadInputError(f"metric {metric.name!r} is for classification datasets only")
    return metrics


def score_example(metrics: Sequence[Metric], example: Example) -> Scores:
    """Per-example scores (only metrics that define one)."""
    scores: Scores = {}
    for metric in metrics:
        if metric.per_example is not None:
            value = metric.per_example(example)
            if value is not None:
                scores[metric.name] = float(value)
    return scores


def aggregate_metrics(
    metrics: Sequence[Metric], examples: Sequence[Example], scores: Sequence[Scores]
) -> dict[str, Any]:
    """Run-level values of every metric, from the examples and their stored scores."""
    result: dict[str, Any] = {"n": len(examples)}
    for metric in metrics:
        values = [s.get(metric.name) for s in scores]
        result.update(metric.aggregate(examples, values))
    return result


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), without importing numpy."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run_stats(
    latencies_ms: Sequence[float], tokens_in: Sequence[int], tokens_out: Sequence[int]
) -> dict[str, float]:
    """Latency percentiles, token means and throughput over the rows that were generated.

    Rows served from the cache are left out by the caller: their latency is a lookup.
    """
    if not latencies_ms:
        return {}
    total_seconds = sum(latencies_ms) / 1000
    return {
        "latency_p50": percentile(latencies_ms, 50),
        "latency_p95": percentile(latencies_ms, 95),
        "tokens_in_mean": sum(tokens_in) / len(tokens_in),
        "tokens_out_mean": sum(tokens_out) / len(tokens_out),
        "tokens_per_second": sum(tokens_out) / total_seconds if total_seconds > 0 else 0.0,
    }

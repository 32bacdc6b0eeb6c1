"""Per-metric resampling statistics over the rows two or more runs share.

Mean-type metrics resample their per-example scores. Corpus metrics (BLEU, chrF, macro-F1)
are not means of per-row scores, so each row contributes sufficient statistics (n-gram
matches, per-class tp/fp/fn) that are summed over a resample and turned into the metric: the
corpus value is recomputed on every bootstrap sample without re-tokenising any text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.compare.stats import mean_statistic
from tunelab.store import ProbeRequest, Run, RunOutput

if TYPE_CHECKING:
    import numpy as np

    from tunelab.engine.compare.stats import BatchStatistic

CORPUS_METRICS = ("bleu", "chrf", "macro_f1")
LOWER_IS_BETTER_PREFIXES = ("latency", "invalid_rate", "loss", "perplexity", "cost")
LATENCY = "latency_ms"


@dataclass(frozen=True)
class MetricSeries:
    """Everything needed to resample one metric for every run over the same rows."""

    name: str
    kind: str
    """'binary' (right/wrong per row), 'continuous' (a number per row) or 'corpus'."""
    higher_is_better: bool
    rows: int
    statistics: list[BatchStatistic]
    per_example: list[np.ndarray | None]
    """The per-row values for binary and continuous metrics (None for corpus ones)."""


def higher_is_better(name: str) -> bool:
    return not name.startswith(LOWER_IS_BETTER_PREFIXES)


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each row appears in each resample, as a (batch, n) matrix."""
    import numpy as np

    batch = indices.shape[0]
    flat = (indices + n * np.arange(batch)[:, None]).ravel()
    # Float counts so the product with the statistics table goes through BLAS (exact below 2^53).
    return np.bincount(flat, minlength=batch * n).reshape(batch, n).astype(float)


def sacrebleu_statistic(name: str, hypotheses: list[str], references: list[str]) -> BatchStatistic:
    """Corpus BLEU or chrF (sacrebleu defaults, as engine.metrics computes them) per resample."""
    import numpy as np
    from sacrebleu.metrics import BLEU, CHRF

    metric = BLEU() if name == "bleu" else CHRF()
    # Per-sentence sufficient statistics; sacrebleu's own paired bootstrap sums these too.
    table = np.asarray(metric._extract_corpus_statistics(hypotheses, [references]), dtype=float)
    n = len(hypotheses)

    def stat(indices: np.ndarray) -> np.ndarray:
        sums = _counts(indices, n) @ table
        return np.array(
            [float(metric._compute_score_from_stats([round(v) for v in row]).score) for row in sums]
        )

    return stat


def macro_f1_statistic(
    predictions: Sequence[str], references: Sequence[str | None], labels: Sequence[str]
) -> BatchStatistic:
    """Macro-F1 over the dataset's labels (plus any reference seen), per resample.

    Mirrors engine.metrics: rows without a reference are left out, and a class that is neither
    predicted nor present scores 0.
    """
    import numpy as np

    classes = list(dict.fromkeys([*labels, *(r for r in references if r is not None)]))
    n, k = len(predictions), len(classes)
    table = np.zeros((n, 3 * k))
    for row, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
        if ref is None:
            continue
        for c, label in enumerate(classes):
            table[row, c] = pred == label == ref
            table[row, k + c] = pred == label != ref
            table[row, 2 * k + c] = ref == label != pred

    def stat(indices: np.ndarray) -> np.ndarray:
        sums = _counts(indices, n) @ table
        tp, fp, fn = sums[:, :k], sums[:, k : 2 * k], sums[:, 2 * k :]
        denominator = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
        return np.asarray(f1.mean(axis=1)) if k else np.zeros(indices.shape[0])

    return stat


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float)


def _per_example_series(name: str, outputs: list[list[RunOutput]]) -> MetricSeries | None:
    import numpy as np

    if not all(_numeric(o.scores.get(name)) for outs in outputs for o in outs):
        return None
    arrays = [np.array([float(o.scores[name]) for o in outs]) for outs in outputs]
    binary = all(np.isin(a, (0.0, 1.0)).all() for a in arrays)
    return MetricSeries(
        name,
        "binary" if binary else "continuous",
        higher_is_better(name),
        len(arrays[0]),
        [mean_statistic(a) for a in arrays],
        list(arrays),
    )


def _corpus_series(
    name: str, outputs: list[list[RunOutput]], labels: Sequence[str]
) -> MetricSeries | None:
    references = [o.reference for o in outputs[0]]
    if name in ("bleu", "chrf") and any(r is None for r in references):
        return None
    if name == "macro_f1" and all(r is None for r in references):
        return None
    statistics: list[BatchStatistic] = []
    for outs in outputs:
        predictions = [o.prediction if o.prediction is not None else o.output for o in outs]
        if name == "macro_f1":
            statistics.append(macro_f1_statistic(predictions, references, labels))
        else:
            refs = [r or "" for r in references]
            statistics.append(sacrebleu_statistic(name, predictions, refs))
    return MetricSeries(name, "corpus", True, len(references), statistics, [None] * len(outputs))


def _latency_series(
    outputs: list[list[RunOutput]], probes: Sequence[Sequence[ProbeRequest]] | None = None
) -> MetricSeries | None:
    """Per-request latency paired by row: the latency probes' rows every run timed, else rows
    every run generated alone (batch size 1). A batched row's time is a share of its batch,
    not a latency, so it never counts."""
    import numpy as np

    compared = {o.row_idx for o in outputs[0]}
    if probes and all(probes):
        timed = [{p.row_idx: p.total_ms for p in probe} for probe in probes]
        shared = sorted(compared.intersection(*timed))
        if len(shared) >= 2:
            arrays = [np.array([t[i] for i in shared], dtype=float) for t in timed]
            return MetricSeries(
                LATENCY,
                "continuous",
                False,
                len(shared),
                [mean_statistic(a) for a in arrays],
                list(arrays),
            )
    keep = [
        i
        for i in range(len(outputs[0]))
        if all(not outs[i].cached and outs[i].batch_rows == 1 for outs in outputs)
    ]
    if len(keep) < 2 or not any(outs[i].latency_ms for outs in outputs for i in keep):
        return None
    arrays = [np.array([outs[i].latency_ms for i in keep], dtype=float) for outs in outputs]
    return MetricSeries(
        LATENCY, "continuous", False, len(keep), [mean_statistic(a) for a in arrays], list(arrays)
    )


def build_series(
    runs: Sequence[Run],
    outputs: list[list[RunOutput]],
    labels: Sequence[str],
    probes: Sequence[Sequence[ProbeRequest]] | None = None,
) -> tuple[list[MetricSeries], list[str]]:
    """One series per metric every run has, over aligned rows (same order in every run).

    Returns:
        (the series, notes about metrics that could not be compared).
    """
    notes: list[str] = []
    declared = [n for n in runs[0].metric_names if all(n in r.metric_names for r in runs[1:])]
    score_keys = [
        k
        for k in dict.fromkeys(k for o in outputs[0] for k in o.scores)
        if all(any(k in o.scores for o in outs) for outs in outputs[1:])
    ]
    series: list[MetricSeries] = []
    for name in dict.fromkeys([*declared, *score_keys]):
        made: MetricSeries | None
        if name in CORPUS_METRICS:
            made = _corpus_series(name, outputs, labels)
            if made is None and name != "macro_f1":
                made = _per_example_series(name, outputs)
        else:
            made = _per_example_series(name, outputs)
        if made is None:
            notes.append(f"{name}: not comparable row by row (missing scores or references)")
            continue
        series.append(made)
    latency = _latency_series(outputs, probes)
    if latency is not None:
        series.append(latency)
    return series, notes

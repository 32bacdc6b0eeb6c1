"""Compare runs on the same test rows: which is better, by how much, how sure, at what cost.

The first run is the baseline; every other run is compared with it row by row (paired), so
the question "prompt-engineer or fine-tune?" is answered on identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tunelab.engine.compare import stats
from tunelab.engine.compare.cost import DEFAULT_PRICE_PER_GPU_HOUR, break_even, run_cost
from tunelab.engine.compare.records import (
    Comparison,
    ExampleCounts,
    MetricComparison,
    MetricDelta,
    PairComparison,
    RowDiff,
    RunSummary,
)
from tunelab.engine.compare.series import MetricSeries, build_series
from tunelab.engine.compare.trend import Trend, TrendPoint, metric_trend
from tunelab.engine.errors import BadInputError
from tunelab.engine.text_diff import word_diff
from tunelab.store import Run, RunOutput, Store

if TYPE_CHECKING:
    import numpy as np

CORRECTNESS_KEYS = ("accuracy", "exact_match", "correct", "contains", "valid_json")
"""Per-example scores, in order of preference, that say whether a row was right."""
HIGHLIGHTS = 5

__all__ = [
    "Trend", "TrendPoint", "classify_rows", "compare_row", "compare_runs", "metric_trend",
    "row_diff",
]  # fmt: skip


def _summary(run: Run) -> RunSummary:
    return RunSummary(
        run.id,
        run.prompt_ref,
        run.model_name,
        run.model_id,
        run.dataset_name,
        run.split,
        run.status,
        run.rows_done,
        run.scoring,
        dict(run.settings),
    )


def _align(
    runs: list[Run], outputs: list[list[RunOutput]], shared_rows_only: bool
) -> tuple[list[int], list[str]]:
    """The row indices every run covers; refuses mismatched datasets, splits or row sets."""
    first = runs[0]
    for run in runs[1:]:
        if run.dataset_id != first.dataset_id or run.split != first.split:
            raise BadInputError(
                f"run {run.id} is on {run.dataset_name}/{run.split} but run {first.id} is on "
                f"{first.dataset_name}/{first.split}; compare runs on the same dataset and split"
            )
    row_sets = [{o.row_idx for o in outs} for outs in outputs]
    shared = set.intersection(*row_sets)
    notes: list[str] = []
    if any(rows != shared for rows in row_sets):
        sizes = ", ".join(f"run {r.id}: {len(s)}" for r, s in zip(runs, row_sets, strict=True))
        if not shared_rows_only:
            raise BadInputError(
                f"the runs cover different rows ({sizes}; {len(shared)} shared); pass "
                "--shared-rows to compare only the shared rows"
            )
        notes.append(f"compared only the {len(shared)} rows every run covers ({sizes})")
    if not shared:
        raise BadInputError("the runs share no scored rows; nothing to compare")
    return sorted(shared), notes


def _fmt(value: float) -> str:
    return f"{value:+.4g}"


def _compare_metric(
    series: MetricSeries,
    run_ids: list[int],
    rows: int,
    *,
    seed: int,
    n_boot: int,
    confidence: float,
) -> MetricComparison:
    import numpy as np

    everything = np.arange(series.rows)[None, :]
    values = [float(stat(everything)[0]) for stat in series.statistics]
    deltas: list[MetricDelta] = []
    for i in range(1, len(run_ids)):
        interval = stats.paired_bootstrap_ci(
            series.statistics[0],
            series.statistics[i],
            series.rows,
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
        )
        p_value, test, needed = _test(series, i, interval, seed)
        base = MetricDelta(
            run_ids[0],
            run_ids[i],
            interval.delta,
            (interval.low, interval.high),
            p_value,
            test,
            p_value < stats.ALPHA,
            needed,
            "",
        )
        deltas.append(_with_verdict(series, base, rows, confidence))
    return MetricComparison(
        series.name, series.kind, series.higher_is_better, series.rows, values, deltas
    )


def _with_verdict(
    series: MetricSeries, d: MetricDelta, rows: int, confidence: float
) -> MetricDelta:
    text = _verdict_text(series, d, rows, confidence)
    return MetricDelta(
        d.baseline_run_id,
        d.run_id,
        d.delta,
        d.ci,
        d.p_value,
        d.test,
        d.significant,
        d.rows_needed,
        text,
    )


def _verdict_text(series: MetricSeries, d: MetricDelta, rows: int, confidence: float) -> str:
    if d.p_value is None:
        return "no significance test for this metric"
    if d.significant:
        wins = (d.delta > 0) == series.higher_is_better
        winner = f"run {d.run_id}" if wins else f"run {d.baseline_run_id}"
        ci = "" if d.ci is None else (f" ({confidence:.0%} CI {_fmt(d.ci[0])} to {_fmt(d.ci[1])})")
        return f"{winner} is better by {abs(d.delta):.4g}{ci}, p={d.p_value:.3g}"
    if d.rows_needed is None:
        return "not significant: no difference observed"
    note = _narrow_interval_note(d, rows, confidence)
    if d.rows_needed > rows:
        return (
            f"not significant: would need about {d.rows_needed:,} rows to detect a "
            f"difference this size (have {rows:,}){note}"
        )
    return f"not significant (p={d.p_value:.3g}){note}"


def _narrow_interval_note(d: MetricDelta, rows: int, confidence: float) -> str:
    """Percentile bootstrap intervals run too narrow on few rows, so one can exclude 0 while
    the exact test does not reject; say which to believe rather than show both silently."""
    if d.ci is None or not (d.ci[0] > 0 or d.ci[1] < 0):
        return ""
    return (
        f"; the {confidence:.0%} CI excludes 0, but bootstrap intervals are too narrow "
        f"on {rows:,} rows: trust the test"
    )


def _test(
    series: MetricSeries, i: int, interval: stats.Interval, seed: int
) -> tuple[float, str, int | None]:
    """(p-value, test name, rows needed) for run i against run 0."""
    import numpy as np

    if series.kind == "binary":
        a, b = series.per_example[0], series.per_example[i]
        assert a is not None and b is not None
        fixed = int(np.sum((a < 0.5) & (b >= 0.5)))
        broken = int(np.sum((a >= 0.5) & (b < 0.5)))
        result = stats.mcnemar_exact(fixed, broken)
        needed = stats.rows_needed_paired_proportions(fixed, broken, series.rows)
        return result.p_value, result.test, needed
    if series.kind == "continuous":
        a, b = series.per_example[0], series.per_example[i]
        assert a is not None and b is not None
        result = stats.sign_flip_test(a, b, seed=seed)
        diffs: np.ndarray = b - a
        sd = float(diffs.std(ddof=1)) if diffs.size > 1 else 0.0
        return result.p_value, result.test, stats.rows_needed_paired_mean(interval.delta, sd)
    # Corpus metrics have no per-row differences; the bootstrap standard error (CI width over
    # 2 * 1.96) times sqrt(n) stands in for their SD in the paired t-approximation.
    spread = (interval.high - interval.low) / 3.92
    sd = spread * np.sqrt(series.rows)
    return interval.p_value, "paired bootstrap", stats.rows_needed_paired_mean(interval.delta, sd)


def _correctness_key(outputs: Sequence[Sequence[RunOutput]]) -> str | None:
    def binary_everywhere(key: str) -> bool:
        return all(
            isinstance(o.scores.get(key), int | float) and o.scores[key] in (0, 1)
            for outs in outputs
            for o in outs
        )

    common = set.intersection(*({k for o in outs for k in o.scores} for outs in outputs))
    for key in CORRECTNESS_KEYS:
        if key in common and binary_everywhere(key):
            return key
    for key in sorted(common):
        if binary_everywhere(key):
            return key
    return None


def classify_rows(a: Sequence[RunOutput], b: Sequence[RunOutput], key: str) -> ExampleCounts:
    """Fixed (wrong→right), broken (right→wrong), both right and both wrong, by row."""
    by_row = {o.row_idx: o for o in b}
    fixed: list[int] = []
    broken: list[int] = []
    both_right = both_wrong = 0
    for out_a in a:
        out_b = by_row.get(out_a.row_idx)
        if out_b is None or key not in out_a.scores or key not in out_b.scores:
            continue
        right_a, right_b = out_a.scores[key] >= 0.5, out_b.scores[key] >= 0.5
        if right_a and right_b:
            both_right += 1
        elif right_b:
            fixed.append(out_a.row_idx)
        elif right_a:
            broken.append(out_a.row_idx)
        else:
            both_wrong += 1
    return ExampleCounts(key, len(fixed), len(broken), both_right, both_wrong, fixed, broken)


def row_diff(a: RunOutput, b: RunOutput) -> RowDiff:
    """Both outputs of one row with a word-level diff from a to b."""
    return RowDiff(
        a.row_idx,
        a.reference if a.reference is not None else b.reference,
        a.output,
        b.output,
        a.prediction,
        b.prediction,
        dict(a.scores),
        dict(b.scores),
        word_diff(a.output, b.output),
    )


def compare_row(store: Store, run_a: int, run_b: int, row_idx: int) -> RowDiff:
    """The word-level diff of two runs' outputs on one row."""
    outs = []
    for run_id in (run_a, run_b):
        found = [o for o in store.run_outputs(run_id) if o.row_idx == row_idx]
        if not found:
            raise BadInputError(f"run {run_id} has no output for row {row_idx}")
        outs.append(found[0])
    return row_diff(outs[0], outs[1])


def _pair(
    a: list[RunOutput], b: list[RunOutput], key: str | None, a_id: int, b_id: int
) -> PairComparison:
    counts = classify_rows(a, b, key) if key is not None else None
    by_row = {o.row_idx: o for o in b}
    differing = [o.row_idx for o in a if o.output.strip() != by_row[o.row_idx].output.strip()]
    picked = (counts.fixed_rows[:HIGHLIGHTS] + counts.broken_rows[:HIGHLIGHTS]) if counts else []
    picked = picked or differing[:HIGHLIGHTS]
    by_row_a = {o.row_idx: o for o in a}
    examples = [row_diff(by_row_a[r], by_row[r]) for r in picked]
    return PairComparison(a_id, b_id, counts, differing, examples)


def compare_runs(
    store: Store,
    run_ids: Sequence[int],
    *,
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
    shared_rows_only: bool = False,
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR,
) -> Comparison:
    """Compare runs on the rows they share, the first run being the baseline.

    Args:
        store: the workspace store.
        run_ids: two or more run ids; every other run is compared with the first.
        seed: resampling seed; the same seed prints the same intervals and p-values.
        n_boot: bootstrap replications per metric.
        confidence: the confidence level of the intervals.
        shared_rows_only: compare only the rows every run covers instead of refusing.
        price_per_gpu_hour: the price used for inference and training costs.

    Raises:
        BadInputError: fewer than two runs, different datasets or splits, or different rows
            without `shared_rows_only`.
    """
    ids = list(dict.fromkeys(int(r) for r in run_ids))
    if len(ids) < 2:
        raise BadInputError("compare needs at least two different runs")
    if n_boot < 100:
        raise BadInputError(f"n_boot must be at least 100, not {n_boot}")
    if price_per_gpu_hour < 0:
        raise BadInputError("the price per GPU-hour cannot be negative")
    runs = [store.get_run(i) for i in ids]
    all_outputs = [store.run_outputs(i) for i in ids]
    rows, notes = _align(runs, all_outputs, shared_rows_only)
    wanted = set(rows)
    outputs = [[o for o in outs if o.row_idx in wanted] for outs in all_outputs]
    notes += [f"run {r.id} is {r.status}" for r in runs if r.status != "succeeded"]
    labels = store.get_dataset_by_id(runs[0].dataset_id).labels
    series, series_notes = build_series(runs, outputs, labels)
    notes += series_notes
    metrics = [
        _compare_metric(s, ids, len(rows), seed=seed, n_boot=n_boot, confidence=confidence)
        for s in series
    ]
    key = _correctness_key(outputs)
    pairs = [_pair(outputs[0], outputs[i], key, ids[0], ids[i]) for i in range(1, len(ids))]
    costs = [
        run_cost(store, r, outs, price_per_gpu_hour) for r, outs in zip(runs, outputs, strict=True)
    ]
    evens = [break_even(costs[0], c) for c in costs[1:]]
    return Comparison(
        [_summary(r) for r in runs],
        len(rows),
        shared_rows_only,
        notes,
        metrics,
        pairs,
        costs,
        evens,
        seed,
        n_boot,
        confidence,
        price_per_gpu_hour,
    )

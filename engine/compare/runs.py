"""Compare runs on the same test rows: which is better, by how much, how sure, at what cost.

The first run is the baseline; every other run is compared with it row by row (paired), so
the question "prompt-engineer or fine-tune?" is answered on identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tunelab.engine.compare import changes, stats
from tunelab.engine.compare.aggregate import VOTE, aggregated_rows, choose_aggregate
from tunelab.engine.compare.cost import break_even, run_cost, significantly_worse
from tunelab.engine.compare.records import (
    Comparison,
    ExampleCounts,
    MetricComparison,
    MetricDelta,
    PairComparison,
    RowDiff,
    RunSummary,
)
from tunelab.engine.compare.search_effort import prompt_effort, selection_note
from tunelab.engine.compare.series import LATENCY, MetricSeries, build_series
from tunelab.engine.compare.trend import Trend, TrendPoint, metric_trend
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.run import refresh_run_states
from tunelab.engine.evaluation.self_consistency import VOTE_PREFIX
from tunelab.engine.text_diff import word_diff
from tunelab.store import Model, Run, RunOutput, Store
from tunelab.store.workspace_config import store_config

if TYPE_CHECKING:
    import numpy as np

CORRECTNESS_KEYS = ("accuracy", "exact_match", "correct", "pass", "contains", "valid_json")
"""Per-example scores, in order of preference, that say whether a row was right."""
HIGHLIGHTS = 5

__all__ = [
    "Trend", "TrendPoint", "classify_rows", "compare_row", "compare_runs", "count_changes",
    "describe_model", "metric_trend", "paired_procedure", "row_diff", "verdict_text",
]  # fmt: skip


_METHOD_NAMES = {
    "lora": "LoRA", "prefix": "prefix tuning", "prompt": "prompt tuning", "full": "full fine-tune",
    "dpo": "DPO (LoRA)",
}  # fmt: skip


def describe_model(model: Model) -> str:
    """A fine-tune by its job and step ("LoRA job 1, step 80"), any other model by its name."""
    if model.job_id is None:
        return model.name
    method = _METHOD_NAMES.get(model.method or "", model.method or "fine-tune")
    step = "" if model.step is None else f", step {model.step}"
    return f"{method} job {model.job_id}{step}"


def _summary(run: Run, model: Model) -> RunSummary:
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
        f"{run.prompt_ref} on {describe_model(model)}",
    )


def _align(
    runs: list[Run], outputs: list[list[RunOutput]], shared_rows_only: bool
) -> tuple[list[int], list[str], bool]:
    """The row indices every run covers, notes, and whether some run covers other rows too;
    refuses mismatched datasets, splits or (without `shared_rows_only`) row sets."""
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
    trimmed = any(rows != shared for rows in row_sets)
    if trimmed:
        sizes = ", ".join(f"run {r.id}: {len(s)}" for r, s in zip(runs, row_sets, strict=True))
        if not shared_rows_only:
            raise BadInputError(
                f"the runs cover different rows ({sizes}; {len(shared)} shared); pass "
                "--shared-rows to compare only the shared rows"
            )
        notes.append(f"compared only the {len(shared)} rows every run covers ({sizes})")
    if not shared:
        raise BadInputError("the runs share no scored rows; nothing to compare")
    return sorted(shared), notes, trimmed


def count_changes(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> tuple[int, int]:
    """(fixed, broken) between two aligned right/wrong score sequences."""
    moved = [changes.change(float(x), float(y)) for x, y in zip(a, b, strict=True)]
    return moved.count(changes.FIXED), moved.count(changes.BROKEN)


def paired_procedure(
    series: MetricSeries, i: int, *, seed: int, n_boot: int
) -> stats.ExactPairedAccuracy | stats.BootstrapDelta:
    """McNemar's exact test for right/wrong rows, a BCa bootstrap for anything else."""
    if series.kind == "binary":
        a, b = series.per_example[0], series.per_example[i]
        assert a is not None and b is not None
        fixed, broken = count_changes(a, b)
        return stats.ExactPairedAccuracy(fixed, broken, series.rows)
    return stats.BootstrapDelta(
        series.statistics[0], series.statistics[i], series.rows, n_boot=n_boot, seed=seed
    )


def _rows_needed(
    series: MetricSeries,
    i: int,
    procedure: stats.ExactPairedAccuracy | stats.BootstrapDelta,
    alpha: float,
) -> int | None:
    """Rows for 80% power at `alpha` to detect the observed difference, in the paired design."""
    import numpy as np

    if isinstance(procedure, stats.ExactPairedAccuracy):
        return stats.rows_needed_paired_proportions(
            procedure.fixed, procedure.broken, procedure.rows, alpha=alpha
        )
    a, b = series.per_example[0], series.per_example[i]
    if a is not None and b is not None and a.size > 1:
        sd = float(np.std(b - a, ddof=1))
    else:
        # Corpus metrics have no per-row differences; the bootstrap standard error times
        # sqrt(n) stands in for their SD in the paired t-approximation.
        sd = procedure.standard_error * float(np.sqrt(series.rows))
    return stats.rows_needed_paired_mean(procedure.delta, sd, alpha=alpha)


def _compare_metric(
    series: MetricSeries,
    labels: list[str],
    run_ids: list[int],
    shared: bool,
    *,
    seed: int,
    n_boot: int,
    confidence: float,
) -> MetricComparison:
    """Each run against the baseline; with several runs, Holm's step-down controls the
    family-wise error and each interval is at its Holm level, so it agrees with the test."""
    import numpy as np

    everything = np.arange(series.rows)[None, :]
    values = [float(stat(everything)[0]) for stat in series.statistics]
    alpha = 1 - confidence
    procedures = [
        paired_procedure(series, i, seed=seed, n_boot=n_boot) for i in range(1, len(run_ids))
    ]
    p_values = [p.p_value for p in procedures]
    levels = stats.holm_levels(p_values, alpha)
    adjusted = stats.holm_adjusted(p_values)
    deltas: list[MetricDelta] = []
    for i, (procedure, level, p_adjusted) in enumerate(
        zip(procedures, levels, adjusted, strict=True), start=1
    ):
        d = MetricDelta(
            run_ids[0],
            run_ids[i],
            procedure.delta,
            procedure.interval(1 - level),
            procedure.p_value,
            procedure.test,
            procedure.p_value < level,
            _rows_needed(series, i, procedure, level),
            "",
            1 - level,
            p_adjusted,
            len(procedures),
            series.rows,
        )
        deltas.append(replace(d, verdict=verdict_text(series, d, labels[0], labels[i], shared)))
    return MetricComparison(
        series.name, series.kind, series.higher_is_better, series.rows, values, deltas
    )


_TEST_NAMES = {"mcnemar-exact": "McNemar exact"}


def _fmt_p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


def _level(confidence: float) -> str:
    return f"{confidence * 100:.3g}%"


def verdict_text(
    series: MetricSeries, d: MetricDelta, baseline: str, other: str, shared: bool
) -> str:
    """One sentence that names both runs, the rows, the interval and the test, and never
    contradicts itself: the interval is on the scale of the claim and agrees with the test."""
    rows = f"{d.rows:,} {'shared ' if shared else ''}row{'' if d.rows == 1 else 's'}"
    test = f"{_TEST_NAMES.get(d.test, d.test)} p={_fmt_p(d.p_value)}"
    if d.comparisons > 1:
        test += f", {_fmt_p(d.p_adjusted)} after Holm's adjustment for {d.comparisons} comparisons"
    ci = d.ci if d.ci is not None else (d.delta, d.delta)
    level = _level(d.confidence)
    if d.significant:
        # Gain of the run over the baseline, positive when the run is better.
        sign = 1.0 if series.higher_is_better else -1.0
        low, high = sorted((sign * ci[0], sign * ci[1]))
        if low > 0:
            winner, loser, gain, bounds = other, baseline, sign * d.delta, (low, high)
        else:
            winner, loser, gain, bounds = baseline, other, -sign * d.delta, (-high, -low)
        return (
            f"{winner} is better than {loser} on {series.name} by {gain:.4g} on {rows} "
            f"({level} CI {bounds[0]:+.4g} to {bounds[1]:+.4g}; {test})"
        )
    if d.delta == 0:
        return (
            f"not significant: {other} and {baseline} have the same {series.name} on {rows} "
            f"({level} CI {ci[0]:+.4g} to {ci[1]:+.4g}; {test})"
        )
    text = (
        f"not significant: {other} differs from {baseline} on {series.name} by {d.delta:+.4g} "
        f"on {rows}, but the {level} CI {ci[0]:+.4g} to {ci[1]:+.4g} includes 0 ({test})"
    )
    if d.rows_needed is not None and d.rows_needed > d.rows:
        text += (
            f"; about {d.rows_needed:,} rows would be needed to detect a difference this size "
            f"({stats.POWER:.0%} power)"
        )
    return text


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
        moved = changes.change(out_a.scores[key], out_b.scores[key])
        if moved == changes.FIXED:
            fixed.append(out_a.row_idx)
        elif moved == changes.BROKEN:
            broken.append(out_a.row_idx)
        elif changes.is_right(out_a.scores[key]):
            both_right += 1
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
    price_per_gpu_hour: float | None = None,
    allow_running: bool = False,
    aggregate: str | None = None,
) -> Comparison:
    """Compare runs on the rows they share, the first run being the baseline.

    Args:
        store: the workspace store.
        run_ids: two or more run ids; every other run is compared with the first.
        seed: resampling seed; the same seed prints the same intervals and p-values.
        n_boot: bootstrap replications per metric.
        confidence: the confidence level of the intervals.
        shared_rows_only: compare only the rows every run covers instead of refusing.
        price_per_gpu_hour: overrides the workspace config's GPU-hour price (`tunelab
            config`), which prices inference and GPU training; CPU training uses its CPU rate.
        allow_running: compare a run that is still running on the rows it has so far,
            instead of refusing.
        aggregate: 'first' (each run's first sample) or 'vote' (self-consistency runs' majority
            votes); None: the vote when every run is a vote run, else the first sample.

    Raises:
        BadInputError: fewer than two runs, a run still running without `allow_running`,
            different datasets or splits, or different rows without `shared_rows_only`.
    """
    ids = list(dict.fromkeys(int(r) for r in run_ids))
    if len(ids) < 2:
        raise BadInputError("compare needs at least two different runs")
    if n_boot < 100:
        raise BadInputError(f"n_boot must be at least 100, not {n_boot}")
    if price_per_gpu_hour is not None and price_per_gpu_hour < 0:
        raise BadInputError("the price per GPU-hour cannot be negative")
    prices = store_config(store).price
    if price_per_gpu_hour is not None:
        prices = replace(prices, gpu_hour=price_per_gpu_hour)
    if not 0 < confidence < 1:
        raise BadInputError(f"the confidence level is between 0 and 1, not {confidence}")
    refresh_run_states(store)  # a killed run reads 'interrupted', not 'running'
    runs = [store.get_run(i) for i in ids]
    for run in runs:
        if run.status == "running" and not allow_running:
            raise BadInputError(
                f"run {run.id} is still running ({run.rows_done} of {run.rows_total} rows); "
                "wait for it, or pass --allow-running to compare the rows it has"
            )
    chosen, aggregate_note = choose_aggregate(runs, aggregate)
    all_outputs = [aggregated_rows(store, r, store.run_outputs(r.id), chosen) for r in runs]
    rows, notes, trimmed = _align(runs, all_outputs, shared_rows_only)
    notes += [aggregate_note] if aggregate_note else []
    wanted = set(rows)
    outputs = [[o for o in outs if o.row_idx in wanted] for outs in all_outputs]
    notes += [f"run {r.id} is {r.status}" for r in runs if r.status != "succeeded"]
    efforts = [prompt_effort(store, r) for r in runs]
    summaries = [
        replace(_summary(r, store.get_model_by_id(r.model_id)), prompt_effort=e.text())
        for r, e in zip(runs, efforts, strict=True)
    ]
    notes += [n for r, e in zip(runs, efforts, strict=True) if (n := selection_note(r, e))]
    labels = [s.label for s in summaries]
    probes = [store.probe_requests(i) for i in ids]
    series, series_notes = build_series(
        runs, outputs, store.get_dataset_by_id(runs[0].dataset_id).labels, probes
    )
    notes += series_notes
    if chosen == VOTE:
        series = [s if s.name == LATENCY else replace(s, name=VOTE_PREFIX + s.name) for s in series]
    few = [s.name for s in series if s.kind != "binary" and s.rows < 2]
    notes += [f"{name}: not tested (a bootstrap needs at least 2 rows)" for name in few]
    series = [s for s in series if s.name not in few]
    metrics = [
        _compare_metric(s, labels, ids, trimmed, seed=seed, n_boot=n_boot, confidence=confidence)
        for s in series
    ]
    if len(ids) > 2 and metrics:
        notes.append(
            f"p-values are adjusted (Holm) for the {len(ids) - 1} comparisons with the "
            f"baseline run {ids[0]}; each interval is at the level its adjusted test uses"
        )
    key = _correctness_key(outputs)
    pairs = [_pair(outputs[0], outputs[i], key, ids[0], ids[i]) for i in range(1, len(ids))]
    costs = [
        run_cost(store, r, outs, prices, probe)
        for r, outs, probe in zip(runs, outputs, probes, strict=True)
    ]
    main = metrics[0] if metrics else None
    evens = [
        break_even(
            costs[0],
            c,
            None
            if main is None
            else significantly_worse(
                main.name,
                main.higher_is_better,
                main.deltas[i].delta,
                main.deltas[i].significant,
                c.run_id,
            ),
        )
        for i, c in enumerate(costs[1:])
    ]
    return Comparison(
        summaries,
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
        prices.gpu_hour,
        prices.cpu_hour,
    )

"""A suite's findings: each perturbation's paired drop against the clean run, recomputed
from the stored runs with the paired procedures `compare` uses (McNemar's exact test for
right/wrong rows, a BCa bootstrap otherwise), so a suite and a comparison never disagree.

Rows are paired by identity: a prompt perturbation runs on the clean run's own rows; an
input perturbation runs on a derived dataset whose lineage maps each of its rows back to
the source row it was made from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tunelab.engine.compare import stats
from tunelab.engine.compare.runs import paired_procedure
from tunelab.engine.compare.series import build_series
from tunelab.engine.robustness.records import PerturbationResult, RobustnessSummary
from tunelab.store import RobustnessItem, RobustnessSuite, Run, RunOutput, Store

SOURCE_ROWS_KEY = "source_rows"
"""Lineage key of a derived dataset: the source row index of each of its rows, in order."""
N_BOOT = 2000


def robustness_for_run(store: Store, run_id: int) -> RobustnessSummary | None:
    """The latest robustness suite of a clean run, summarised; None when it has none.

    Args:
        store: the workspace store.
        run_id: the clean run (the one that was perturbed).
    """
    suites = store.list_robustness_suites(clean_run_id=run_id)
    return summarize_suite(store, suites[0]) if suites else None


def summarize_suite(store: Store, suite: RobustnessSuite) -> RobustnessSummary:
    """Every perturbation with a scored run, its drop, paired interval and p-value.

    A perturbation whose run has not scored two paired rows yet (or lacks the suite's
    metric) is left out; the state says whether more is coming.
    """
    clean = store.get_run(suite.clean_run_id)
    clean_outputs = store.run_outputs(clean.id)
    labels = store.get_dataset_by_id(clean.dataset_id).labels
    confidence = float(suite.settings.get("confidence", 0.95))
    results: list[PerturbationResult] = []
    for item in suite.items:
        if item.run_id is None:
            continue
        run = store.get_run(item.run_id)
        paired = _paired_outputs(store, item, clean_outputs, store.run_outputs(run.id))
        if paired is None:
            continue
        result = _result(suite, item, clean, run, paired, labels, confidence)
        if result is not None:
            results.append(result)
    adjusted = stats.holm_adjusted([r.p_value if r.p_value is not None else 1.0 for r in results])
    results = [
        replace(r, p_adjusted=p) if r.p_value is not None else r
        for r, p in zip(results, adjusted, strict=True)
    ]
    return RobustnessSummary(
        suite.id, clean.id, suite.seed, tuple(results), _state(store, suite), confidence
    )


def _state(store: Store, suite: RobustnessSuite) -> str:
    if suite.status in ("failed", "interrupted"):
        return "failed"
    runs = [store.get_run(i.run_id) for i in suite.items if i.run_id is not None]
    if suite.status == "running" or len(runs) < len(suite.items):
        return "running"
    return "failed" if any(r.status != "succeeded" for r in runs) else "finished"


def _paired_outputs(
    store: Store,
    item: RobustnessItem,
    clean_outputs: Sequence[RunOutput],
    perturbed_outputs: Sequence[RunOutput],
) -> tuple[list[RunOutput], list[RunOutput]] | None:
    """Both runs' outputs on the rows they share, in the same order; None under two rows."""
    by_source: dict[int, RunOutput]
    if item.kind == "input":
        lineage = store.dataset_lineage(item.dataset_id) if item.dataset_id is not None else None
        if lineage is None:
            return None  # the derived dataset was deleted: the pairing is gone with it
        sources = [int(i) for i in lineage[SOURCE_ROWS_KEY]]
        by_source = {sources[o.row_idx]: o for o in perturbed_outputs if o.row_idx < len(sources)}
    else:
        by_source = {o.row_idx: o for o in perturbed_outputs}
    clean_by_idx = {o.row_idx: o for o in clean_outputs}
    shared = sorted(set(clean_by_idx) & set(by_source))
    if len(shared) < 2:
        return None
    return [clean_by_idx[i] for i in shared], [by_source[i] for i in shared]


def _result(
    suite: RobustnessSuite,
    item: RobustnessItem,
    clean: Run,
    run: Run,
    paired: tuple[list[RunOutput], list[RunOutput]],
    labels: Sequence[str],
    confidence: float,
) -> PerturbationResult | None:
    import numpy as np

    series_list, _notes = build_series([clean, run], list(paired), labels)
    series = next((s for s in series_list if s.name == suite.metric), None)
    if series is None:
        return None
    everything = np.arange(series.rows)[None, :]
    clean_value, perturbed_value = (float(stat(everything)[0]) for stat in series.statistics)
    procedure = paired_procedure(series, 1, seed=suite.seed, n_boot=N_BOOT)
    low, high = procedure.interval(confidence)
    # The procedure measures perturbed - clean; a drop is how much worse the perturbed run is.
    sign = -1.0 if series.higher_is_better else 1.0
    # Adding 0.0 turns -0.0 (no change, sign-flipped) into 0.0.
    ci = tuple(sorted((sign * low + 0.0, sign * high + 0.0)))
    return PerturbationResult(
        perturbation=item.perturbation,
        kind=item.kind,
        perturbed_run_id=run.id,
        metric=series.name,
        clean_metric=clean_value,
        perturbed_metric=perturbed_value,
        drop=sign * procedure.delta + 0.0,
        ci=(ci[0], ci[1]),
        p_value=procedure.p_value,
        rows=series.rows,
        detail=item.detail,
        test=procedure.test,
    )

"""A curve as it stands: each size's metric and interval, its paired delta against the prompt
run (`compare_runs`, the same test `tunelab compare` prints), its cost, and the crossover.

Read-only: it never starts or changes anything, so the CLI, the TUI and the decision report
can call it whenever they draw a curve.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from tunelab.engine.curves.crossover import crossover_size
from tunelab.engine.curves.launch import driver_alive
from tunelab.engine.curves.records import CurvePoint, CurveSummary
from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from tunelab.store import Curve, CurveEntry, Run, Store

ACTIVE_JOBS = ("queued", "running")


def summarize_curve(store: Store, curve_id: int) -> CurveSummary:
    """The curve's points, prompt band, crossover and state, from what the store holds now.

    Raises:
        NotFoundError: no curve has this id.
    """
    from tunelab.engine.evaluation.run import refresh_run_states

    refresh_run_states(store)
    curve = store.get_curve(curve_id)
    entries = store.curve_entries(curve_id)
    prompt_run = _finished_run(store, curve.prompt_run_id)
    prompt_metric = _metric_value(prompt_run, curve.metric)
    points = tuple(
        _point(store, curve, size, [e for e in entries if e.size == size], prompt_run)
        for size in sorted({e.size for e in entries})
    )
    state, notes = _state(store, curve, entries, prompt_run)
    return CurveSummary(
        curve_id=curve.id,
        dataset=curve.dataset_name,
        base_model=curve.base_model_name,
        method=curve.method,
        metric=curve.metric,
        eval_split=curve.eval_split,
        prompt_ref=curve.prompt_ref,
        prompt_run_id=curve.prompt_run_id,
        prompt_metric=prompt_metric,
        prompt_ci=run_interval(store, prompt_run, curve.metric, curve.confidence),
        points=points,
        crossover_size=crossover_size(points),
        state=state,
        confidence=curve.confidence,
        wall_seconds=_wall_seconds(curve, entries) if state != "running" else None,
        notes=tuple(notes),
        repeats=curve.repeats,
        prompt_run_source=curve.prompt_run_source,
    )


def latest_curve(
    store: Store, *, dataset: str | None = None, base_model: str | None = None
) -> CurveSummary | None:
    """The newest curve (on this dataset and base model, when named); None when there is none.

    Raises:
        NotFoundError: no dataset or model has the name given.
    """
    dataset_id = store.get_dataset(dataset).id if dataset is not None else None
    model_id = store.get_model(base_model).id if base_model is not None else None
    curves = store.list_curves(dataset_id=dataset_id, base_model_id=model_id)
    return summarize_curve(store, curves[0].id) if curves else None


def _finished_run(store: Store, run_id: int | None) -> Run | None:
    if run_id is None:
        return None
    run = store.get_run(run_id)
    return run if run.status == "succeeded" else None


def _metric_value(run: Run | None, metric: str) -> float | None:
    value = run.metrics.get(metric) if run is not None else None
    return float(value) if isinstance(value, int | float) else None


def _point(
    store: Store, curve: Curve, size: int, entries: list[CurveEntry], prompt_run: Run | None
) -> CurvePoint:
    runs = [r for e in entries if e.finished_at and (r := _finished_run(store, e.run_id))]
    values = [v for r in runs if (v := _metric_value(r, curve.metric)) is not None]
    done = [e for e in entries if e.finished_at and e.run_id is not None]
    delta = ci = p = None
    better = False
    if runs and prompt_run is not None:
        delta, ci, p, better = paired_delta(store, prompt_run, runs[0], curve.metric,
                                            curve.confidence)  # fmt: skip
    interval: tuple[float, float] | None = None
    if len(values) >= 2:
        interval = repeat_interval(values, curve.confidence)
    elif runs:
        interval = run_interval(store, runs[0], curve.metric, curve.confidence)
    costs = [e.train_cost for e in done]
    return CurvePoint(
        size=size,
        repeats_planned=len(entries),
        repeats_done=len(values),
        metric_mean=statistics.fmean(values) if values else None,
        ci=interval,
        run_ids=tuple(r.id for r in runs),
        job_ids=tuple(e.job_id for e in entries if e.job_id is not None),
        train_seconds=sum(e.train_seconds or 0.0 for e in done),
        train_cost_usd=sum(c for c in costs if c is not None)
        if costs and None not in costs
        else None,
        delta_vs_prompt=delta,
        delta_ci=ci,
        p_value=p,
        significantly_better=better,
        devices=tuple(sorted({e.device for e in done if e.device})),
        errors=tuple(e.error for e in entries if e.error),
    )


def paired_delta(
    store: Store, prompt_run: Run, run: Run, metric: str, confidence: float
) -> tuple[float | None, tuple[float, float] | None, float | None, bool]:
    """(delta, interval, p, significantly better) of `run` against the prompt run on the rows
    both scored, by `compare_runs`' paired test for the metric."""
    from tunelab.engine.compare.runs import compare_runs

    try:
        comparison = compare_runs(
            store, [prompt_run.id, run.id], shared_rows_only=True, confidence=confidence
        )
        found = comparison.metric(metric)
    except (BadInputError, KeyError):
        return None, None, None, False
    d = found.deltas[0]
    gain = d.delta if found.higher_is_better else -d.delta
    return d.delta, d.ci, d.p_value, bool(d.significant and gain > 0)


def repeat_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean of the values (a curve's repeats, or a run's row scores)."""
    from scipy import stats

    mean = statistics.fmean(values)
    sem = statistics.stdev(values) / len(values) ** 0.5
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def run_interval(
    store: Store, run: Run | None, metric: str, confidence: float
) -> tuple[float, float] | None:
    """One run's own interval for the metric over its rows: Wilson for a right/wrong score,
    Student-t for another per-row score; None for a corpus metric (no per-row score)."""
    from scipy import stats

    if run is None:
        return None
    scores = [o.scores.get(metric) for o in store.run_outputs(run.id)]
    values = [float(v) for v in scores if isinstance(v, int | float)]
    if len(values) < 2 or len(values) < len(scores):
        return None
    if all(v in (0.0, 1.0) for v in values):
        result = stats.binomtest(int(sum(values)), len(values))
        ci = result.proportion_ci(confidence_level=confidence, method="wilson")
        return float(ci.low), float(ci.high)
    return repeat_interval(values, confidence)


def _state(
    store: Store, curve: Curve, entries: list[CurveEntry], prompt_run: Run | None
) -> tuple[str, list[str]]:
    """'running', 'finished' or 'failed', and notes that say why and what to do."""
    notes: list[str] = []
    failed = [e for e in entries if e.error]
    open_points = [e for e in entries if not (e.finished_at and e.run_id) and not e.error]
    active_jobs = [
        e.job_id
        for e in open_points
        if e.job_id is not None and store.get_job(e.job_id).status in ACTIVE_JOBS
    ]
    prompt_pending = prompt_run is None and not curve.error
    running = bool(open_points) or prompt_pending
    for e in failed:
        notes.append(f"size {e.size} repeat {e.repeat}: {e.error}")
    if curve.error:
        notes.append(f"driver stopped: {curve.error}")
    alive = bool(curve.driver) and driver_alive(curve.driver)
    if running and not alive:
        waiting = f" ({len(active_jobs)} job{'s' if len(active_jobs) != 1 else ''} still going)"
        notes.append(
            f"the curve's driver is not running{waiting if active_jobs else ''}; continue with "
            f"`tunelab curve resume {curve.id}`"
        )
    if running and (alive or active_jobs):
        return "running", notes
    if failed or curve.error or open_points or prompt_run is None:
        if failed:
            notes.append(
                f"resume failed jobs and the driver with `tunelab curve resume {curve.id}`"
            )
        return "failed", notes
    return "finished", notes


def _wall_seconds(curve: Curve, entries: list[CurveEntry]) -> float | None:
    ends = [e.finished_at for e in entries if e.finished_at]
    if not ends:
        return None
    elapsed = datetime.fromisoformat(max(ends)) - datetime.fromisoformat(curve.created_at)
    return max(0.0, elapsed.total_seconds())

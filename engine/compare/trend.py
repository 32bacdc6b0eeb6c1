"""A metric across all versions of one prompt, or all checkpoints of one fine-tuning job.

Only runs on the same dataset, split and (for prompts) model are comparable, so a trend holds
those fixed: the caller names them, or they are taken from the most recent matching run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunelab.engine.errors import BadInputError
from tunelab.store import Run, Store


@dataclass(frozen=True)
class TrendPoint:
    label: str
    """'p@3' for a prompt version, 'step 200' (or the model name) for a checkpoint."""
    value: float | None
    run_id: int | None
    source: str
    """'run' (an evaluation run), 'training' (the checkpoint's own eval metrics) or 'none'."""


@dataclass(frozen=True)
class Trend:
    metric: str
    subject: str
    dataset: str | None
    split: str | None
    model: str | None
    points: list[TrendPoint] = field(default_factory=list)


@dataclass(frozen=True)
class TrendRequest:
    """What to draw: a prompt's versions or a job's checkpoints, and what to hold fixed.

    Args:
        prompt_name: trend over every version of this prompt, or
        job_id: over every checkpoint of this fine-tuning job (exactly one of the two).
        metric: the metric; None for the subject's main one (see `trend_metrics`).
        dataset, split, model: what to hold fixed; defaults come from the latest run.
    """

    prompt_name: str | None = None
    job_id: int | None = None
    metric: str | None = None
    dataset: str | None = None
    split: str | None = None
    model: str | None = None


def _numeric(metrics: dict[str, object]) -> list[str]:
    return [k for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)]


def _subject_runs(store: Store, request: TrendRequest) -> tuple[list[Run], list[str]]:
    """The subject's runs and its checkpoints' own metric names; raises for a bad subject."""
    if (request.prompt_name is None) == (request.job_id is None):
        raise BadInputError("give either a prompt name or a job id for a trend, not both")
    if request.prompt_name is not None:
        prompt = store.get_prompt(request.prompt_name)
        return store.list_runs(prompt_id=prompt.id), []
    assert request.job_id is not None
    store.get_job(request.job_id)
    runs: list[Run] = []
    names: list[str] = []
    for checkpoint in store.models_of_job(request.job_id):
        runs += store.list_runs(model_id=checkpoint.id)
        names += _numeric(checkpoint.metrics)
    return runs, names


def trend_metrics(store: Store, request: TrendRequest) -> list[str]:
    """The metrics a trend of the request's prompt or job can draw, main metric first (the
    dataset's first metric, else the most common), then by name.

    Raises:
        BadInputError: neither or both of a prompt and a job; the store's NotFoundError for
        an unknown one.
    """
    runs, checkpoint_names = _subject_runs(store, request)
    counts: dict[str, int] = {}
    for run in runs:
        if (
            run.status == "succeeded"
            and (request.dataset in (None, run.dataset_name))
            and (request.split in (None, run.split))
        ):
            for name in _numeric(run.metrics):
                counts[name] = counts.get(name, 0) + 1
    for name in checkpoint_names:
        counts[name] = counts.get(name, 0) + 1
    main = [m for r in runs for m in r.metric_names if m in counts][:1]
    return main + sorted((m for m in counts if m not in main), key=lambda m: (-counts[m], m))


def trend_of(store: Store, request: TrendRequest) -> Trend:
    """`metric_trend` for a request, its metric checked against those the subject has."""
    metrics = trend_metrics(store, request)
    subject = (
        f"prompt {request.prompt_name}"
        if request.prompt_name is not None
        else f"job {request.job_id}"
    )
    if not metrics:
        raise BadInputError(
            f"{subject} has no finished run with a metric to draw; evaluate it first"
        )
    metric = request.metric or metrics[0]
    if metric not in metrics:
        raise BadInputError(f"{subject} has no metric {metric!r}; it has {', '.join(metrics)}")
    return metric_trend(
        store, metric=metric, prompt_name=request.prompt_name, job_id=request.job_id,
        dataset=request.dataset, split=request.split, model=request.model,
    )  # fmt: skip


def _value(run: Run, metric: str) -> float | None:
    value = run.metrics.get(metric)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _matching(
    runs: list[Run], metric: str, dataset: str | None, split: str | None, model: str | None
) -> list[Run]:
    return [
        r for r in runs
        if r.status == "succeeded" and _value(r, metric) is not None
        and (dataset is None or r.dataset_name == dataset)
        and (split is None or r.split == split)
        and (model is None or r.model_name == model)
    ]  # fmt: skip


def metric_trend(
    store: Store,
    *,
    metric: str,
    prompt_name: str | None = None,
    job_id: int | None = None,
    dataset: str | None = None,
    split: str | None = None,
    model: str | None = None,
) -> Trend:
    """One metric across a prompt's versions or a job's checkpoints (latest run of each).

    Args:
        store: the workspace store.
        metric: a run-level metric name, e.g. 'accuracy' or 'bleu'.
        prompt_name: trend over every version of this prompt, or
        job_id: trend over every checkpoint of this fine-tuning job.
        dataset, split, model: what to hold fixed; defaults come from the latest matching run.
    """
    if (prompt_name is None) == (job_id is None):
        raise BadInputError("give either a prompt name or a job id for a trend, not both")
    if prompt_name is not None:
        prompt = store.get_prompt(prompt_name)
        runs = _matching(store.list_runs(prompt_id=prompt.id), metric, dataset, split, model)
        if runs:
            dataset, split = runs[0].dataset_name, runs[0].split
            model = model or runs[0].model_name
            runs = _matching(runs, metric, dataset, split, model)
        points = []
        for version in store.list_prompt_versions(prompt_name):
            found = [r for r in runs if r.prompt_version_id == version.id]
            run = found[0] if found else None
            points.append(
                TrendPoint(
                    version.ref,
                    None if run is None else _value(run, metric),
                    None if run is None else run.id,
                    "run" if run is not None else "none",
                )
            )
        return Trend(metric, f"prompt {prompt_name}", dataset, split, model, points)
    assert job_id is not None
    store.get_job(job_id)
    checkpoints = store.models_of_job(job_id)
    runs = []
    for checkpoint in checkpoints:
        runs += store.list_runs(model_id=checkpoint.id)
    runs = _matching(sorted(runs, key=lambda r: -r.id), metric, dataset, split, None)
    if runs:
        dataset, split = runs[0].dataset_name, runs[0].split
        runs = _matching(runs, metric, dataset, split, None)
    points = []
    for checkpoint in checkpoints:
        label = f"step {checkpoint.step}" if checkpoint.step is not None else checkpoint.name
        found = [r for r in runs if r.model_id == checkpoint.id]
        if found:
            points.append(TrendPoint(label, _value(found[0], metric), found[0].id, "run"))
            continue
        value = checkpoint.metrics.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            points.append(TrendPoint(label, float(value), None, "training"))
        else:
            points.append(TrendPoint(label, None, None, "none"))
    return Trend(metric, f"job {job_id}", dataset, split, None, points)

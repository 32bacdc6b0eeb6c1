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

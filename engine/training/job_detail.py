"""One job in full, for a detail view: its inputs, the settings it changed, validation
metrics, checkpoints (the best marked) and its whole error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunelab.store import Job, MetricPoint, Model, Store

VALIDATION_PREFIXES = ("eval_", "val_", "validation_")
"""Metric series a job writes on its validation split (the rest are training series)."""


@dataclass(frozen=True)
class JobDetail:
    """What `tunelab jobs show` prints about a job, as data."""

    job: Job
    base_model: str | None
    dataset: str | None
    prompt_ref: str | None
    changed_settings: list[tuple[str, object]]
    """(name, value) of each setting that differs from the method's defaults."""
    validation: list[MetricPoint]
    """The latest point of each validation series (eval loss and friends), by name."""
    checkpoints: list[Model]
    """The models the job saved, by step; `is_best` marks the one it chose."""
    log_lines: list[str] = field(default_factory=list)
    """The log's last lines, tracebacks included."""


def changed_settings(config: dict[str, object]) -> list[tuple[str, object]]:
    """The settings of a job's config that differ from `TrainingConfig`'s defaults for its
    method (every setting of a job that is not a training job, such as a prompt search)."""
    from tunelab.engine.training.config import TrainingConfig

    try:
        defaults = TrainingConfig(method=str(config.get("method", "lora"))).to_dict()
    except ValueError:  # not a training method: a search's config, shown whole
        defaults = {}
    if not defaults:
        return sorted((name, value) for name, value in config.items())
    return [
        (name, value)
        for name, value in config.items()
        if name in defaults and name != "method" and defaults[name] != value
    ]


def latest_validation(points: list[MetricPoint]) -> list[MetricPoint]:
    """The last point of each validation series, sorted by name."""
    latest: dict[str, MetricPoint] = {}
    for point in points:
        if point.name.startswith(VALIDATION_PREFIXES):
            current = latest.get(point.name)
            if current is None or point.step >= current.step:
                latest[point.name] = point
    return [latest[name] for name in sorted(latest)]


def job_detail(store: Store, job_id: int, log_lines: list[str] | None = None) -> JobDetail:
    """Read one job with what its detail view shows.

    Args:
        store: the workspace store.
        job_id: the job.
        log_lines: the log's tail, read by the caller (the fake engine has no log file).
    """
    job = store.get_job(job_id)
    base = store.get_model_by_id(job.base_model_id).name if job.base_model_id else None
    dataset = store.get_dataset_by_id(job.dataset_id).name if job.dataset_id else None
    prompt = (
        store.get_prompt_version_by_id(job.prompt_version_id).ref if job.prompt_version_id else None
    )
    return JobDetail(
        job=job,
        base_model=base,
        dataset=dataset,
        prompt_ref=prompt,
        changed_settings=changed_settings(dict(job.config)),
        validation=latest_validation(store.job_metrics(job_id)),
        checkpoints=store.models_of_job(job_id),
        log_lines=list(log_lines or []),
    )

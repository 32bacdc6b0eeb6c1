"""Pure summaries the screens show (main metric, best prompt, best checkpoint, job progress).

Kept free of widgets so they are unit-tested without an app.
"""

from __future__ import annotations

from typing import Any

from tunelab.engine.training.progress import TrainingProgress
from tunelab.store import Dataset, Job, Model, Run


def main_metric(run: Run, dataset: Dataset | None = None) -> tuple[str, float] | None:
    """The run's headline number: the dataset's first metric, else the run's first numeric one.

    None for a run that scored no rows: its metrics describe nothing (shown as "—").
    """
    if run.rows_done == 0:
        return None
    numeric = {
        k: float(v)
        for k, v in run.metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    if not numeric:
        return None
    preferred = [*(dataset.metrics if dataset else []), *run.metric_names]
    for name in preferred:
        if name in numeric:
            return name, numeric[name]
    name = sorted(numeric)[0]
    return name, numeric[name]


def format_metric(metric: tuple[str, float] | None) -> str:
    if metric is None:
        return "—"
    name, value = metric
    return f"{name} {value:.3f}"


def _best_runs(
    runs: list[Run], datasets: dict[int, Dataset], keep: Any
) -> dict[str, tuple[Run, tuple[str, float]]]:
    best: dict[str, tuple[Run, tuple[str, float]]] = {}
    for run in runs:
        if run.status != "succeeded" or not keep(run):
            continue
        dataset = datasets.get(run.dataset_id)
        metric = main_metric(run, dataset)
        if metric is None:
            continue
        current = best.get(run.dataset_name)
        if current is None or metric[1] > current[1][1]:
            best[run.dataset_name] = (run, metric)
    return best


def best_prompt_per_dataset(
    runs: list[Run], datasets: list[Dataset], models: list[Model]
) -> dict[str, str]:
    """Dataset name → the prompt version with the best main metric on a base model."""
    finetuned = {m.id for m in models if m.base_model_id is not None}
    by_id = {d.id: d for d in datasets}
    best = _best_runs(runs, by_id, lambda r: r.model_id not in finetuned)
    return {
        name: f"{run.prompt_ref} on {run.model_name} ({format_metric(metric)})"
        for name, (run, metric) in sorted(best.items())
    }


def best_checkpoint_per_dataset(
    runs: list[Run], datasets: list[Dataset], models: list[Model]
) -> dict[str, str]:
    """Dataset name → the fine-tuned model with the best evaluated main metric.

    A checkpoint never evaluated still shows when its job marked it best on that dataset.
    """
    finetuned = {m.id: m for m in models if m.base_model_id is not None}
    by_id = {d.id: d for d in datasets}
    best = _best_runs(runs, by_id, lambda r: r.model_id in finetuned)
    out = {
        name: f"{run.model_name} ({format_metric(metric)})" for name, (run, metric) in best.items()
    }
    for model in finetuned.values():
        dataset = by_id.get(model.training_dataset_id or -1)
        if model.is_best and dataset is not None and dataset.name not in out:
            out[dataset.name] = f"{model.name} (best of job {model.job_id})"
    return dict(sorted(out.items()))


def job_fraction(job: Job) -> tuple[float, float]:
    """(done, total) steps of a job, from the progress its worker wrote; total 0 when unknown."""
    progress = TrainingProgress.from_dict(job.progress)
    return float(progress.step), float(progress.total_steps)


def job_summary(job: Job) -> str:
    """One line: id, method, status, phase, steps and the latest training loss."""
    progress = TrainingProgress.from_dict(job.progress)
    parts = [f"job {job.id}", job.method, job.status]
    if progress.phase and progress.phase != job.status:
        parts.append(progress.phase)
    total = progress.total_steps
    parts.append(f"step {progress.step}/{total}" if total else "waiting")
    if progress.train_loss is not None:
        parts.append(f"loss {progress.train_loss:.4f}")
    return " · ".join(parts)

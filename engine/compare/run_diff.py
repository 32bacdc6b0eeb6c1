"""What differs between two runs, with a comparison of their shared rows when one can be made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.engine.compare.records import Comparison
from tunelab.engine.compare.runs import compare_runs
from tunelab.engine.errors import BadInputError
from tunelab.engine.models.diff import ModelDiff, diff_models
from tunelab.engine.prompts.diff import PromptDiff, diff_prompt_versions
from tunelab.engine.text_diff import ValueChange, dict_diff
from tunelab.store import Run, Store


@dataclass(frozen=True)
class RunDiff:
    a: Run
    b: Run
    changes: list[ValueChange]
    """Prompt, model, dataset, split, scoring, row limit, seed, status and metric names."""
    settings_changes: list[ValueChange]
    prompt: PromptDiff | None
    """Only when the runs used different prompt versions."""
    model: ModelDiff | None
    """Only when the runs used different models."""
    comparison: Comparison | None = None
    comparison_error: str | None = None
    metric_changes: list[ValueChange] = field(default_factory=list)


def _describe_run(run: Run) -> dict[str, Any]:
    return {
        "prompt": run.prompt_ref, "model": run.model_name, "dataset": run.dataset_name,
        "split": run.split, "scoring": run.scoring, "row_limit": run.row_limit,
        "sample_seed": run.sample_seed, "status": run.status, "rows": run.rows_done,
        "metric_names": ", ".join(run.metric_names),
    }  # fmt: skip


def diff_runs(
    store: Store, run_a: int, run_b: int, *, seed: int = 0, n_boot: int = 2000
) -> RunDiff:
    """Two runs: their settings, prompts, models, and a comparison of their rows when possible."""

    a, b = store.get_run(run_a), store.get_run(run_b)
    prompt = None
    if a.prompt_version_id != b.prompt_version_id:
        prompt = diff_prompt_versions(
            store.get_prompt_version_by_id(a.prompt_version_id),
            store.get_prompt_version_by_id(b.prompt_version_id),
        )
    model = None
    if a.model_id != b.model_id:
        model = diff_models(store, a.model_name, b.model_name)
    comparison, error = None, None
    try:
        comparison = compare_runs(
            store,
            [a.id, b.id],
            seed=seed,
            n_boot=n_boot,
            shared_rows_only=True,
            allow_running=True,
        )
    except BadInputError as exc:
        error = str(exc)
    numeric = {k: v for k, v in a.metrics.items() if isinstance(v, int | float)}
    numeric_b = {k: v for k, v in b.metrics.items() if isinstance(v, int | float)}
    return RunDiff(
        a,
        b,
        dict_diff(_describe_run(a), _describe_run(b)),
        dict_diff(a.settings, b.settings),
        prompt,
        model,
        comparison,
        error,
        dict_diff(numeric, numeric_b),
    )

"""The prompt side of a curve: the run its points are compared with, and the rows they share.

A curve is drawn against one prompt run: the one `--against` names (finished, on the curve's
dataset, its rows still stored), or the best finished run of the prompt on the base model
over exactly the curve's evaluation rows. Each fine-tune is evaluated on that run's rows, so
the paired test compares identical inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError
from tunelab.engine.training.data import VAL_SPLIT_NAMES

if TYPE_CHECKING:
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.store import Dataset, Model, PromptVersion, Run, Store


def against_run(store: Store, run_id: int, dataset: Dataset) -> Run:
    """The prompt run to beat: finished, on this dataset, with its rows still stored."""
    run = store.get_run(run_id)
    if run.dataset_id != dataset.id:
        raise BadInputError(
            f"run {run_id} is on dataset {run.dataset_name!r}, not {dataset.name!r}; pass a "
            f"prompt run on {dataset.name!r} to --against"
        )
    if run.status != "succeeded":
        raise BadInputError(f"run {run_id} is {run.status}; --against needs a finished run")
    check_rows_present(store, run)
    return run


def check_rows_present(store: Store, run: Run) -> None:
    """A run's scored rows must still be in its dataset split: fine-tunes are evaluated on
    the same rows, and the paired test needs them."""
    from tunelab.store import NotFoundError

    indices = sorted({o.row_idx for o in store.run_outputs(run.id)})
    if not indices:
        raise BadInputError(f"run {run.id} has no scored rows; pick another run with --against")
    try:
        present = store.dataset_rows(run.dataset_name, run.split, indices=indices)
    except NotFoundError:
        present = []
    if len(present) < len(indices):
        missing = len(indices) - len(present)
        raise BadInputError(
            f"{missing} of the {len(indices)} rows run {run.id} scored are gone from "
            f"{run.dataset_name}/{run.split}; re-add the dataset or pick another run with --against"
        )


def eval_split_for(
    dataset: Dataset, config: TrainingConfig, asked: str | None, against: Run | None
) -> str:
    if against is not None and asked is not None and asked != against.split:
        raise BadInputError(
            f"run {against.id} is on split {against.split!r}, not {asked!r}; drop --eval-split "
            "or pass a run on that split"
        )
    split = asked or (against.split if against is not None else None)
    if split is None:
        split = next(
            (n for n in VAL_SPLIT_NAMES if n in dataset.split_names and n != config.train_split),
            None,
        )
    if split is None:
        raise BadInputError(
            f"dataset {dataset.name!r} has no validation split; name the split to evaluate on "
            f"with --eval-split (splits: {', '.join(dataset.split_names)})"
        )
    if split not in dataset.split_names:
        raise BadInputError(
            f"dataset {dataset.name!r} has no split {split!r}; splits: "
            f"{', '.join(dataset.split_names)}"
        )
    if split == config.train_split:
        raise BadInputError(
            f"the evaluation split {split!r} is the training split; evaluate on another split"
        )
    return split


def curve_metric(dataset: Dataset, against: Run | None) -> str:
    from tunelab.engine.evaluation.metrics import default_metrics

    names = (list(against.metric_names) if against is not None else []) or list(dataset.metrics)
    return (names or default_metrics(dataset.task))[0]


def best_prompt_run(
    store: Store,
    prompt: PromptVersion,
    base: Model,
    dataset: Dataset,
    split: str,
    limit: int | None,
    metric: str,
) -> Run | None:
    """The best finished run of any version of the prompt on the base model (no adapter) over
    exactly the evaluation rows the curve uses (the whole split, or its first `limit` rows)."""
    from tunelab.engine.compare.series import higher_is_better

    candidates = [
        r
        for r in store.list_runs(
            dataset_id=dataset.id, prompt_id=prompt.prompt_id, model_id=base.id
        )
        if r.split == split
        and r.status == "succeeded"
        and r.sample_seed is None
        and r.row_limit == limit
        and isinstance(r.metrics.get(metric), int | float)
    ]
    if not candidates:
        return None
    sign = 1.0 if higher_is_better(metric) else -1.0
    return max(candidates, key=lambda r: (sign * float(r.metrics[metric]), r.id))

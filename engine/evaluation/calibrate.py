"""Measuring a prompt's calibration prior, and applying a per-run one, from unlabelled inputs.

A prior is the mean label distribution the model gives a prompt on inputs whose answer it
cannot know (content-free strings: contextual calibration) or on a set of real inputs
(batch calibration). Label scores go through the response cache, so measuring a prior on
rows an evaluation also scores costs nothing twice. Only input columns are read: the rows
given to a prior are never looked at for their reference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation import plan as eval_plan
from tunelab.engine.evaluation.plan import EvalPlan, RowJob
from tunelab.engine.evaluation.request import StopCheck
from tunelab.engine.models.endpoint import is_endpoint
from tunelab.engine.prompts.calibration import (
    CONTENT_FREE_INPUTS,
    METHODS,
    SETTING,
    Calibration,
    label_distribution,
    mean_distribution,
)
from tunelab.store import CachedResponse, Dataset, PromptContent, PromptVersion, Store

PER_RUN = "scored_rows"


def _label_scores(
    store: Store, loaded: Any, prompts: Sequence[str], labels: list[str]
) -> list[dict[str, float]]:
    """Each prompt's label log-likelihoods: from the response cache, else scored and cached
    (the same entries an evaluation of these prompts reads)."""
    from tunelab.engine.generation.likelihood import score_labels

    keys = [eval_plan.cache_key(loaded.fingerprint, p, {}, "likelihood", labels) for p in prompts]
    hits = store.cached_responses(keys)
    missing = [i for i, key in enumerate(keys) if key not in hits]
    if missing:
        scored = score_labels(loaded, [prompts[i] for i in missing], labels)
        fresh = {
            keys[i]: CachedResponse(json.dumps({k: float(v) for k, v in s.items()}), s.tokens_in, 0)
            for i, s in zip(missing, scored, strict=True)
        }
        store.cache_responses(fresh)
        hits = {**hits, **fresh}
    return [json.loads(hits[key].output) for key in keys]


def measure_calibration(
    store: Store,
    content: PromptVersion | PromptContent,
    dataset: Dataset,
    split: str,
    model: str,
    method: str,
    per_run: bool = False,
    limit: int | None = None,
) -> Calibration:
    """The calibration of a prompt on a dataset's labels, measured with `model`.

    Args:
        store: the workspace.
        content: the prompt (a saved version or unsaved content, e.g. a search candidate).
        dataset: a classification dataset with labels.
        split: the split whose unlabelled inputs a batch prior averages (also the split the
            prompt's own drawn or retrieved demonstrations skip rows of).
        model: the model argument the prior is measured with.
        method: contextual (content-free inputs) or batch.
        per_run: batch only: store no prior; each run measures it on the rows it scores.
        limit: batch only: average the first N rows of the split (all by default).
    """
    if method not in METHODS:
        raise BadInputError(
            f"calibration method must be one of {', '.join(METHODS)}, got {method!r}"
        )
    if dataset.task != "classification" or not dataset.labels:
        raise BadInputError(
            f"calibration divides out a label distribution; {dataset.name!r} is a "
            f"{dataset.task} dataset without labels"
        )
    labels = list(dataset.labels)
    if method == "batch" and per_run:
        return Calibration("batch", PER_RUN, tuple(labels))
    from tunelab.engine.models.loading import load_model
    from tunelab.engine.prompts.templates import RowRenderer

    record = eval_plan.resolve_model_arg(store, model)
    if is_endpoint(record):
        raise BadInputError(
            f"calibration needs the model's label scores; measure it with a local model, "
            f"not endpoint {record.name!r}"
        )
    loaded = load_model(store, record)
    room = max(len(loaded.tokenizer.encode(" " + label)) for label in labels)
    renderer = RowRenderer(store, content, loaded, dataset, split, room)
    if method == "contextual":
        inputs = [dict.fromkeys(dataset.input_columns, text) for text in CONTENT_FREE_INPUTS]
        prompts = [renderer.render(row, None, must_fit=True).text for row in inputs]
    else:
        rows = store.dataset_rows(dataset.name, split, limit=limit)
        if not rows:
            raise BadInputError(f"split {split!r} of dataset {dataset.name!r} has no rows")
        # Only the input columns reach the template: the reference is never read here.
        prompts = [
            renderer.render(_inputs_only(r.data, dataset), r.idx, must_fit=True).text for r in rows
        ]
    prior = mean_distribution(
        [label_distribution(s, labels) for s in _label_scores(store, loaded, prompts, labels)]
    )
    if method == "contextual":
        return Calibration(
            "contextual",
            "content_free",
            tuple(labels),
            tuple(prior),
            inputs=CONTENT_FREE_INPUTS,
            model=record.name,
        )
    return Calibration(
        "batch",
        "split",
        tuple(labels),
        tuple(prior),
        dataset=dataset.name,
        split=split,
        rows=len(prompts),
        model=record.name,
    )


def _inputs_only(data: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    reference = dataset.reference_column
    return {k: v for k, v in data.items() if k != reference}


def measure_run_prior(
    store: Store,
    plan: EvalPlan,
    loaded: Any,
    jobs: Sequence[RowJob],
    batch_size: int,
    should_stop: StopCheck | None = None,
) -> bool:
    """For a per-run batch calibration: score every row of the run ahead of the run loop
    and set the plan's prior to their mean label distribution. Freshly scored rows are kept
    in `plan.prescored`, so the loop writes them as fresh rows with their timing.

    Returns:
        False when `should_stop` fired first (the prior is unset; the run stops too).
    """
    labels = list(plan.dataset.labels)
    responses: dict[str, CachedResponse] = {}
    for start in range(0, len(jobs), batch_size):
        if should_stop is not None and should_stop():
            return False
        chunk = jobs[start : start + batch_size]
        hits = store.cached_responses(j.cache_key for j in chunk) if plan.use_cache else {}
        responses.update(hits)
        missing = [j for j in chunk if j.cache_key not in responses]
        if missing:
            fresh = eval_plan.likelihood_responses(plan, loaded, missing)
            if plan.use_cache:
                store.cache_responses({k: v for k, (v, _) in fresh.items()})
            plan.prescored.update(fresh)
            responses.update({k: v for k, (v, _) in fresh.items()})
    distributions = [
        label_distribution(json.loads(responses[j.cache_key].output), labels) for j in jobs
    ]
    plan.calibration_prior = mean_distribution(distributions)
    return True


def applied_calibration(plan: EvalPlan) -> str | None:
    """What a run's calibration was, in one line for its record; None without one."""
    if plan.calibration is None or plan.calibration_prior is None:
        return None
    prior = ", ".join(
        f"{label} {p:.3f}"
        for label, p in zip(plan.calibration.labels, plan.calibration_prior, strict=True)
    )
    if plan.calibration.per_run:
        return (
            f"batch calibration from the inputs of the {len(plan.rows)} rows this run scored "
            f"(prior {prior})"
        )
    return plan.calibration.describe()


def calibrate_version(
    store: Store,
    ref: str,
    dataset: str,
    split: str,
    method: str,
    model: str = "builtin",
    per_run: bool = False,
    limit: int | None = None,
) -> PromptVersion:
    """Save a child of version `ref` that carries a calibration measured as asked (see
    `measure_calibration`); an identical version already saved is returned instead.

    A stored prior is never measured on a split named `test`: the rows a verdict is judged
    on stay unseen (a per-run batch prior reads each run's own rows when it runs).
    """
    version = store.get_prompt_version(ref)
    data = store.get_dataset(dataset)
    data.split(split)
    if split == "test" and not per_run:
        raise BadInputError(
            "a stored calibration is never measured on the test split; use --split validation "
            "(or --per-run, which averages the rows each run scores)"
        )
    calibration = measure_calibration(
        store, version, data, split, model, method, per_run=per_run, limit=limit
    )
    settings = {**version.settings, SETTING: calibration.to_dict()}
    content = PromptContent(
        template=version.template,
        system=version.system,
        examples=list(version.examples),
        mode=version.mode,
        reasoning=version.reasoning,
        settings=settings,
    )
    saved = store.save_prompt_version(
        version.prompt_name,
        content,
        message=f"calibrate {version.ref}: {calibration.describe()}",
        parent_version_id=version.id,
    )
    return saved.version

"""Hand-built prompts, models, datasets and runs for the comparison tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunelab.store import (
    Dataset,
    Model,
    NewDataset,
    NewModel,
    NewRunOutput,
    NewSplit,
    PromptContent,
    PromptVersion,
    Run,
    Store,
)


def prompt(
    store: Store, name: str = "cls", template: str = "{{ text }}", **kw: Any
) -> PromptVersion:
    return store.save_prompt_version(name, PromptContent(template=template, **kw)).version


def base_model(store: Store, name: str = "base") -> Model:
    return store.add_model(NewModel(name, "base", "builtin", f"/models/{name}"), exist_ok=True)


def finetuned_model(
    store: Store,
    base: Model,
    name: str = "ft",
    *,
    hours: float | None = 1.0,
    gpus: int = 1,
    step: int | None = None,
    job_id: int | None = None,
    config: dict[str, object] | None = None,
) -> Model:
    """An adapter on `base`; its job ran for `hours` on `gpus` GPUs (no job when hours is None)."""
    if hours is not None and job_id is None:
        job = store.create_job("lora", config or {}, base.id, None, None, gpus=gpus)
        end_minutes = round(hours * 60)
        finished = f"2026-01-01T{end_minutes // 60:02d}:{end_minutes % 60:02d}:00+00:00"
        store.update_job(
            job.id, status="succeeded", started_at="2026-01-01T00:00:00+00:00", finished_at=finished
        )
        job_id = job.id
    return store.add_model(
        NewModel(
            name,
            "adapter",
            "artifact",
            f"/models/{name}",
            base_model_id=base.id,
            method="lora",
            job_id=job_id,
            step=step,
            training_config=config or {},
        )
    )


def dataset(
    store: Store,
    name: str = "ds",
    n: int = 10,
    *,
    splits: Sequence[str] = ("test",),
    task: str = "classification",
    labels: Sequence[str] = ("pos", "neg"),
) -> Dataset:
    rows = [
        {"text": f"row {i}", "label": labels[i % len(labels)] if labels else ""} for i in range(n)
    ]
    return store.add_dataset(
        NewDataset(
            name,
            "test",
            name,
            [NewSplit(s, rows, s) for s in splits],
            task=task,
            labels=list(labels),
        )
    )


def classification_run(
    store: Store,
    pv: PromptVersion,
    model: Model,
    ds: Dataset,
    correct: Sequence[int],
    *,
    split: str = "test",
    latency_ms: float | Sequence[float] = 100.0,
    rows: Sequence[int] | None = None,
    metrics: Sequence[str] = ("accuracy",),
    finished: bool = True,
) -> Run:
    """A run whose row i is right when correct[i] is 1 (labels alternate pos/neg); finished
    (succeeded) unless `finished` is False, when it is left running in this process."""
    labels = ds.labels or ["pos", "neg"]
    indices = list(rows) if rows is not None else list(range(len(correct)))
    run = store.create_run(
        pv.id,
        model.id,
        ds.id,
        split,
        len(indices),
        {"temperature": 0.0},
        metric_names=list(metrics),
    )
    outputs = []
    for k, (idx, ok) in enumerate(zip(indices, correct, strict=True)):
        reference = labels[idx % len(labels)]
        wrong = labels[(idx + 1) % len(labels)]
        prediction = reference if ok else wrong
        latency = latency_ms if isinstance(latency_ms, int | float) else latency_ms[k]
        outputs.append(
            NewRunOutput(
                idx,
                f"prompt {idx}",
                f"The answer is {prediction}",
                prediction,
                reference,
                {"accuracy": float(ok)},
                float(latency),
                20,
                5,
                batch_ms=float(latency),  # generated alone: its time is a request latency
                batch_rows=1,
            )
        )
    store.add_run_outputs(run.id, outputs)
    accuracy = sum(correct) / len(correct) if correct else 0.0
    if not finished:
        return store.get_run(run.id)
    return store.finish_run(run.id, "succeeded", {"accuracy": accuracy})


def generation_run(
    store: Store,
    pv: PromptVersion,
    model: Model,
    ds: Dataset,
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    scores: Sequence[dict[str, float]] | None = None,
    metrics: Sequence[str] = ("bleu",),
    latency_ms: float = 50.0,
) -> Run:
    run = store.create_run(
        pv.id, model.id, ds.id, "test", len(predictions), {}, metric_names=list(metrics)
    )
    store.add_run_outputs(
        run.id,
        [
            NewRunOutput(i, "", p, p, r, dict(scores[i]) if scores else {}, latency_ms, 10, 10)
            for i, (p, r) in enumerate(zip(predictions, references, strict=True))
        ],
    )
    return store.finish_run(run.id, "succeeded", {})

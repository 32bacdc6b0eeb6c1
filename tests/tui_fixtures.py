"""A seeded store for TUI tests: a dataset, models, prompt versions, runs and a live job.

Timestamps are pinned so snapshots never show a clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from tunelab.store import NewDataset, NewModel, NewRunOutput, NewSplit, PromptContent, Store

FIXED_NOW = "2026-01-02T03:04:05Z"
_STORE_MODULES = (
    "tunelab.store.connection",
    "tunelab.store.prompts",
    "tunelab.store.datasets",
    "tunelab.store.models",
    "tunelab.store.runs",
    "tunelab.store.jobs",
    "tunelab.store.cache",
    "tunelab.store.samples",
    "tunelab.store.sweeps",
)


@contextmanager
def frozen_store_clock() -> Iterator[None]:
    """Every row the store writes gets the same timestamp."""
    patches = []
    for module in _STORE_MODULES:
        try:
            patches.append(mock.patch(f"{module}.utc_now", lambda: FIXED_NOW))
        except AttributeError:
            continue
    for patch in patches:
        try:
            patch.start()
        except AttributeError:
            continue
    try:
        yield
    finally:
        mock.patch.stopall()


SENTIMENT_ROWS = [
    {"text": "I loved every minute of it", "label": "positive"},
    {"text": "Terrible service, never again", "label": "negative"},
    {"text": "An instant classic", "label": "positive"},
    {"text": "The plot made no sense", "label": "negative"},
]


def seed_store(store: Store) -> dict[str, int]:
    """Fill a store with one of everything the screens show; returns the ids tests need."""
    with frozen_store_clock():
        dataset = store.add_dataset(
            NewDataset(
                name="sentiment",
                source="tests",
                fingerprint="fp-sentiment",
                splits=[
                    NewSplit("train", SENTIMENT_ROWS, "fp-train"),
                    NewSplit("test", SENTIMENT_ROWS, "fp-test"),
                ],
                task="classification",
                input_columns=["text"],
                reference_column="label",
                labels=["positive", "negative"],
                metrics=["accuracy"],
                card="Four short movie reviews.",
            )
        )
        base = store.add_model(NewModel("builtin", "base", "builtin", "/models/builtin"))
        tuned = store.add_model(
            NewModel(
                "builtin-lora-1", "adapter", "artifact", "/models/lora-1", base_model_id=base.id,
                method="lora", training_dataset_id=dataset.id, job_id=None, step=40,
            )
        )  # fmt: skip
        v1 = store.save_prompt_version(
            "classify",
            PromptContent(
                template="Review: {{ text }}\nSentiment:", settings={"max_new_tokens": 4}
            ),
            message="first",
        ).version
        v2 = store.save_prompt_version(
            "classify",
            PromptContent(
                template="Is this review positive or negative?\n{{ text }}\nAnswer:",
                system="You label movie reviews.",
                settings={"max_new_tokens": 4},
            ),
            message="ask directly",
        ).version
        store.set_label("classify@2", "production")
        run_ids = []
        for version, model, outputs in (
            (v1, base, ["positive", "positive", "positive", "negative"]),
            (v2, base, ["positive", "negative", "positive", "positive"]),
            (v2, tuned, ["positive", "negative", "positive", "negative"]),
        ):
            run = store.create_run(
                version.id, model.id, dataset.id, "test", len(SENTIMENT_ROWS), {},
                metric_names=["accuracy"],
            )  # fmt: skip
            store.add_run_outputs(
                run.id,
                [
                    NewRunOutput(
                        row_idx=i, rendered_prompt=f"Review: {row['text']}", output=out,
                        prediction=out, reference=row["label"],
                        scores={"accuracy": float(out == row["label"])}, latency_ms=12.0,
                        tokens_in=10, tokens_out=1,
                    )
                    for i, (row, out) in enumerate(zip(SENTIMENT_ROWS, outputs, strict=True))
                ],
            )  # fmt: skip
            accuracy = sum(o == r["label"] for o, r in zip(outputs, SENTIMENT_ROWS, strict=True))
            store.finish_run(run.id, "succeeded", {"accuracy": accuracy / len(outputs)})
            run_ids.append(run.id)
        job = store.create_job("lora", {"learning_rate": 0.0002}, base.id, dataset.id, v2.id)
        store.update_job(job.id, status="running", progress={"step": 30, "total_steps": 100})
        for step in (10, 20, 30):
            store.add_job_metrics(job.id, step, {"train_loss": 2.0 / step, "eval_loss": 2.5 / step})
    return {
        "dataset": dataset.id, "base": base.id, "tuned": tuned.id, "v1": v1.id, "v2": v2.id,
        "run1": run_ids[0], "run2": run_ids[1], "run3": run_ids[2], "job": job.id,
    }  # fmt: skip

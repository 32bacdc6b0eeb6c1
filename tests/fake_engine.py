"""A scripted engine for TUI tests: streams fixed tokens and metrics, writes real store rows.

It follows `EngineProtocol`, so screens cannot tell it from the real engine; no model loads.
A test can hold a generation or evaluation open with `gate` to prove the UI stays responsive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunelab.engine.api.facade import (
    BiasToken,
    ComparisonView,
    DiffSegment,
    EvalOutcome,
    EvalProgress,
    EvalSpec,
    ExampleChange,
    MetricVerdict,
    ProgressCallback,
    RenderedPreview,
    StopCallback,
    TokenChunk,
    TrainingField,
    content_from_fields,
    settings_toml_of,
    training_command_line,
    word_diff,
)
from tunelab.engine.errors import BadInputError, EngineError
from tunelab.store import NewRunOutput, PromptContent, PromptVersion, Store

FAKE_TRAINING_FIELDS = [
    TrainingField("base", "builtin", "model to fine-tune"),
    TrainingField("dataset", "", "dataset to train on"),
    TrainingField("prompt", "", "prompt version that formats each row"),
    TrainingField("method", "lora", "lora or full", ("lora", "full")),
    TrainingField("lr", None, "peak learning rate", kind="float"),
    TrainingField("epochs", 1.0, "passes over the training split", kind="float"),
    TrainingField("lora_r", 8, "LoRA rank", kind="int"),
]


@dataclass
class FakeEngine:
    """Implements EngineProtocol with scripted behaviour over a real store."""

    store: Store
    tokens: list[str] = field(default_factory=lambda: ["pos", "itive", " review"])
    outputs: list[str] = field(default_factory=lambda: ["positive"])
    context_window: int = 2048
    gate: threading.Event | None = None
    """When set to an unset Event, generation and evaluation wait on it (or on cancel)."""
    fail_with: Exception | None = None
    calls: list[str] = field(default_factory=list)
    cancelled_jobs: list[int] = field(default_factory=list)

    def _wait_gate(self, should_stop: StopCallback) -> bool:
        """Block while the gate is closed; True if the caller asked to stop meanwhile."""
        while self.gate is not None and not self.gate.wait(0.02):
            if should_stop():
                return True
        return should_stop()

    def content_from_fields(
        self, template: str, system: str, examples_json: str, settings_toml: str
    ) -> PromptContent:
        return content_from_fields(template, system, examples_json, settings_toml)

    def settings_toml(self, version: PromptVersion) -> str:
        return settings_toml_of(version)

    def render_preview(
        self, content: PromptContent, row: dict[str, Any], model: str
    ) -> RenderedPreview:
        self.calls.append(f"render:{model}")
        text = content.template
        for key, value in row.items():
            text = text.replace("{{ " + key + " }}", str(value))
        if "{{" in text:
            raise BadInputError("the template uses a variable the row does not have")
        return RenderedPreview(text, len(text.split()), self.context_window)

    def stream_generate(
        self,
        model: str,
        content: PromptContent,
        row: dict[str, Any],
        settings: dict[str, Any],
        should_stop: StopCallback,
    ) -> Iterator[TokenChunk]:
        self.calls.append(f"generate:{model}")
        if self.fail_with is not None:
            raise self.fail_with
        for index, token in enumerate(self.tokens):
            if index == 1 and self._wait_gate(should_stop):
                return
            yield TokenChunk(token, 0.01 * (index + 1))

    def tokenize_bias(self, model: str, logit_bias: dict[str, float]) -> list[BiasToken]:
        return [
            BiasToken(text, weight, [text[:2], text[2:]] if len(text) > 2 else [text], [1, 2])
            for text, weight in logit_bias.items()
        ]

    def evaluate(
        self, spec: EvalSpec, on_progress: ProgressCallback, should_stop: StopCallback
    ) -> EvalOutcome:
        self.calls.append(f"evaluate:{spec.prompt_ref}")
        if self.fail_with is not None:
            raise self.fail_with
        version = self.store.get_prompt_version(spec.prompt_ref)
        model = self.store.get_model(spec.model)
        dataset = self.store.get_dataset(spec.dataset)
        rows = self.store.dataset_rows(spec.dataset, spec.split, limit=spec.limit)
        run = self.store.create_run(
            version.id, model.id, dataset.id, spec.split, len(rows), {},
            metric_names=["accuracy"], row_limit=spec.limit,
        )  # fmt: skip
        correct = 0
        for done, row in enumerate(rows, start=1):
            if done == 2 and self._wait_gate(should_stop):
                self.store.finish_run(run.id, "interrupted")
                return EvalOutcome(run.id, "interrupted", {})
            output = self.outputs[(done - 1) % len(self.outputs)]
            reference = str(row.data.get(dataset.reference_column or "", ""))
            correct += output == reference
            self.store.add_run_outputs(
                run.id,
                [NewRunOutput(row_idx=row.idx, rendered_prompt="p", output=output,
                              prediction=output, reference=reference,
                              scores={"accuracy": float(output == reference)})],
            )  # fmt: skip
            on_progress(EvalProgress(done, len(rows), run.id, {"accuracy": correct / done}))
        metrics = {"accuracy": correct / max(1, len(rows))}
        self.store.finish_run(run.id, "succeeded", metrics)
        return EvalOutcome(run.id, "succeeded", metrics)

    def training_fields(self) -> list[TrainingField]:
        return list(FAKE_TRAINING_FIELDS)

    def training_command(self, values: dict[str, Any]) -> str:
        return training_command_line(values, {f.name: f.default for f in FAKE_TRAINING_FIELDS})

    def launch_job(self, values: dict[str, Any]) -> int:
        self.calls.append("launch")
        if self.fail_with is not None:
            raise self.fail_with
        base = self.store.get_model(str(values.get("base") or "builtin"))
        dataset = self.store.get_dataset(str(values["dataset"])) if values.get("dataset") else None
        job = self.store.create_job(
            str(values.get("method", "lora")), dict(values), base.id,
            dataset.id if dataset else None, None,
        )  # fmt: skip
        return job.id

    def cancel_job(self, job_id: int) -> None:
        self.cancelled_jobs.append(job_id)
        self.store.update_job(job_id, event=("cancelled", "cancelled by user"), status="cancelled")

    def resume_job(self, job_id: int) -> int:
        job = self.store.get_job(job_id)
        if job.status not in ("failed", "cancelled"):
            raise EngineError(f"job {job_id} is {job.status}; only failed or cancelled jobs resume")
        self.store.update_job(job_id, event=("resumed", "resumed by user"), status="queued")
        return job_id

    def refresh_jobs(self) -> None:
        self.calls.append("refresh")

    def log_tail(self, job_id: int, lines: int = 200) -> list[str]:
        return [f"{e.kind}: {e.message}" for e in self.store.job_events(job_id)][-lines:]

    def compare_runs(
        self, run_ids: Sequence[int], price_per_gpu_hour: float | None = None
    ) -> ComparisonView:
        if len(run_ids) < 2:
            raise BadInputError("pick at least two runs to compare")
        runs = [self.store.get_run(i) for i in run_ids]
        outputs = [{o.row_idx: o for o in self.store.run_outputs(i)} for i in run_ids]
        values = [float(r.metrics.get("accuracy", 0.0)) for r in runs]
        examples = []
        for idx in sorted(outputs[0]):
            first, last = outputs[0][idx], outputs[-1].get(idx)
            if last is None:
                continue
            a, b = first.scores.get("accuracy", 0), last.scores.get("accuracy", 0)
            change = "fixed" if b > a else "broken" if a > b else "same"
            examples.append(
                ExampleChange(idx, change, first.reference, [first.output, last.output])
            )
        delta = values[-1] - values[0]
        price = 2.0 if price_per_gpu_hour is None else price_per_gpu_hour
        verdict = f"run {run_ids[-1]} is {'better' if delta > 0 else 'not better'} on accuracy"
        return ComparisonView(
            list(run_ids),
            [f"#{r.id} {r.prompt_ref} · {r.model_name}" for r in runs],
            verdict,
            [MetricVerdict("accuracy", list(values), delta, delta - 0.1, delta + 0.1, 0.04, True)],
            examples,
            [f"price per GPU-hour: {price:.2f}", "break-even after 1,000 calls"],
        )

    def diff_versions(self, ref_a: str, ref_b: str) -> list[str]:
        from tunelab.engine.prompts.text import unified_prompt_diff

        return unified_prompt_diff(
            self.store.get_prompt_version(ref_a), self.store.get_prompt_version(ref_b)
        )

    def diff_words(self, before: str, after: str) -> list[DiffSegment]:
        return word_diff(before, after)

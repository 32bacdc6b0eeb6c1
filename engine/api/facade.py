"""The one object the TUI talks to: a thin plain-Python wrapper over the engine modules.

`EngineProtocol` is what the TUI depends on; `Engine` implements it over the real modules
with lazy imports (so opening the TUI never imports torch) and tests use a fake. Results are
small view dataclasses, so the TUI never reaches into engine internals.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tunelab.engine.api.training_form import (
    JOB_FIELDS,
    config_fields,
    launch_from_form,
    training_command_line,
    training_fields,
)
from tunelab.engine.api.types import (
    BiasToken,
    ComparisonView,
    DiffSegment,
    EngineProtocol,
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
)
from tunelab.engine.errors import BadInputError, EngineError

if TYPE_CHECKING:
    from tunelab.store import PromptContent, PromptVersion, Store, Workspace


def word_diff(before: str, after: str) -> list[DiffSegment]:
    """Word-level diff keeping whitespace, so joined segments rebuild either text."""
    from tunelab.engine.text_diff import word_diff as engine_word_diff

    return [DiffSegment(seg.op, seg.text) for seg in engine_word_diff(before, after)]


def content_from_fields(
    template: str, system: str, examples_json: str, settings_toml: str
) -> PromptContent:
    """Build prompt content from the editor's four fields, validated like `prompt edit`."""
    from tunelab.engine.prompts.text import text_to_content, validated_content

    text = "\n".join(
        [
            "=== settings ===",
            settings_toml,
            "=== system ===",
            system,
            "=== template ===",
            template,
            "=== examples ===",
            examples_json,
        ]
    )
    content, _message = text_to_content(text)
    return validated_content(content)


def settings_toml_of(version: PromptVersion) -> str:
    from tunelab.engine.prompts.text import settings_to_toml

    return settings_to_toml(version.mode, version.reasoning, version.settings)


class Engine:
    """The real engine over a workspace's store; heavy modules load on first use."""

    def __init__(self, store: Store, workspace: Workspace | None = None) -> None:
        self.store = store
        self.workspace = workspace
        self._load_lock = threading.RLock()
        """One model load at a time: transformers' lazy imports are not thread-safe, and two
        workers asking for the same model should share one load."""

    # Prompts -----------------------------------------------------------------------------
    def content_from_fields(
        self, template: str, system: str, examples_json: str, settings_toml: str
    ) -> PromptContent:
        return content_from_fields(template, system, examples_json, settings_toml)

    def settings_toml(self, version: PromptVersion) -> str:
        return settings_toml_of(version)

    def diff_versions(self, ref_a: str, ref_b: str) -> list[str]:
        from tunelab.engine.prompts.text import unified_prompt_diff

        a = self.store.get_prompt_version(ref_a)
        b = self.store.get_prompt_version(ref_b)
        return unified_prompt_diff(a, b)

    def diff_words(self, before: str, after: str) -> list[DiffSegment]:
        return word_diff(before, after)

    # Playground --------------------------------------------------------------------------
    def _load(self, model: str) -> Any:
        from tunelab.engine.evaluation.plan import resolve_model_arg
        from tunelab.engine.models.loading import load_model  # loads torch and transformers

        self._warm_imports()
        with self._load_lock:
            return load_model(self.store, resolve_model_arg(self.store, model))

    def _warm_imports(self) -> None:
        """Resolve transformers' lazy names once, under the lock, before workers race on them."""
        with self._load_lock:
            import transformers  # heavy: loads torch

            for name in ("AutoModelForCausalLM", "AutoTokenizer", "TextIteratorStreamer",
                         "StoppingCriteriaList", "LogitsProcessorList"):  # fmt: skip
                getattr(transformers, name, None)

    def render_preview(
        self, content: PromptContent, row: dict[str, Any], model: str
    ) -> RenderedPreview:
        from tunelab.engine.prompts.templates import render_preview

        rendered = render_preview(content, row, self._load(model))
        return RenderedPreview(
            rendered.text, int(rendered.token_count or 0), int(rendered.context_window or 0)
        )

    def stream_generate(
        self,
        model: str,
        content: PromptContent,
        row: dict[str, Any],
        settings: dict[str, Any],
        should_stop: StopCallback,
    ) -> Iterator[TokenChunk]:
        from tunelab.engine.generation.batched import stream_generate
        from tunelab.engine.prompts.settings import GenerationSettings
        from tunelab.engine.prompts.templates import render_prompt

        loaded = self._load(model)
        generation_settings = GenerationSettings.from_version_settings(settings)
        rendered = render_prompt(
            content, row, loaded, max_new_tokens=generation_settings.max_new_tokens
        )
        for chunk in stream_generate(loaded, rendered.text, generation_settings, should_stop):
            if chunk.text or chunk.done:
                yield TokenChunk(chunk.text, float(chunk.elapsed_s))

    def tokenize_bias(self, model: str, logit_bias: dict[str, float]) -> list[BiasToken]:
        from tunelab.engine.generation.controls import tokenize_bias

        entries = tokenize_bias(self._load(model).tokenizer, logit_bias)
        return [
            BiasToken(e.string, e.weight, list(e.token_strings), list(e.token_ids)) for e in entries
        ]

    # Evaluation --------------------------------------------------------------------------
    def evaluate(
        self, spec: EvalSpec, on_progress: ProgressCallback, should_stop: StopCallback
    ) -> EvalOutcome:
        from tunelab.engine.evaluation.run import EvalRequest, evaluate

        request = EvalRequest(
            prompt=spec.prompt_ref,
            model=spec.model,
            dataset=spec.dataset,
            split=spec.split,
            limit=spec.limit,
        )

        def forward(progress: Any) -> None:
            on_progress(EvalProgress(progress.done, progress.total, progress.run_id or None))

        self._warm_imports()
        result = evaluate(self.store, request, on_progress=forward, should_stop=should_stop)
        status = "interrupted" if result.interrupted else result.run.status
        return EvalOutcome(result.run_id, status, dict(result.metrics))

    # Fine-tuning -------------------------------------------------------------------------
    def training_fields(self) -> list[TrainingField]:
        return training_fields()

    def training_command(self, values: dict[str, Any]) -> str:
        defaults = {f.name: f.default for f in self.training_fields()}
        return training_command_line(values, defaults)

    def _workspace(self) -> Workspace:
        if self.workspace is None:
            raise EngineError("fine-tuning needs a workspace folder; open tunelab in one")
        return self.workspace

    def launch_job(self, values: dict[str, Any]) -> int:
        return launch_from_form(self.store, self._workspace(), values)

    def cancel_job(self, job_id: int) -> None:
        from tunelab.engine.training.jobs import cancel_job

        cancel_job(self._workspace(), self.store, job_id)

    def resume_job(self, job_id: int) -> int:
        from tunelab.engine.training.jobs import resume_job

        return resume_job(self._workspace(), self.store, job_id).id

    def refresh_jobs(self) -> None:
        """Mark jobs (failed) and evaluation runs (interrupted) whose process vanished."""
        from tunelab.engine.evaluation.run import refresh_run_states
        from tunelab.engine.training.jobs import refresh_job_states

        refresh_job_states(self.store, self.workspace)
        refresh_run_states(self.store)

    def log_tail(self, job_id: int, lines: int = 200) -> list[str]:
        from tunelab.engine.training.jobs import log_tail

        return log_tail(self.store.get_job(job_id), lines).splitlines()

    # Compare -----------------------------------------------------------------------------
    def compare_runs(
        self, run_ids: Sequence[int], price_per_gpu_hour: float | None = None
    ) -> ComparisonView:
        """Compare runs on their shared rows; prices come from the workspace config unless
        `price_per_gpu_hour` overrides the GPU-hour one."""
        from tunelab.engine.compare.runs import compare_runs

        comparison = compare_runs(
            self.store, list(run_ids), shared_rows_only=True, price_per_gpu_hour=price_per_gpu_hour
        )
        return comparison_view(comparison, [r.id for r in comparison.runs])


def comparison_view(comparison: Any, run_ids: list[int]) -> ComparisonView:
    """Flatten the engine's `Comparison` (first run = baseline) into what Compare shows."""
    from tunelab.engine.compare.report import cost_lines

    metrics = [
        MetricVerdict(
            name=str(m.name),
            values=list(m.values),
            delta=m.delta,
            ci_low=m.ci_low,
            ci_high=m.ci_high,
            p_value=m.p_value,
            significant=bool(m.significant),
        )
        for m in comparison.metrics
    ]
    examples = [
        ExampleChange(int(e.row_idx), str(e.change), e.reference, list(e.outputs))
        for e in comparison.examples
    ]
    verdict = str(comparison.verdict)
    if metrics and len(run_ids) >= 2:
        verdict = f"run {run_ids[1]} vs run {run_ids[0]} on {metrics[0].name}: {verdict}"
    return ComparisonView(
        run_ids,
        [str(label) for label in comparison.labels],
        verdict,
        metrics,
        examples,
        cost_lines(comparison),
    )


def parse_logit_bias(text: str) -> dict[str, float]:
    """Parse `yes=2, no=-2` into {"yes": 2.0, "no": -2.0}; a bad part raises BadInputError."""
    bias: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        token, sep, weight = part.rpartition("=")
        token = token.strip().strip("'\"")
        if not sep or not token:
            raise BadInputError(f"logit bias {part.strip()!r}: write text=weight, e.g. yes=2")
        try:
            bias[token] = float(weight)
        except ValueError:
            raise BadInputError(
                f"logit bias {part.strip()!r}: the weight must be a number"
            ) from None
        if not -100 <= bias[token] <= 100:
            raise BadInputError(f"logit bias {part.strip()!r}: weights go from -100 to 100")
    return bias


__all__ = [
    "JOB_FIELDS",
    "BiasToken",
    "ComparisonView",
    "DiffSegment",
    "Engine",
    "EngineProtocol",
    "EvalOutcome",
    "EvalProgress",
    "EvalSpec",
    "ExampleChange",
    "MetricVerdict",
    "ProgressCallback",
    "RenderedPreview",
    "StopCallback",
    "TokenChunk",
    "TrainingField",
    "comparison_view",
    "config_fields",
    "content_from_fields",
    "parse_logit_bias",
    "settings_toml_of",
    "training_command_line",
    "word_diff",
]

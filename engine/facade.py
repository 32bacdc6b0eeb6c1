"""The one object the TUI talks to: a thin plain-Python wrapper over the engine modules.

`EngineProtocol` is what the TUI depends on; `Engine` implements it over the real modules
with lazy imports (so opening the TUI never imports torch) and tests use a fake. Results are
small view dataclasses, so the TUI never reaches into engine internals.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import BadInputError

if TYPE_CHECKING:
    from tunelab.store import PromptContent, PromptVersion, Store, Workspace

ProgressCallback = Callable[["EvalProgress"], None]
StopCallback = Callable[[], bool]


@dataclass(frozen=True)
class RenderedPreview:
    """A prompt as the model will see it, with its size against the context window."""

    text: str
    token_count: int
    context_window: int


@dataclass(frozen=True)
class TokenChunk:
    """A piece of streamed output and the seconds since generation started."""

    text: str
    elapsed_s: float


@dataclass(frozen=True)
class BiasToken:
    """How one logit-bias string tokenizes, so users see which tokens they are pushing."""

    text: str
    weight: float
    pieces: list[str]
    token_ids: list[int]


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate: a prompt version on a model over (part of) a dataset split."""

    prompt_ref: str
    model: str
    dataset: str
    split: str = "test"
    limit: int | None = None


@dataclass(frozen=True)
class EvalProgress:
    done: int
    total: int
    run_id: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalOutcome:
    run_id: int
    status: str
    metrics: dict[str, Any]


@dataclass(frozen=True)
class TrainingField:
    """One fine-tuning setting as the form shows it."""

    name: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricVerdict:
    name: str
    values: list[float | None]
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class ExampleChange:
    """One example across two runs: fixed, broken, or unchanged (right or wrong both times)."""

    row_idx: int
    change: str
    reference: str | None
    outputs: list[str]


@dataclass(frozen=True)
class ComparisonView:
    run_ids: list[int]
    labels: list[str]
    verdict: str
    metrics: list[MetricVerdict]
    examples: list[ExampleChange]
    cost_lines: list[str]


@dataclass(frozen=True)
class DiffSegment:
    """A run of words that are equal, inserted or deleted between two texts."""

    op: str
    text: str


class EngineProtocol(Protocol):
    """Everything the TUI asks of the engine; all calls may block (run them in workers)."""

    def content_from_fields(
        self, template: str, system: str, examples_json: str, settings_toml: str
    ) -> PromptContent: ...

    def settings_toml(self, version: PromptVersion) -> str: ...

    def render_preview(
        self, content: PromptContent, row: dict[str, Any], model: str
    ) -> RenderedPreview: ...

    def stream_generate(
        self,
        model: str,
        content: PromptContent,
        row: dict[str, Any],
        settings: dict[str, Any],
        should_stop: StopCallback,
    ) -> Iterator[TokenChunk]: ...

    def tokenize_bias(self, model: str, logit_bias: dict[str, float]) -> list[BiasToken]: ...

    def evaluate(
        self, spec: EvalSpec, on_progress: ProgressCallback, should_stop: StopCallback
    ) -> EvalOutcome: ...

    def training_fields(self) -> list[TrainingField]: ...

    def training_command(self, values: dict[str, Any]) -> str: ...

    def launch_job(self, values: dict[str, Any]) -> int: ...

    def cancel_job(self, job_id: int) -> None: ...

    def resume_job(self, job_id: int) -> int: ...

    def refresh_jobs(self) -> None: ...

    def log_tail(self, job_id: int, lines: int = 200) -> list[str]: ...

    def compare_runs(self, run_ids: Sequence[int], price_per_gpu_hour: float) -> ComparisonView: ...

    def diff_versions(self, ref_a: str, ref_b: str) -> list[str]: ...

    def diff_words(self, before: str, after: str) -> list[DiffSegment]: ...


_WORD_RE = re.compile(r"\s+|[^\s]+")


def word_diff(before: str, after: str) -> list[DiffSegment]:
    """Word-level diff keeping whitespace, so joined segments rebuild either text."""
    a, b = _WORD_RE.findall(before), _WORD_RE.findall(after)
    segments: list[DiffSegment] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            segments.append(DiffSegment("equal", "".join(a[i1:i2])))
            continue
        if op in ("delete", "replace"):
            segments.append(DiffSegment("delete", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            segments.append(DiffSegment("insert", "".join(b[j1:j2])))
    return segments


def content_from_fields(
    template: str, system: str, examples_json: str, settings_toml: str
) -> PromptContent:
    """Build prompt content from the editor's four fields, validated like `prompt edit`."""
    from .prompt_text import text_to_content

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
    return content


def settings_toml_of(version: PromptVersion) -> str:
    from .prompt_text import settings_to_toml

    return settings_to_toml(version.mode, version.reasoning, version.settings)


def training_command_line(values: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The `tunelab tune start` command equal to a form: only settings that differ from defaults."""
    parts = ["tunelab", "tune", "start"]
    for name, value in values.items():
        if name in defaults and defaults[name] == value:
            continue
        if value is None or value == "":
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list | tuple):
            parts += [flag, ",".join(str(v) for v in value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


class Engine:
    """The real engine over a workspace's store; heavy modules load on first use."""

    def __init__(self, store: Store, workspace: Workspace | None = None) -> None:
        self.store = store
        self.workspace = workspace

    # Prompts -----------------------------------------------------------------------------
    def content_from_fields(
        self, template: str, system: str, examples_json: str, settings_toml: str
    ) -> PromptContent:
        return content_from_fields(template, system, examples_json, settings_toml)

    def settings_toml(self, version: PromptVersion) -> str:
        return settings_toml_of(version)

    def diff_versions(self, ref_a: str, ref_b: str) -> list[str]:
        from .prompt_text import unified_prompt_diff

        a = self.store.get_prompt_version(ref_a)
        b = self.store.get_prompt_version(ref_b)
        return unified_prompt_diff(a, b)

    def diff_words(self, before: str, after: str) -> list[DiffSegment]:
        return word_diff(before, after)

    # Playground --------------------------------------------------------------------------
    def _load(self, model: str) -> Any:
        from .models import load_model  # loads torch and transformers

        return load_model(self.store, model)

    def render_preview(
        self, content: PromptContent, row: dict[str, Any], model: str
    ) -> RenderedPreview:
        from .templates import render_prompt

        loaded = self._load(model)
        rendered = render_prompt(content, row, loaded.tokenizer)
        return RenderedPreview(rendered.text, rendered.token_count, rendered.context_window)

    def stream_generate(
        self,
        model: str,
        content: PromptContent,
        row: dict[str, Any],
        settings: dict[str, Any],
        should_stop: StopCallback,
    ) -> Iterator[TokenChunk]:
        from .generation import stream_generate
        from .settings import GenerationSettings
        from .templates import render_prompt

        loaded = self._load(model)
        rendered = render_prompt(content, row, loaded.tokenizer)
        generation_settings = GenerationSettings.from_dict(settings)
        for chunk in stream_generate(loaded, rendered, generation_settings, should_stop):
            yield TokenChunk(chunk.text, float(chunk.elapsed))

    def tokenize_bias(self, model: str, logit_bias: dict[str, float]) -> list[BiasToken]:
        from .generation import tokenize_bias

        loaded = self._load(model)
        previews = tokenize_bias(loaded.tokenizer, logit_bias)
        out: list[BiasToken] = []
        for text, weight in logit_bias.items():
            ids = list(previews[text]) if isinstance(previews, dict) else []
            pieces = [loaded.tokenizer.decode([i]) for i in ids]
            out.append(BiasToken(text, float(weight), pieces, ids))
        return out

    # Evaluation --------------------------------------------------------------------------
    def evaluate(
        self, spec: EvalSpec, on_progress: ProgressCallback, should_stop: StopCallback
    ) -> EvalOutcome:
        from .evaluation import EvalRequest, evaluate

        request = EvalRequest(
            prompt=spec.prompt_ref,
            model=spec.model,
            dataset=spec.dataset,
            split=spec.split,
            limit=spec.limit,
        )

        def forward(progress: Any) -> None:
            on_progress(
                EvalProgress(
                    done=int(getattr(progress, "done", 0)),
                    total=int(getattr(progress, "total", 0)),
                    run_id=getattr(progress, "run_id", None),
                    metrics=dict(getattr(progress, "metrics", {}) or {}),
                )
            )

        result = evaluate(self.store, request, on_progress=forward, should_stop=should_stop)
        run = self.store.get_run(result.run_id)
        return EvalOutcome(run.id, run.status, dict(run.metrics))

    # Fine-tuning -------------------------------------------------------------------------
    def training_fields(self) -> list[TrainingField]:
        from dataclasses import MISSING, fields

        from .training_config import TrainingConfig

        out: list[TrainingField] = []
        for f in fields(TrainingConfig):
            if f.default is not MISSING:
                default: Any = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = None
            choices = tuple(str(c) for c in f.metadata.get("choices", ()))
            out.append(TrainingField(f.name, default, str(f.metadata.get("help", "")), choices))
        return out

    def training_command(self, values: dict[str, Any]) -> str:
        defaults = {f.name: f.default for f in self.training_fields()}
        return training_command_line(values, defaults)

    def launch_job(self, values: dict[str, Any]) -> int:
        from .jobs import launch_job
        from .training_config import TrainingConfig

        config = TrainingConfig.from_dict(values)
        job = launch_job(self.store, config, workspace=self.workspace)
        return int(getattr(job, "id", job))

    def cancel_job(self, job_id: int) -> None:
        from .jobs import cancel_job

        cancel_job(self.store, job_id)

    def resume_job(self, job_id: int) -> int:
        from .jobs import resume_job

        job = resume_job(self.store, job_id, workspace=self.workspace)
        return int(getattr(job, "id", job))

    def refresh_jobs(self) -> None:
        from .jobs import refresh_job_states

        refresh_job_states(self.store)

    def log_tail(self, job_id: int, lines: int = 200) -> list[str]:
        job = self.store.get_job(job_id)
        if not job.log_path:
            return []
        path = Path(job.log_path)
        if not path.exists():
            return []
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
        return text.splitlines()[-lines:]

    # Compare -----------------------------------------------------------------------------
    def compare_runs(self, run_ids: Sequence[int], price_per_gpu_hour: float) -> ComparisonView:
        from .compare import compare_runs

        if len(run_ids) < 2:
            raise BadInputError("pick at least two runs to compare")
        comparison = compare_runs(self.store, list(run_ids))
        return comparison_view(comparison, list(run_ids), price_per_gpu_hour)


def comparison_view(comparison: Any, run_ids: list[int], price_per_gpu_hour: float) -> ComparisonView:
    """Flatten the engine's `Comparison` into what the Compare screen shows."""
    metrics = [
        MetricVerdict(
            name=str(m.name),
            values=list(getattr(m, "values", [])),
            delta=getattr(m, "delta", None),
            ci_low=getattr(m, "ci_low", None),
            ci_high=getattr(m, "ci_high", None),
            p_value=getattr(m, "p_value", None),
            significant=bool(getattr(m, "significant", False)),
        )
        for m in getattr(comparison, "metrics", [])
    ]
    examples = [
        ExampleChange(
            row_idx=int(e.row_idx),
            change=str(e.change),
            reference=getattr(e, "reference", None),
            outputs=list(getattr(e, "outputs", [])),
        )
        for e in getattr(comparison, "examples", [])
    ]
    cost_lines = [str(line) for line in getattr(comparison, "cost_lines", [])]
    labels = [str(label) for label in getattr(comparison, "labels", [f"run {i}" for i in run_ids])]
    return ComparisonView(
        run_ids, labels, str(getattr(comparison, "verdict", "")), metrics, examples, cost_lines
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
            raise BadInputError(f"logit bias {part.strip()!r}: the weight must be a number") from None
        if not -100 <= bias[token] <= 100:
            raise BadInputError(f"logit bias {part.strip()!r}: weights go from -100 to 100")
    return bias

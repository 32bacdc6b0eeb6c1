"""What the TUI and the engine facade exchange: view dataclasses and `EngineProtocol`.

Kept apart from `facade.py` so the TUI's type imports stay light and the facade stays short.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tunelab.store import PromptContent, PromptVersion

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
    kind: str = "str"
    """How the form parses the text: str, int, float, bool or list."""


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

    def compare_runs(
        self, run_ids: Sequence[int], price_per_gpu_hour: float | None = None
    ) -> ComparisonView: ...

    def diff_versions(self, ref_a: str, ref_b: str) -> list[str]: ...

    def diff_words(self, before: str, after: str) -> list[DiffSegment]: ...

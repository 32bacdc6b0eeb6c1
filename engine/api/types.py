"""What the TUI and the engine facade exchange: `EngineProtocol` and the few records only it has.

Everything else the protocol returns is the engine's own record, not a copy: a preview is
`RenderedPrompt`, streamed text is generation's `TokenChunk`, a logit-bias preview is
`BiasEntry`, evaluation progress is `EvalProgress`, a comparison is `Comparison`, a word diff
is `WordDiffSegment`, a vote run's stability view is `RunStability`. One name, one type, so
a front end cannot drift from what the CLI shows.
Those records load on first use (`__getattr__`), so importing this module, and the facade, costs
next to nothing: the TUI's first frame does not wait for the engine's modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tunelab.engine.compare.example_detail import ExampleDetail
    from tunelab.engine.compare.records import Comparison
    from tunelab.engine.compare.trend import Trend, TrendRequest
    from tunelab.engine.curves.records import CurveSummary
    from tunelab.engine.evaluation.request import EvalProgress, ProgressCallback
    from tunelab.engine.evaluation.run_detail import RunDetail
    from tunelab.engine.evaluation.stability import RunStability
    from tunelab.engine.feedback.preferences import BlindPair, BlindSession, PreferenceTally
    from tunelab.engine.generation.batched import TokenChunk
    from tunelab.engine.generation.controls import BiasEntry
    from tunelab.engine.optimize.history import SearchHistory
    from tunelab.engine.optimize.search import OptimizeProgress, OptimizeRequest, OptimizeResult
    from tunelab.engine.prompts.settings import GenerationSettings
    from tunelab.engine.prompts.templates import RenderedPrompt
    from tunelab.engine.report.records import DecisionReport
    from tunelab.engine.robustness.records import RobustnessSummary
    from tunelab.engine.sweeps.records import SweepDetail
    from tunelab.engine.text_diff import WordDiffSegment
    from tunelab.engine.training.job_detail import JobDetail
    from tunelab.store import Judgement, PromptContent, PromptVersion
    from tunelab.store.feedback import Correction, Preference

StopCallback = Callable[[], bool]
FormValues = dict[str, object]
"""A training form's values by field name (text, numbers, booleans or lists)."""


@dataclass(frozen=True)
class RowInput:
    """The row a prompt renders for: its columns and, for a dataset row, where it came from.

    With `dataset`, `split` and `idx` the few-shot examples are drawn exactly as an evaluation
    of that split draws them (see `prompts.templates.RowRenderer`).
    """

    values: dict[str, object]
    dataset: str | None = None
    split: str | None = None
    idx: int | None = None


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate: a prompt version on a model over (part of) a dataset split."""

    prompt_ref: str
    model: str
    dataset: str
    split: str = "test"
    limit: int | None = None


@dataclass(frozen=True)
class EvalOutcome:
    run_id: int
    status: str
    metrics: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Activity:
    """What is running in the workspace, in any session: counted from the store."""

    evaluations: int = 0
    """Evaluation runs whose process is alive (or on another host)."""
    jobs_running: int = 0
    """Fine-tuning jobs running now."""
    jobs_queued: int = 0
    searches: int = 0
    """Prompt searches (optimize jobs) running or queued."""
    sweeps: int = 0
    """Hyperparameter sweeps still running."""

    @property
    def total(self) -> int:
        return self.evaluations + self.jobs_running + self.jobs_queued + self.searches + self.sweeps


@dataclass(frozen=True)
class TrainingField:
    """One fine-tuning setting as the form shows it."""

    name: str
    default: object
    help: str
    choices: tuple[str, ...] = ()
    kind: str = "str"
    """How the form parses the text: str, int, float, bool or list."""


class EngineProtocol(Protocol):
    """Everything the TUI asks of the engine; all calls may block (run them in workers)."""

    def content_from_fields(
        self, template: str, system: str, examples_json: str, settings_toml: str
    ) -> PromptContent: ...

    def settings_toml(self, version: PromptVersion) -> str: ...

    def render_preview(self, content: PromptContent, row: RowInput, model: str) -> RenderedPrompt:
        """The prompt as evaluation renders it for this row (an overlong one too: see `.fits`)."""
        ...

    def stream_generate(
        self,
        model: str,
        content: PromptContent,
        row: RowInput,
        settings: GenerationSettings,
        should_stop: StopCallback,
    ) -> Iterator[TokenChunk]: ...

    def tokenize_bias(self, model: str, logit_bias: dict[str, float]) -> list[BiasEntry]: ...

    def evaluate(
        self, spec: EvalSpec, on_progress: ProgressCallback, should_stop: StopCallback
    ) -> EvalOutcome: ...

    def missing_variables(self, prompt_ref: str, dataset: str) -> list[str]:
        """The variables a prompt version reads that a dataset lacks ([] when the pair fits)."""
        ...

    def start_evaluation(self, spec: EvalSpec) -> int:
        """Start an evaluation in a detached process; returns its run id at once (the run
        fills in through the store, and outlives the TUI)."""
        ...

    def cancel_evaluation(self, run_id: int) -> None:
        """Stop a running evaluation after its current chunk; it stays resumable."""
        ...

    def activity(self) -> Activity:
        """What runs now in any session (also marks runs and jobs whose process died)."""
        ...

    def training_fields(self) -> list[TrainingField]: ...

    def training_command(self, values: FormValues) -> str: ...

    def launch_job(self, values: FormValues) -> int: ...

    def cancel_job(self, job_id: int) -> None: ...

    def resume_job(self, job_id: int) -> int: ...

    def refresh_jobs(self) -> None: ...

    def log_tail(self, job_id: int, lines: int = 200) -> list[str]: ...

    def job_detail(self, job_id: int) -> JobDetail:
        """A job with its changed settings, validation metrics, checkpoints and log tail."""
        ...

    def run_detail(self, run_id: int) -> RunDetail:
        """A run with its metrics, latency probe, outputs and judge scores."""
        ...

    def example_detail(self, comparison: Comparison, row_idx: int) -> ExampleDetail:
        """One highlighted row of a comparison: its input, both outputs, their word diff."""
        ...

    def compare_runs(
        self, run_ids: Sequence[int], price_per_gpu_hour: float | None = None
    ) -> Comparison: ...

    def diff_versions(self, ref_a: str, ref_b: str) -> list[str]: ...

    def diff_words(self, before: str, after: str) -> list[WordDiffSegment]: ...

    def run_stability(self, run_id: int, limit: int | None = None) -> RunStability:
        """A vote run's rows ranked by how much their samples disagree."""
        ...

    def robustness_for_run(self, run_id: int) -> RobustnessSummary | None: ...

    def blind_session(self, run_a: int, run_b: int, seed: int = 0) -> BlindSession:
        """Rows both runs answered, shuffled and with sides drawn from `seed`, less those the
        user (`TUNELAB_USER`, else the login name) already judged for the pair."""
        ...

    def prefer_pair(self, pair: BlindPair, side: str) -> Preference:
        """Store a blind judgement, `left`, `right` or `tie` (the left output as A)."""
        ...

    def preference_tallies(self, run_ids: Sequence[int]) -> list[PreferenceTally]:
        """Blind A/B win rates of each later run against the first, where judged."""
        ...

    def metric_trend(self, request: TrendRequest) -> Trend:
        """One metric across a prompt's versions or a job's checkpoints."""
        ...

    def trend_metrics(self, request: TrendRequest) -> list[str]:
        """The metrics a trend of this prompt or job can draw."""
        ...

    def robustness_contrast(self, run_ids: Sequence[int]) -> list[str]: ...

    def corrections(self, output_id: int) -> list[Correction]:
        """Every version of an output's correction, oldest first."""
        ...

    def correct_output(self, output_id: int, text: str) -> Correction:
        """Store the output that should have been produced, as a new version beside the
        original (by `TUNELAB_USER`, else the login name)."""
        ...

    def summarize_curve(self, curve_id: int) -> CurveSummary:
        """A data-efficiency curve as it stands: points, prompt band, crossover, state."""
        ...

    def latest_curve(
        self, dataset: str | None = None, base_model: str | None = None
    ) -> CurveSummary | None: ...

    def decision_report(
        self,
        dataset: str | None = None,
        prompt_run: int | None = None,
        finetune_run: int | None = None,
    ) -> DecisionReport:
        """Prompt or fine-tune: the best (or named) prompt and fine-tuned runs, weighed."""
        ...

    def output_judgements(self, run_id: int) -> dict[int, Judgement]: ...

    def sweeps(self) -> list[SweepDetail]:
        """Hyperparameter sweeps, newest first, each with its trials and best checkpoint."""
        ...

    def optimize(
        self,
        request: OptimizeRequest,
        on_progress: Callable[[OptimizeProgress], None],
        should_stop: StopCallback,
    ) -> OptimizeResult:
        """A prompt search from a seed version (`tunelab optimize`); the best is `optimized`."""
        ...

    def search_history(self, seed_ref: str) -> SearchHistory:
        """The search from a seed version as `tunelab optimize show` reads it."""
        ...


_RECORD_MODULES = {
    "ExampleDetail": "tunelab.engine.compare.example_detail",
    "Comparison": "tunelab.engine.compare.records",
    "Trend": "tunelab.engine.compare.trend",
    "TrendRequest": "tunelab.engine.compare.trend",
    "CurveSummary": "tunelab.engine.curves.records",
    "EvalProgress": "tunelab.engine.evaluation.request",
    "ProgressCallback": "tunelab.engine.evaluation.request",
    "RunDetail": "tunelab.engine.evaluation.run_detail",
    "RunStability": "tunelab.engine.evaluation.stability",
    "BlindPair": "tunelab.engine.feedback.preferences",
    "BlindSession": "tunelab.engine.feedback.preferences",
    "PreferenceTally": "tunelab.engine.feedback.preferences",
    "TokenChunk": "tunelab.engine.generation.batched",
    "BiasEntry": "tunelab.engine.generation.controls",
    "SearchHistory": "tunelab.engine.optimize.history",
    "OptimizeProgress": "tunelab.engine.optimize.search",
    "OptimizeRequest": "tunelab.engine.optimize.search",
    "OptimizeResult": "tunelab.engine.optimize.search",
    "GenerationSettings": "tunelab.engine.prompts.settings",
    "RenderedPrompt": "tunelab.engine.prompts.templates",
    "DecisionReport": "tunelab.engine.report.records",
    "RobustnessSummary": "tunelab.engine.robustness.records",
    "SweepDetail": "tunelab.engine.sweeps.records",
    "WordDiffSegment": "tunelab.engine.text_diff",
    "JobDetail": "tunelab.engine.training.job_detail",
}
"""Where each of the engine's own records re-exported here is defined."""


def __getattr__(name: str) -> object:
    """Import a re-exported record from its module when it is first asked for."""
    module = _RECORD_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Activity",
    "BiasEntry",
    "BlindPair",
    "BlindSession",
    "Comparison",
    "CurveSummary",
    "DecisionReport",
    "EngineProtocol",
    "EvalOutcome",
    "EvalProgress",
    "EvalSpec",
    "ExampleDetail",
    "FormValues",
    "GenerationSettings",
    "JobDetail",
    "OptimizeProgress",
    "OptimizeRequest",
    "OptimizeResult",
    "PreferenceTally",
    "ProgressCallback",
    "RenderedPrompt",
    "RobustnessSummary",
    "RowInput",
    "RunDetail",
    "RunStability",
    "SearchHistory",
    "StopCallback",
    "SweepDetail",
    "TokenChunk",
    "TrainingField",
    "Trend",
    "TrendRequest",
    "WordDiffSegment",
]

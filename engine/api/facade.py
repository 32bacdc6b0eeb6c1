"""The one object the TUI talks to: a thin plain-Python wrapper over the engine modules.

`EngineProtocol` is what the TUI depends on; `Engine` implements it over the real modules
with lazy imports (so opening the TUI never imports torch) and tests use a fake. Results are
the engine's own records (see `types.py`), so the TUI shows exactly what the CLI shows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from tunelab.engine.api.training_form import (
    JOB_FIELDS,
    config_fields,
    launch_from_form,
    training_command_line,
    training_fields,
)
from tunelab.engine.api.types import (
    Activity,
    EngineProtocol,
    EvalOutcome,
    EvalSpec,
    FormValues,
    RowInput,
    StopCallback,
    TrainingField,
)
from tunelab.engine.errors import EngineError
from tunelab.engine.text_diff import word_diff

if TYPE_CHECKING:
    from tunelab.engine.api.types import (
        BiasEntry,
        BlindPair,
        BlindSession,
        Comparison,
        CurveSummary,
        DecisionReport,
        EvalProgress,
        ExampleDetail,
        JobDetail,
        PreferenceTally,
        ProgressCallback,
        RenderedPrompt,
        RobustnessSummary,
        RunDetail,
        RunStability,
        SweepDetail,
        TokenChunk,
        Trend,
        TrendRequest,
    )
    from tunelab.engine.generation.endpoint import EndpointModel
    from tunelab.engine.models.loading import LoadedModel
    from tunelab.engine.optimize.history import SearchHistory
    from tunelab.engine.optimize.search import OptimizeProgress, OptimizeRequest, OptimizeResult
    from tunelab.engine.prompts.settings import GenerationSettings
    from tunelab.engine.prompts.templates import RowRenderer
    from tunelab.engine.text_diff import WordDiffSegment
    from tunelab.store import Judgement, PromptContent, PromptVersion, Store, Workspace
    from tunelab.store.feedback import Correction, Preference


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

    def diff_words(self, before: str, after: str) -> list[WordDiffSegment]:
        return word_diff(before, after)

    # Playground --------------------------------------------------------------------------
    def _load(self, model: str) -> LoadedModel:
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

    def _renderer(
        self,
        content: PromptContent,
        row: RowInput,
        loaded: LoadedModel | None,
        max_new_tokens: int | None = None,
    ) -> RowRenderer:
        """The renderer evaluation uses, over the row's dataset, so few-shot draws match."""
        from tunelab.engine.prompts.templates import RowRenderer

        dataset = self.store.get_dataset(row.dataset) if row.dataset else None
        return RowRenderer(self.store, content, loaded, dataset, row.split, max_new_tokens)

    def _endpoint(self, model: str) -> EndpointModel | None:
        """The endpoint behind `model`, or None for a model loaded here."""
        from tunelab.engine.evaluation.plan import resolve_model_arg
        from tunelab.engine.generation.endpoint import endpoint_of

        return endpoint_of(resolve_model_arg(self.store, model))

    def render_preview(self, content: PromptContent, row: RowInput, model: str) -> RenderedPrompt:
        if self._endpoint(model) is not None:
            # No tokenizer here: the text without token counts; chat messages go as they are.
            return self._renderer(content, row, None).render(row.values, row.idx)
        loaded = self._load(model)
        return self._renderer(content, row, loaded).render(row.values, row.idx)

    def stream_generate(
        self,
        model: str,
        content: PromptContent,
        row: RowInput,
        settings: GenerationSettings,
        should_stop: StopCallback,
    ) -> Iterator[TokenChunk]:
        from tunelab.engine.generation.batched import stream_generate

        endpoint = self._endpoint(model)
        if endpoint is not None:
            from tunelab.engine.generation.endpoint import EndpointPrompt, stream_endpoint

            shown = self._renderer(content, row, None, settings.max_new_tokens)
            rendered = shown.render(row.values, row.idx)
            request = EndpointPrompt(rendered.text, list(rendered.messages))
            yield from stream_endpoint(endpoint, request, settings, should_stop)
            return
        loaded = self._load(model)
        renderer = self._renderer(content, row, loaded, settings.max_new_tokens)
        rendered = renderer.render(row.values, row.idx, must_fit=True)
        yield from stream_generate(loaded, rendered.text, settings, should_stop)

    def tokenize_bias(self, model: str, logit_bias: dict[str, float]) -> list[BiasEntry]:
        from tunelab.engine.generation.controls import tokenize_bias

        return tokenize_bias(self._load(model).tokenizer, logit_bias)

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

        self._warm_imports()
        result = evaluate(self.store, request, on_progress=on_progress, should_stop=should_stop)
        status = "interrupted" if result.interrupted else result.run.status
        return EvalOutcome(result.run_id, status, dict(result.metrics))

    def missing_variables(self, prompt_ref: str, dataset: str) -> list[str]:
        """The variables a prompt version reads that a dataset's rows lack ([] when they fit,
        or when the template does not parse: evaluating it says why)."""
        from tunelab.engine.evaluation.plan import missing_variables

        version = self.store.get_prompt_version(prompt_ref)
        found = self.store.get_dataset(dataset)
        first = found.splits[0].name if found.splits else None
        rows = self.store.dataset_rows(dataset, first, limit=1) if first else []
        try:
            return missing_variables(version, found, rows)
        except EngineError:
            return []

    def start_evaluation(self, spec: EvalSpec) -> int:
        from tunelab.engine.evaluation.detached import start_evaluation
        from tunelab.engine.evaluation.run import EvalRequest

        request = EvalRequest(
            prompt=spec.prompt_ref,
            model=spec.model,
            dataset=spec.dataset,
            split=spec.split,
            limit=spec.limit,
        )
        return start_evaluation(self._workspace(), self.store, request).id

    def cancel_evaluation(self, run_id: int) -> None:
        from tunelab.engine.evaluation.detached import cancel_evaluation

        cancel_evaluation(self.store, run_id)

    def activity(self) -> Activity:
        from tunelab.engine.evaluation.detached import reap_eval_workers
        from tunelab.engine.evaluation.run import refresh_run_states
        from tunelab.engine.training.jobs import reap_workers

        reap_workers()
        reap_eval_workers()
        refresh_run_states(self.store)
        jobs = self.store.list_jobs(statuses=("queued", "running"))
        tuning = [job for job in jobs if job.kind != "optimize"]
        return Activity(
            evaluations=len(self.store.running_runs()),
            jobs_running=sum(job.status == "running" for job in tuning),
            jobs_queued=sum(job.status == "queued" for job in tuning),
            searches=sum(job.kind == "optimize" for job in jobs),
            sweeps=sum(sweep.status == "running" for sweep in self.store.list_sweeps()),
        )

    # Fine-tuning -------------------------------------------------------------------------
    def training_fields(self) -> list[TrainingField]:
        return training_fields()

    def training_command(self, values: FormValues) -> str:
        defaults = {f.name: f.default for f in self.training_fields()}
        return training_command_line(values, defaults)

    def _workspace(self) -> Workspace:
        if self.workspace is None:
            raise EngineError(
                "each job or detached evaluation needs a workspace folder; open tunelab in one"
            )
        return self.workspace

    def launch_job(self, values: FormValues) -> int:
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

    def job_detail(self, job_id: int) -> JobDetail:
        from tunelab.engine.training.job_detail import job_detail

        return job_detail(self.store, job_id, self.log_tail(job_id))

    def run_detail(self, run_id: int) -> RunDetail:
        from tunelab.engine.evaluation.run_detail import run_detail

        return run_detail(self.store, run_id)

    def example_detail(self, comparison: Comparison, row_idx: int) -> ExampleDetail:
        from tunelab.engine.compare.example_detail import example_detail

        return example_detail(self.store, comparison, row_idx)

    # Compare -----------------------------------------------------------------------------
    def compare_runs(
        self, run_ids: Sequence[int], price_per_gpu_hour: float | None = None
    ) -> Comparison:
        """Compare runs on their shared rows; prices come from the workspace config unless
        `price_per_gpu_hour` overrides the GPU-hour one."""
        from tunelab.engine.compare.runs import compare_runs

        return compare_runs(
            self.store, list(run_ids), shared_rows_only=True, price_per_gpu_hour=price_per_gpu_hour
        )

    def run_stability(self, run_id: int, limit: int | None = None) -> RunStability:
        from tunelab.engine.evaluation.stability import run_stability

        return run_stability(self.store, run_id, limit)

    # Robustness --------------------------------------------------------------------------
    def robustness_for_run(self, run_id: int) -> RobustnessSummary | None:
        """The latest robustness suite of a run, summarised; None when it has none."""
        from tunelab.engine.robustness.summary import robustness_for_run

        return robustness_for_run(self.store, run_id)

    def blind_session(self, run_a: int, run_b: int, seed: int = 0) -> BlindSession:
        from tunelab.engine.feedback.preferences import blind_session

        return blind_session(self.store, run_a, run_b, seed)

    def prefer_pair(self, pair: BlindPair, side: str) -> Preference:
        from tunelab.engine.feedback.preferences import prefer_pair

        return prefer_pair(self.store, pair, side)

    def preference_tallies(self, run_ids: Sequence[int]) -> list[PreferenceTally]:
        from tunelab.engine.feedback.preferences import preference_tallies

        return preference_tallies(self.store, list(run_ids))

    # Trends ------------------------------------------------------------------------------
    def metric_trend(self, request: TrendRequest) -> Trend:
        from tunelab.engine.compare.trend import trend_of

        return trend_of(self.store, request)

    def trend_metrics(self, request: TrendRequest) -> list[str]:
        from tunelab.engine.compare.trend import trend_metrics

        return trend_metrics(self.store, request)

    def robustness_contrast(self, run_ids: Sequence[int]) -> list[str]:
        """Both sides' drops under each perturbation their suites share, one sentence each
        (the first run against each other); [] when no run has a suite."""
        from tunelab.engine.robustness.contrast import robustness_contrast

        return robustness_contrast(self.store, run_ids)

    # Feedback -----------------------------------------------------------------------------
    def corrections(self, output_id: int) -> list[Correction]:
        return self.store.corrections(output_id)

    def correct_output(self, output_id: int, text: str) -> Correction:
        return self.store.correct_output(output_id, text)

    # Curves ------------------------------------------------------------------------------
    def summarize_curve(self, curve_id: int) -> CurveSummary:
        """A data-efficiency curve as it stands: points, prompt band, crossover, state."""
        from tunelab.engine.curves.summary import summarize_curve

        return summarize_curve(self.store, curve_id)

    def latest_curve(
        self, dataset: str | None = None, base_model: str | None = None
    ) -> CurveSummary | None:
        """The newest curve (on this dataset and base model, when named); None when none."""
        from tunelab.engine.curves.summary import latest_curve

        return latest_curve(self.store, dataset=dataset, base_model=base_model)

    # Decision report ---------------------------------------------------------------------
    def decision_report(
        self,
        dataset: str | None = None,
        prompt_run: int | None = None,
        finetune_run: int | None = None,
    ) -> DecisionReport:
        """The one-page decision report (`tunelab report`): runs chosen, compared, worded."""
        from tunelab.engine.report.build import build_report

        return build_report(
            self.store, dataset=dataset, prompt_run=prompt_run, finetune_run=finetune_run
        )

    # Judge -------------------------------------------------------------------------------
    def output_judgements(self, run_id: int) -> dict[int, Judgement]:
        """Output id → its judgement by the newest judge run that scored the run's outputs."""
        return self.store.latest_judgements(run_id)

    # Sweeps ------------------------------------------------------------------------------
    def sweeps(self) -> list[SweepDetail]:
        """Hyperparameter sweeps, newest first, each with its trials and best checkpoint."""
        from tunelab.engine.sweeps.launch import sweep_detail

        return [sweep_detail(self.store, s.id) for s in self.store.list_sweeps()]

    # Prompt optimization -----------------------------------------------------------------
    def optimize(
        self,
        request: OptimizeRequest,
        on_progress: Callable[[OptimizeProgress], None],
        should_stop: StopCallback,
    ) -> OptimizeResult:
        """Search the seed's space on the validation split (`engine.optimize.search`)."""
        from tunelab.engine.optimize.search import optimize

        self._warm_imports()
        return optimize(self.store, request, on_progress=on_progress, should_stop=should_stop)

    def search_history(self, seed_ref: str) -> SearchHistory:
        from tunelab.engine.optimize.history import search_history

        return search_history(self.store, seed_ref)


__all__ = [
    "JOB_FIELDS",
    "BiasEntry",
    "Comparison",
    "Engine",
    "EngineProtocol",
    "EvalOutcome",
    "EvalProgress",
    "EvalSpec",
    "GenerationSettings",
    "ProgressCallback",
    "RenderedPrompt",
    "RowInput",
    "StopCallback",
    "TokenChunk",
    "TrainingField",
    "WordDiffSegment",
    "config_fields",
    "content_from_fields",
    "settings_toml_of",
    "training_command_line",
    "word_diff",
]

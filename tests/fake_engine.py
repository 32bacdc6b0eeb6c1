"""A scripted engine for TUI tests: streams fixed tokens and metrics, writes real store rows.

It follows `EngineProtocol` (mypy checks that, see `_as_protocol`), so screens cannot tell it
from the real engine; no model loads. Store-only calls (compare, diffs) use the real engine
code, so the records are the real ones. A test can hold a generation or evaluation open with
`gate` to prove the UI stays responsive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tunelab.engine.api.facade import (
    content_from_fields,
    settings_toml_of,
    training_command_line,
)
from tunelab.engine.api.types import (
    Activity,
    BiasEntry,
    BlindPair,
    BlindSession,
    Comparison,
    CurveSummary,
    DecisionReport,
    EngineProtocol,
    EvalOutcome,
    EvalProgress,
    EvalSpec,
    ExampleDetail,
    FormValues,
    GenerationSettings,
    JobDetail,
    PreferenceTally,
    ProgressCallback,
    RenderedPrompt,
    RobustnessSummary,
    RowInput,
    RunDetail,
    RunStability,
    StopCallback,
    SweepDetail,
    TokenChunk,
    TrainingField,
    Trend,
    TrendRequest,
    WordDiffSegment,
)
from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.optimize.history import SearchHistory, search_history
from tunelab.engine.optimize.scorer import Evaluation
from tunelab.engine.optimize.search import (
    CandidateResult,
    OptimizeProgress,
    OptimizeRequest,
    OptimizeResult,
)
from tunelab.engine.prompts.search_note import SearchNote
from tunelab.engine.text_diff import word_diff
from tunelab.store import (
    DatasetRow,
    Judgement,
    NewRunOutput,
    PromptContent,
    PromptVersion,
    Store,
)
from tunelab.store.feedback import Correction, Preference

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
    evaluation_stops: dict[int, threading.Event] = field(default_factory=dict)
    """Per run started with `start_evaluation`: set by `cancel_evaluation`."""

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

    def render_preview(self, content: PromptContent, row: RowInput, model: str) -> RenderedPrompt:
        self.calls.append(f"render:{model}")
        text = content.template
        for key, value in row.values.items():
            text = text.replace("{{ " + key + " }}", str(value))
        if "{{" in text:
            raise BadInputError("the template uses a variable the row does not have")
        return RenderedPrompt(text, len(text.split()), self.context_window)

    def stream_generate(
        self,
        model: str,
        content: PromptContent,
        row: RowInput,
        settings: GenerationSettings,
        should_stop: StopCallback,
    ) -> Iterator[TokenChunk]:
        self.calls.append(f"generate:{model}")
        if self.fail_with is not None:
            raise self.fail_with
        for index, token in enumerate(self.tokens):
            if index == 1 and self._wait_gate(should_stop):
                return
            yield TokenChunk(token, 0.01 * (index + 1), 0.01)
        yield TokenChunk("", 0.01 * len(self.tokens), 0.01, len(self.tokens), True, "eos")

    def tokenize_bias(self, model: str, logit_bias: dict[str, float]) -> list[BiasEntry]:
        return [
            BiasEntry(text, [1, 2], [text[:2], text[2:]] if len(text) > 2 else [text], weight)
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
            on_progress(
                EvalProgress(done, len(rows), 0, 0.01 * done, None, run.id,
                             {"accuracy": correct / done})
            )  # fmt: skip
        metrics: dict[str, object] = {"accuracy": correct / max(1, len(rows))}
        self.store.finish_run(run.id, "succeeded", metrics)
        return EvalOutcome(run.id, "succeeded", metrics)

    def missing_variables(self, prompt_ref: str, dataset: str) -> list[str]:
        """The real check: it only reads the store."""
        from tunelab.engine.api.facade import Engine

        return Engine(self.store).missing_variables(prompt_ref, dataset)

    def start_evaluation(self, spec: EvalSpec) -> int:
        """Like the real one, returns the run id at once; a thread stands in for the worker
        process and writes the rows (held by `gate` like `evaluate`)."""
        self.calls.append(f"start_evaluation:{spec.prompt_ref}")
        if self.fail_with is not None:
            raise self.fail_with
        created = threading.Event()
        run_ids: list[int] = []
        stop = threading.Event()

        def first_progress(progress: EvalProgress) -> None:
            if not run_ids:
                run_ids.append(progress.run_id)
                created.set()

        def work() -> None:
            try:
                self.evaluate(spec, first_progress, stop.is_set)
            finally:
                created.set()

        threading.Thread(target=work, daemon=True, name="fake-eval-worker").start()
        created.wait(10)
        if not run_ids:
            raise EngineError("the fake evaluation wrote no row")
        self.evaluation_stops[run_ids[0]] = stop
        return run_ids[0]

    def cancel_evaluation(self, run_id: int) -> None:
        self.calls.append(f"cancel_evaluation:{run_id}")
        stop = self.evaluation_stops.get(run_id)
        if stop is None:
            raise BadInputError(f"run {run_id} is not running")
        stop.set()

    def activity(self) -> Activity:
        jobs = self.store.list_jobs(statuses=("queued", "running"))
        return Activity(
            evaluations=len(self.store.running_runs()),
            jobs_running=sum(job.status == "running" for job in jobs),
            jobs_queued=sum(job.status == "queued" for job in jobs),
        )

    def training_fields(self) -> list[TrainingField]:
        return list(FAKE_TRAINING_FIELDS)

    def training_command(self, values: FormValues) -> str:
        return training_command_line(values, {f.name: f.default for f in FAKE_TRAINING_FIELDS})

    def launch_job(self, values: FormValues) -> int:
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

    def job_detail(self, job_id: int) -> JobDetail:
        from tunelab.engine.training.job_detail import job_detail

        return job_detail(self.store, job_id, self.log_tail(job_id))

    def run_detail(self, run_id: int) -> RunDetail:
        from tunelab.engine.evaluation.run_detail import run_detail

        return run_detail(self.store, run_id)

    def example_detail(self, comparison: Comparison, row_idx: int) -> ExampleDetail:
        from tunelab.engine.compare.example_detail import example_detail

        return example_detail(self.store, comparison, row_idx)

    def compare_runs(
        self, run_ids: Sequence[int], price_per_gpu_hour: float | None = None
    ) -> Comparison:
        from tunelab.engine.compare.runs import compare_runs

        if len(run_ids) < 2:
            raise BadInputError("pick at least two runs to compare")
        return compare_runs(
            self.store, list(run_ids), shared_rows_only=True, price_per_gpu_hour=price_per_gpu_hour
        )

    def diff_versions(self, ref_a: str, ref_b: str) -> list[str]:
        from tunelab.engine.prompts.text import unified_prompt_diff

        return unified_prompt_diff(
            self.store.get_prompt_version(ref_a), self.store.get_prompt_version(ref_b)
        )

    def diff_words(self, before: str, after: str) -> list[WordDiffSegment]:
        return word_diff(before, after)

    def run_stability(self, run_id: int, limit: int | None = None) -> RunStability:
        from tunelab.engine.evaluation.stability import run_stability

        self.calls.append(f"stability:{run_id}")
        return run_stability(self.store, run_id, limit)

    def robustness_for_run(self, run_id: int) -> RobustnessSummary | None:
        from tunelab.engine.robustness.summary import robustness_for_run

        return robustness_for_run(self.store, run_id)

    def blind_session(self, run_a: int, run_b: int, seed: int = 0) -> BlindSession:
        from tunelab.engine.feedback.preferences import blind_session

        self.calls.append(f"blind:{run_a}:{run_b}:{seed}")
        return blind_session(self.store, run_a, run_b, seed, author="tester")

    def prefer_pair(self, pair: BlindPair, side: str) -> Preference:
        from tunelab.engine.feedback.preferences import prefer_pair

        return prefer_pair(self.store, pair, side, author="tester")

    def preference_tallies(self, run_ids: Sequence[int]) -> list[PreferenceTally]:
        from tunelab.engine.feedback.preferences import preference_tallies

        return preference_tallies(self.store, list(run_ids))

    def metric_trend(self, request: TrendRequest) -> Trend:
        from tunelab.engine.compare.trend import trend_of

        self.calls.append(f"trend:{request.prompt_name or request.job_id}:{request.metric}")
        return trend_of(self.store, request)

    def trend_metrics(self, request: TrendRequest) -> list[str]:
        from tunelab.engine.compare.trend import trend_metrics

        return trend_metrics(self.store, request)

    def robustness_contrast(self, run_ids: Sequence[int]) -> list[str]:
        from tunelab.engine.robustness.contrast import robustness_contrast

        return robustness_contrast(self.store, run_ids)

    def corrections(self, output_id: int) -> list[Correction]:
        return self.store.corrections(output_id)

    def correct_output(self, output_id: int, text: str) -> Correction:
        return self.store.correct_output(output_id, text, author="tester")

    def summarize_curve(self, curve_id: int) -> CurveSummary:
        from tunelab.engine.curves.summary import summarize_curve

        return summarize_curve(self.store, curve_id)

    def latest_curve(
        self, dataset: str | None = None, base_model: str | None = None
    ) -> CurveSummary | None:
        from tunelab.engine.curves.summary import latest_curve

        return latest_curve(self.store, dataset=dataset, base_model=base_model)

    def decision_report(
        self,
        dataset: str | None = None,
        prompt_run: int | None = None,
        finetune_run: int | None = None,
    ) -> DecisionReport:
        from tunelab.engine.report.build import build_report

        return build_report(
            self.store, dataset=dataset, prompt_run=prompt_run, finetune_run=finetune_run
        )

    def output_judgements(self, run_id: int) -> dict[int, Judgement]:
        return self.store.latest_judgements(run_id)

    def sweeps(self) -> list[SweepDetail]:
        from tunelab.engine.sweeps.launch import sweep_detail

        self.calls.append("sweeps")
        return [sweep_detail(self.store, s.id) for s in self.store.list_sweeps()]

    def optimize(
        self,
        request: OptimizeRequest,
        on_progress: Callable[[OptimizeProgress], None],
        should_stop: StopCallback,
    ) -> OptimizeResult:
        self.calls.append(f"optimize:{request.prompt}:{request.budget}:{request.strategy}")
        if self.fail_with is not None:
            raise self.fail_with
        return FakeSearch(self.store).run(request, on_progress, should_stop)

    def search_history(self, seed_ref: str) -> SearchHistory:
        return search_history(self.store, seed_ref)


@dataclass
class FakeSearch:
    """The fake's prompt search: `candidates` child versions of the seed, each "scored" on
    the validation split with a scripted accuracy; the best is labelled `optimized`."""

    store: Store
    scores: tuple[float, ...] = (0.25, 0.75, 0.5)

    def run(
        self,
        request: OptimizeRequest,
        on_progress: Callable[[OptimizeProgress], None],
        should_stop: StopCallback,
    ) -> OptimizeResult:
        seed = self.store.get_prompt_version(request.prompt)
        model = self.store.get_model(request.model)
        dataset = self.store.get_dataset(request.dataset)
        rows = self.store.dataset_rows(dataset.name, request.val_split)
        seed_score = 0.25
        self._scored_run(seed, model.id, dataset.id, request.val_split, rows, seed_score)
        results: list[CandidateResult] = []
        best: tuple[float, str] | None = None
        for number, score in enumerate(self.scores[: request.budget], start=1):
            if should_stop():
                break
            change = f"{number} demos (train rows {number})"
            note = SearchNote(
                seed.ref, change, "accuracy", score, len(rows), len(rows), dataset.name,
                request.val_split,
            )  # fmt: skip
            content = PromptContent(
                template=seed.template, system=f"candidate {number}", mode=seed.mode
            )
            version = self.store.save_prompt_version(
                seed.prompt_name, content, message=note.message(), parent_version_id=seed.id
            ).version
            run_id = self._scored_run(version, model.id, dataset.id, request.val_split, rows, score)
            results.append(
                CandidateResult(version.ref, change, "generate", {len(rows): score}, True)
            )
            best = max(best or (score, version.ref), (score, version.ref))
            evaluation = Evaluation(version.ref, 0, len(rows), score, run_id, False, len(rows))
            on_progress(OptimizeProgress(evaluation, number + 1, number, request.budget, best[0]))
        if best is not None:
            self.store.set_label(best[1], "optimized")
        return OptimizeResult(
            seed.ref, "accuracy", seed_score, results, best[1] if best else None,
            best[0] if best else None, len(results) + 1, 0, (len(results) + 1) * len(rows),
            (len(results) + 1) * len(rows), (len(results) + 1) * len(rows),
            len(results) < min(request.budget, len(self.scores)), [len(rows)],
            [request.val_split],
        )  # fmt: skip

    def _scored_run(
        self,
        version: PromptVersion,
        model_id: int,
        dataset_id: int,
        split: str,
        rows: Sequence[DatasetRow],
        score: float,
    ) -> int:
        run = self.store.create_run(
            version.id, model_id, dataset_id, split, len(rows), {}, metric_names=["accuracy"]
        )
        self.store.add_run_outputs(
            run.id,
            [NewRunOutput(row_idx=row.idx, rendered_prompt="p", output="x", prediction="x",
                          reference="x", scores={"accuracy": score}) for row in rows],
        )  # fmt: skip
        self.store.finish_run(run.id, "succeeded", {"accuracy": score})
        return run.id


def _as_protocol(store: Store) -> EngineProtocol:
    """Never called: mypy checks here that the fake implements every `EngineProtocol` call."""
    return FakeEngine(store)

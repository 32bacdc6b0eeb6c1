"""Scoring candidates: each becomes a prompt version, evaluated through the engine's runs.

Every score comes from `evaluation.run.evaluate` (so through the response cache) on the
first N rows of the validation split, N set by the rung. A finished run of the same version
on the same rows is reused rather than repeated, so a re-run or a resumed search skips what
it already scored; a version with the same content is reused rather than duplicated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tunelab.engine.evaluation.calibrate import measure_calibration
from tunelab.engine.evaluation.request import EvalRequest, StopCheck
from tunelab.engine.evaluation.run import evaluate
from tunelab.engine.optimize.space import Candidate, SearchSpace, candidate_content
from tunelab.engine.prompts.calibration import SETTING as CALIBRATION_SETTING
from tunelab.engine.prompts.search_note import SearchNote
from tunelab.store import (
    Dataset,
    DatasetRow,
    PromptContent,
    PromptVersion,
    Run,
    Store,
    content_hash,
)


@dataclass(frozen=True)
class Evaluation:
    """One scoring of one candidate on one rung."""

    version_ref: str
    rung: int
    rows: int
    score: float
    run_id: int
    reused: bool
    """A finished run of the same version on the same rows was found; nothing was run."""
    generated_rows: int
    """Rows the model scored (not from the cache, not reused)."""


@dataclass
class CandidateScorer:
    """Turns (candidate, rung) into a validation score, saving the candidate as a version."""

    store: Store
    seed: PromptVersion
    dataset: Dataset
    pool: list[DatasetRow]
    space: SearchSpace
    model: str
    model_id: int
    val_split: str
    rung_rows: list[int]
    metric: str
    metrics: list[str]
    batch_size: int = 8
    train_split: str = "train"
    should_stop: StopCheck | None = None
    on_evaluation: Callable[[Evaluation], None] | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    versions: dict[Candidate, PromptVersion] = field(default_factory=dict)
    stopped: bool = False

    def __call__(self, candidate: Candidate, rung: int) -> float | None:
        if self.stopped or (self.should_stop is not None and self.should_stop()):
            self.stopped = True
            return None
        version = self.version_for(candidate)
        evaluation = self.score_version(version, candidate.scoring, rung)
        if evaluation is None:
            return None
        self._write_message(version, candidate, evaluation)
        return evaluation.score

    def version_for(self, candidate: Candidate) -> PromptVersion:
        """The candidate's prompt version: an existing one with its content, else a new
        child of the seed. The scoring mode is not part of a version (runs record it), so
        candidates differing only in scoring share one version."""
        if candidate in self.versions:
            return self.versions[candidate]
        content = candidate_content(
            self.seed, candidate, self.pool, self.dataset, self.space, self.train_split
        )
        if candidate.calibration == "contextual":
            content = self._contextually_calibrated(content)
        digest = content_hash(content)
        existing = [
            v
            for v in self.store.list_prompt_versions(self.seed.prompt_name)
            if v.content_hash == digest
        ]
        if existing:
            version = existing[0]
        else:
            note = SearchNote(self.seed.ref, candidate.describe(self.pool, self.space))
            version = self.store.save_prompt_version(
                self.seed.prompt_name,
                content,
                message=note.message(),
                parent_version_id=self.seed.id,
            ).version
        self.versions[candidate] = version
        return version

    def _contextually_calibrated(self, content: PromptContent) -> PromptContent:
        """The content with its contextual prior: content-free inputs through this very
        prompt (its demonstrations and instruction included), so each candidate has its own."""
        measured = measure_calibration(
            self.store, content, self.dataset, self.val_split, self.model, "contextual"
        )
        settings = {**content.settings, CALIBRATION_SETTING: measured.to_dict()}
        return PromptContent(
            template=content.template,
            system=content.system,
            examples=content.examples,
            mode=content.mode,
            reasoning=content.reasoning,
            settings=settings,
        )

    def score_version(self, version: PromptVersion, scoring: str, rung: int) -> Evaluation | None:
        """Score a version on a rung's rows: a finished run reused, else a new evaluation."""
        rows = self.rung_rows[rung]
        previous = self._finished_run(version, scoring, rows)
        if previous is not None:
            evaluation = Evaluation(
                version.ref, rung, rows, float(previous.metrics[self.metric]), previous.id, True, 0
            )
        else:
            request = EvalRequest(
                prompt=version,
                model=self.model,
                dataset=self.dataset.name,
                split=self.val_split,
                limit=rows,
                scoring=scoring,
                metrics=self.metrics,
                batch_size=self.batch_size,
                latency_probe=0,
            )
            result = evaluate(self.store, request, should_stop=self.should_stop)
            if result.interrupted or self.metric not in result.metrics:
                self.stopped = True
                return None
            evaluation = Evaluation(
                version.ref,
                rung,
                rows,
                float(result.metrics[self.metric]),
                result.run_id,
                False,
                result.new_rows - result.cached_rows,
            )
        self.evaluations.append(evaluation)
        if self.on_evaluation is not None:
            self.on_evaluation(evaluation)
        return evaluation

    def _finished_run(self, version: PromptVersion, scoring: str, rows: int) -> Run | None:
        for run in self.store.list_runs(dataset_id=self.dataset.id, prompt_id=version.prompt_id):
            if (
                run.prompt_version_id == version.id
                and run.model_id == self.model_id
                and run.split == self.val_split
                and run.scoring == scoring
                and run.row_limit == rows
                and run.sample_seed is None
                and run.status == "succeeded"
                and run.rows_done == run.rows_total
                and isinstance(run.metrics.get(self.metric), int | float)
            ):
                return run
        return None

    def _write_message(
        self, version: PromptVersion, candidate: Candidate, evaluation: Evaluation
    ) -> None:
        if version.id == self.seed.id:
            return  # the seed keeps the message its author wrote
        note = SearchNote(
            self.seed.ref,
            candidate.describe(self.pool, self.space),
            self.metric,
            evaluation.score,
            evaluation.rows,
            self.rung_rows[-1],
            self.dataset.name,
            self.val_split,
        )
        self.store.set_version_message(version.id, note.message())

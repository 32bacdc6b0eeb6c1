"""Running a robustness suite: the clean run's prompt version and model re-run on perturbed
copies of its rows and with small changes to its prompt, each paired with the clean run.

Everything that can be refused is refused before anything is written: the run must have
finished, its rows must still be stored, every perturbation must exist with a parameter in
range and every prompt variant must apply. Then the derived datasets and child versions are
stored, the suite and its items in one transaction, and each perturbed run is evaluated in
the foreground through `evaluation.run.evaluate` (so the response cache and resuming apply).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.evaluation.request import EvalProgress, EvalRequest, StopCheck
from tunelab.engine.evaluation.run import evaluate, refresh_run_states
from tunelab.engine.prompts.templates import FewShotConfig, variables_of
from tunelab.engine.robustness.derived import DerivedRows, derive_rows, store_derived
from tunelab.engine.robustness.perturb import (
    INPUT_PERTURBATIONS,
    InputPerturbation,
    check_fraction,
    parse_input_perturbation,
)
from tunelab.engine.robustness.prompt_variants import (
    PromptVariant,
    parse_prompt_variants,
    prompt_variants,
)
from tunelab.engine.robustness.records import RobustnessSummary
from tunelab.engine.robustness.summary import summarize_suite
from tunelab.store import (
    Dataset,
    DatasetRow,
    NewRobustnessItem,
    NewSplit,
    PromptVersion,
    RobustnessItem,
    Run,
    Store,
    content_hash,
)

DEFAULT_PERTURBATIONS = tuple(INPUT_PERTURBATIONS)


@dataclass
class RobustnessRequest:
    """What a suite perturbs.

    Args:
        run_id: the clean run; it must have finished.
        perturbations: input perturbations, each `NAME` or `NAME:VALUE` (`typos:0.1`,
            `case:upper`, `truncate:0.3`); empty with no prompt variants: all of them.
        rate: the typo rate (fraction of letters), unless `typos:VALUE` names one.
        seed: seeds every perturbation; the same seed gives byte-identical perturbed rows.
        prompt_variants: `paraphrase=FILE`, `label_order`, `shot_order`.
        metric: the metric whose drop is reported; default the run's first metric.
        batch_size: rows generated together in each perturbed run.
        confidence: level of the paired intervals.
    """

    run_id: int
    perturbations: list[str] = field(default_factory=list)
    rate: float = 0.05
    seed: int = 0
    prompt_variants: list[str] = field(default_factory=list)
    metric: str | None = None
    batch_size: int = 8
    confidence: float = 0.95

    def __post_init__(self) -> None:
        check_fraction(self.rate, "the rate")
        if not 0 < self.confidence < 1:
            raise BadInputError(f"the confidence level is between 0 and 1, not {self.confidence}")
        if self.batch_size < 1:
            raise BadInputError(f"batch size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class SuiteProgress:
    """Which perturbation is running (1-based of `total`) and how far its run is."""

    position: int
    total: int
    perturbation: str
    detail: str
    eval: EvalProgress


@dataclass(frozen=True)
class _Planned:
    perturbation: str
    kind: str
    detail: str
    derived_rows: DerivedRows | None = None
    variant: PromptVariant | None = None


def _finished_run(store: Store, run_id: int) -> Run:
    refresh_run_states(store)  # a killed run reads 'interrupted', not 'running'
    run = store.get_run(run_id)
    if run.status != "succeeded" or run.rows_done < run.rows_total:
        raise BadInputError(
            f"run {run.id} is {run.status} ({run.rows_done} of {run.rows_total} rows); a suite "
            "perturbs a finished run: wait for it or finish it with "
            f"`tunelab eval --resume {run.id}`"
        )
    return run


def _clean_rows(store: Store, run: Run, dataset: Dataset) -> list[DatasetRow]:
    """The clean run's rows as stored now; refused when any is gone or was replaced."""
    outputs = store.run_outputs(run.id)
    indices = sorted(o.row_idx for o in outputs)
    gone = BadInputError(
        f"run {run.id}'s rows are gone from dataset {dataset.name!r} split {run.split!r}; "
        "re-add the data under a new name and evaluate it, then perturb that run"
    )
    if run.split not in dataset.split_names:
        raise gone
    rows = store.dataset_rows(dataset.name, run.split, indices=indices)
    stored_ids = {o.row_idx: o.row_id for o in outputs}
    if len(rows) != len(indices) or any(
        stored_ids[r.idx] is not None and stored_ids[r.idx] != r.id for r in rows
    ):
        raise gone
    return rows


def _input_columns(version: PromptVersion, dataset: Dataset, rows: list[DatasetRow]) -> list[str]:
    """The columns a perturbation may touch: the dataset's inputs (else the template's
    variables), never its reference."""
    columns = list(dataset.input_columns) or sorted(
        set(variables_of(version.template)) & set(rows[0].data if rows else {})
    )
    columns = [c for c in columns if c != dataset.reference_column]
    if not columns:
        raise BadInputError(
            f"dataset {dataset.name!r} names no input columns to perturb; re-add it with --input"
        )
    return columns


def _fewshot_splits(
    store: Store, version: PromptVersion, dataset: Dataset, split: str
) -> list[NewSplit]:
    """The split drawn few-shot examples come from, copied unperturbed into each derived
    dataset so the perturbed run shows the same demonstrations."""
    fewshot = FewShotConfig.from_settings(version.settings)
    if not fewshot.k:
        return []
    if fewshot.split == split:
        raise BadInputError(
            f"prompt {version.ref} draws its few-shot examples from {split!r}, the split the "
            "run evaluates; perturbing it would change the demonstrations too"
        )
    split_record = dataset.split(fewshot.split)
    rows = [r.data for r in store.dataset_rows(dataset.name, fewshot.split)]
    return [NewSplit(fewshot.split, rows, split_record.fingerprint)]


def _metric(run: Run, wanted: str | None) -> str:
    numeric = [m for m in run.metric_names if isinstance(run.metrics.get(m), int | float)]
    if wanted is None:
        if not numeric:
            raise BadInputError(f"run {run.id} has no metric to measure a drop on")
        return numeric[0]
    if wanted not in numeric:
        raise BadInputError(
            f"run {run.id} has no metric {wanted!r}; choose from {', '.join(numeric) or 'none'}"
        )
    return wanted


def _plan(store: Store, request: RobustnessRequest, run: Run) -> list[_Planned]:
    specs = list(request.perturbations)
    if not specs and not request.prompt_variants:
        specs = list(DEFAULT_PERTURBATIONS)
    inputs: list[InputPerturbation] = [parse_input_perturbation(s, request.rate) for s in specs]
    names = [p.name for p in inputs]
    if len(set(names)) != len(names):
        raise BadInputError("a perturbation is named twice; name each once")
    variant_specs = parse_prompt_variants(request.prompt_variants)
    version = store.get_prompt_version(run.prompt_ref)
    dataset = store.get_dataset_by_id(run.dataset_id)
    rows = _clean_rows(store, run, dataset)
    planned: list[_Planned] = []
    if inputs:
        columns = _input_columns(version, dataset, rows)
        extra = _fewshot_splits(store, version, dataset, run.split)
        for perturbation in inputs:
            derived = derive_rows(run, dataset, rows, columns, perturbation, request.seed, extra)
            planned.append(_Planned(perturbation.name, "input", derived.detail, derived))
    for variant in prompt_variants(version, variant_specs, list(dataset.labels), request.seed):
        planned.append(_Planned(variant.perturbation, "prompt", variant.detail, variant=variant))
    return planned


def _child_version(store: Store, parent: PromptVersion, variant: PromptVariant, run: Run) -> int:
    """The variant as a child of the clean run's version; an identical one is reused."""
    digest = content_hash(variant.content)
    for existing in store.list_prompt_versions(parent.prompt_name):
        if existing.content_hash == digest:
            return existing.id
    saved = store.save_prompt_version(
        parent.prompt_name,
        variant.content,
        message=f"robustness of run {run.id}: {variant.detail}",
        parent_version_id=parent.id,
    )
    return saved.version.id


def run_suite(
    store: Store,
    request: RobustnessRequest,
    on_progress: Callable[[SuiteProgress], None] | None = None,
    should_stop: StopCheck | None = None,
) -> RobustnessSummary:
    """Perturb a finished run and re-run it once per perturbation; returns the summary.

    Raises:
        BadInputError: an unfinished run, rows that are gone, an unknown perturbation or
            variant, a parameter out of range; nothing is stored then.
    """
    run = _finished_run(store, request.run_id)
    metric = _metric(run, request.metric)
    planned = _plan(store, request, run)
    version = store.get_prompt_version(run.prompt_ref)
    items: list[NewRobustnessItem] = []
    for plan in planned:
        if plan.derived_rows is not None:
            dataset = store_derived(store, plan.derived_rows)
            items.append(NewRobustnessItem(plan.perturbation, "input", plan.detail, dataset.id))
        else:
            assert plan.variant is not None
            child = _child_version(store, version, plan.variant, run)
            items.append(
                NewRobustnessItem(plan.perturbation, "prompt", plan.detail, prompt_version_id=child)
            )
    settings = {
        "perturbations": list(request.perturbations),
        "rate": request.rate,
        "prompt_variants": [_resolved(v) for v in request.prompt_variants],
        "confidence": request.confidence,
    }
    suite = store.add_robustness_suite(run.id, request.seed, metric, settings, items)
    stop = should_stop or (lambda: False)
    try:
        for position, item in enumerate(suite.items, start=1):
            place = (position, len(suite.items))
            if stop() or _evaluate_item(store, run, request, item, place, on_progress, stop):
                stopped = store.finish_robustness_suite(suite.id, "interrupted", "stopped early")
                return summarize_suite(store, stopped)
    except KeyboardInterrupt:
        store.finish_robustness_suite(suite.id, "interrupted", "interrupted")
        raise
    except Exception as exc:
        store.finish_robustness_suite(suite.id, "failed", _one_line(exc))
        raise
    finished = store.finish_robustness_suite(suite.id, "finished")
    return summarize_suite(store, finished)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _resolved(spec: str) -> str:
    """A paraphrase spec with its file's absolute path, so the suite says which file."""
    name, sep, raw = spec.partition("=")
    return f"{name}={Path(raw.strip()).expanduser().resolve()}" if sep else spec


def _evaluate_item(
    store: Store,
    run: Run,
    suite_request: RobustnessRequest,
    item: RobustnessItem,
    place: tuple[int, int],
    on_progress: Callable[[SuiteProgress], None] | None,
    stop: StopCheck,
) -> bool:
    """Evaluate one perturbation like the clean run; True when it was stopped part way."""
    is_sample = run.sample_seed is not None
    if item.kind == "input":
        assert item.dataset_id is not None
        dataset = store.get_dataset_by_id(item.dataset_id).name
        limit, sample, seed = None, None, 0  # the derived dataset holds exactly the run's rows
        prompt: str | PromptVersion = run.prompt_ref
    else:
        assert item.prompt_version_id is not None
        dataset = run.dataset_name
        limit = None if is_sample else run.row_limit
        sample = run.row_limit if is_sample else None
        seed = run.sample_seed or 0
        prompt = store.get_prompt_version_by_id(item.prompt_version_id)
    request = EvalRequest(
        prompt=prompt,
        model=run.model_name,
        dataset=dataset,
        split=run.split,
        limit=limit,
        sample=sample,
        seed=seed,
        settings=dict(run.settings),
        scoring=run.scoring,
        metrics=list(run.metric_names),
        batch_size=suite_request.batch_size,
        latency_probe=0,
    )
    recorded: list[int] = []

    def report(progress: EvalProgress) -> None:
        if progress.run_id and not recorded:
            # The item points at its run from the first progress on, so a summary read while
            # the suite runs (or after a crash) finds the rows scored so far.
            store.set_robustness_item_run(item.id, progress.run_id)
            recorded.append(progress.run_id)
        if on_progress is not None:
            on_progress(SuiteProgress(*place, item.perturbation, item.detail, progress))

    result = evaluate(store, request, report, stop)
    store.set_robustness_item_run(item.id, result.run_id)
    if result.run.status == "failed":
        raise EngineError(f"the {item.perturbation} run {result.run_id} failed: {result.run.error}")
    return result.interrupted

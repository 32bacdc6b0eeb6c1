"""The evaluation spec: everything a remote evaluation worker needs, without the database.

At submit time the front end prepares the plan as a local run does, then writes
`eval-spec.json` (prompt version, model record and where its weights are, dataset record,
the run's rows, settings, scoring, metrics, calibration) and the dataset's splits
(`rows-<split>.jsonl`, which few-shot and retrieved examples draw from) into the job folder.
`plan_from_spec` turns it back into the `EvalPlan` the run loop's scoring functions take,
and `SpecRowStore` serves the few store calls rendering and scoring make.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.data.exported import (
    ExportedRows,
    export_splits,
    read_spec_file,
    record_from_dict,
    write_json_atomically,
)
from tunelab.engine.errors import BadInputError
from tunelab.store import CachedResponse, Dataset, DatasetRow, Model, PromptVersion, Split

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tunelab.engine.evaluation.plan import EvalPlan
    from tunelab.engine.models.loading import ModelRef
    from tunelab.store import Run, Store

EVAL_SPEC_FILE = "eval-spec.json"


@dataclass(frozen=True)
class EvalSpec:
    """What a remote worker evaluates, and where it reports.

    Args:
        run_id: the run in the store the worker's events fill in.
        model_ref: where the model's weights (and adapter) live, resolved at submit time.
        row_indices: the rows of `split` the run covers.
        splits: the exported splits, by name, as files in the job folder.
        folder: the job folder (events, stop file).
        scheduler: the scheduler's submission options (kept for resubmission).
        done_rows: the rows a resubmitted worker skips (the run already holds them).
    """

    run_id: int
    job_id: int
    version: PromptVersion
    model: Model
    model_ref: dict[str, Any]
    dataset: Dataset
    split: str
    row_indices: list[int]
    settings: dict[str, Any]
    scoring: str
    metrics: list[str]
    use_cache: bool
    batch_size: int
    row_limit: int | None
    sample_seed: int | None
    calibration_prior: list[float] | None
    splits: dict[str, str]
    folder: str
    stop_file: str
    scheduler: dict[str, Any]
    done_rows: list[int] = field(default_factory=list)
    """Rows a resubmitted worker skips: the run already holds them."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_done_rows(self, done: Iterable[int]) -> EvalSpec:
        """The spec again, for a worker that scores only the rows the run still lacks."""
        return replace(self, done_rows=sorted(set(done) & set(self.row_indices)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSpec:
        dataset = dict(data["dataset"])
        dataset["splits"] = [Split(**s) for s in dataset.get("splits", [])]
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["version"] = record_from_dict(PromptVersion, data["version"])
        values["model"] = record_from_dict(Model, data["model"])
        values["dataset"] = record_from_dict(Dataset, dataset)
        return cls(**values)

    def ref(self) -> ModelRef:
        """The model's weights as `load_ref` takes them."""
        return _ref(self.model_ref)


def _ref(data: dict[str, Any]) -> ModelRef:
    from tunelab.engine.models.loading import ModelRef

    base = data.get("base")
    return ModelRef(str(data["name"]), str(data["source"]), str(data["kind"]),
                    str(data["path"]), _ref(base) if base else None)  # fmt: skip


def refuse_remote(plan: EvalPlan, samples: int) -> None:
    """Refuse what a worker without the database cannot do, before anything is stored."""
    from tunelab.engine.models.endpoint import is_endpoint

    reason = ""
    if is_endpoint(plan.model):
        reason = f"model {plan.model.name!r} is an endpoint; evaluate it from this machine"
    elif samples > 1:
        reason = "--samples above 1 runs on this machine only"
    elif plan.calibration is not None and plan.calibration.per_run:
        reason = "a per-run calibration measures its prior in one pass on this machine"
    elif plan.case_judge is not None:
        reason = "judge assertions ask a workspace judge model; run these cases here"
    if reason:
        raise BadInputError(f"cannot evaluate on Slurm: {reason} (drop --on slurm)")


def write_eval_spec(
    store: Store,
    plan: EvalPlan,
    run: Run,
    job_id: int,
    folder: Path,
    stop_file: Path,
    batch_size: int,
    scheduler: dict[str, Any],
) -> Path:
    """Export the run's inputs into the job folder and write `eval-spec.json`; returns its
    path. Nothing in it points at the database: the worker never opens it."""
    from tunelab.engine.models.loading import model_ref

    exported = export_splits(store, plan.dataset.name, plan.dataset.split_names, folder)
    spec = EvalSpec(
        run_id=run.id,
        job_id=job_id,
        version=plan.version,
        model=plan.model,
        model_ref=asdict(model_ref(store, plan.model)),
        dataset=plan.dataset,
        split=plan.split,
        row_indices=[row.idx for row in plan.rows],
        settings=plan.settings_dict,
        scoring=plan.scoring,
        metrics=[m.name for m in plan.metrics],
        use_cache=plan.cacheable and plan.use_cache,
        batch_size=batch_size,
        row_limit=plan.row_limit,
        sample_seed=plan.sample_seed,
        calibration_prior=plan.calibration_prior,
        splits=exported,
        folder=str(folder),
        stop_file=str(stop_file),
        scheduler=scheduler,
    )
    path = folder / EVAL_SPEC_FILE
    write_json_atomically(path, spec.to_dict())
    return path


def read_eval_spec(path: Path) -> EvalSpec:
    return read_spec_file(path, "the evaluation spec", EvalSpec.from_dict)


def plan_from_spec(spec: EvalSpec, rows: SpecRowStore) -> EvalPlan:
    """The plan `prepare` made at submit time, rebuilt from the spec alone."""
    from tunelab.engine.data.cases import is_cases_dataset
    from tunelab.engine.evaluation.answers import RULE_SETTING, parse_rule
    from tunelab.engine.evaluation.metrics import get_metric
    from tunelab.engine.evaluation.plan import EvalPlan
    from tunelab.engine.prompts.calibration import Calibration
    from tunelab.engine.prompts.settings import GenerationSettings

    dataset, version = spec.dataset, spec.version
    reference_rule = parse_rule(dataset.answer_rule) if dataset.answer_rule else None
    own_rule = version.settings.get(RULE_SETTING)
    return EvalPlan(
        version=version,
        model=spec.model,
        dataset=dataset,
        split=spec.split,
        rows=rows.dataset_rows(dataset.name, spec.split, indices=spec.row_indices),
        settings=GenerationSettings.from_dict(spec.settings),
        settings_dict=dict(spec.settings),
        scoring=spec.scoring,
        metrics=[get_metric(name) for name in spec.metrics],
        cacheable=spec.use_cache,
        use_cache=spec.use_cache,
        row_limit=spec.row_limit,
        sample_seed=spec.sample_seed,
        output_rule=parse_rule(str(own_rule)) if own_rule else reference_rule,
        reference_rule=reference_rule,
        calibration=Calibration.from_settings(version.settings),
        calibration_prior=spec.calibration_prior,
        cases=is_cases_dataset(dataset),
    )


class SpecRowStore:
    """The store calls rendering and scoring make, served from the spec's exported rows.

    The response cache is the workspace's, on the front end: here no response is found, and
    the fresh ones are kept until `take_fresh` hands them to the next `outputs` event.
    """

    def __init__(self, spec: EvalSpec) -> None:
        self.spec = spec
        self._exported = ExportedRows(spec.folder, spec.splits, "the evaluation spec")
        self._fresh: dict[str, CachedResponse] = {}

    def dataset_rows(
        self,
        dataset: str,
        split: str,
        indices: Iterable[int] | None = None,
        limit: int | None = None,
    ) -> list[DatasetRow]:
        return self._exported.dataset_rows(dataset, split, indices, limit)

    def cached_responses(self, keys: Iterable[str]) -> dict[str, CachedResponse]:
        return {}

    def cache_responses(self, entries: dict[str, CachedResponse]) -> None:
        self._fresh.update(entries)

    def take_fresh(self) -> dict[str, dict[str, Any]]:
        """The responses computed since the last call, as event data by cache key."""
        fresh, self._fresh = self._fresh, {}
        return {key: asdict(value) for key, value in fresh.items()}

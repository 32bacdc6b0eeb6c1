"""The job spec: everything a remote worker needs, written into the job folder at submit time.

A worker on a compute node reads its base model record, dataset record, prompt version,
config and the dataset rows it trains on from `spec.json` and `rows-<split>.jsonl`, never
from the store. `SpecStore` gives the training loop the few store calls it makes, reading
from the spec and reporting every write (checkpoints, the best one) as a file event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.data.exported import (
    ExportedRows,
    export_splits,
    read_spec_file,
    record_from_dict,
    write_json_atomically,
)
from tunelab.engine.errors import EngineError
from tunelab.store import Dataset, DatasetRow, Model, PromptVersion, Split

if TYPE_CHECKING:
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.engine.training.job_events import EventWriter
    from tunelab.store import Job, Store

SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class JobSpec:
    """What a remote worker trains, and where it writes.

    Args:
        folder: the job folder (events, stop file); `output_dir` holds the checkpoints.
        splits: the exported splits, by name, as files in the job folder.
        scheduler: the scheduler's submission options (kept for resubmission).
    """

    job_id: int
    config: dict[str, Any]
    base: Model
    dataset: Dataset
    prompt_version: PromptVersion
    folder: str
    output_dir: str
    stop_file: str
    splits: dict[str, str]
    scheduler: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        dataset = dict(data["dataset"])
        dataset["splits"] = [Split(**s) for s in dataset.get("splits", [])]
        return cls(
            job_id=int(data["job_id"]),
            config=dict(data["config"]),
            base=record_from_dict(Model, data["base"]),
            dataset=record_from_dict(Dataset, dataset),
            prompt_version=record_from_dict(PromptVersion, data["prompt_version"]),
            folder=str(data["folder"]),
            output_dir=str(data["output_dir"]),
            stop_file=str(data["stop_file"]),
            splits=dict(data["splits"]),
            scheduler=dict(data.get("scheduler") or {}),
        )


def splits_needed(dataset: Dataset, config: TrainingConfig, version: PromptVersion) -> list[str]:
    """The splits training reads: train, validation (chosen as the loop does), few-shot."""
    from tunelab.engine.prompts.templates import FewShotConfig
    from tunelab.engine.training.data import VAL_SPLIT_NAMES

    val = config.val_split or next(
        (n for n in VAL_SPLIT_NAMES if n in dataset.split_names and n != config.train_split), ""
    )
    shots = FewShotConfig.from_settings(version.settings)
    wanted = [config.train_split, val, shots.split if shots.k else ""]
    return [s for s in dict.fromkeys(wanted) if s and s in dataset.split_names]


def write_spec(
    store: Store, job: Job, folder: Path, stop_file: Path, scheduler: dict[str, Any]
) -> Path:
    """Export the job's inputs into its folder and write `spec.json`; returns its path.

    A built-in or GGUF base model is resolved here to the model folder it loads from, so
    the compute node needs no model cache of its own (only the shared filesystem).
    """
    from tunelab.engine.models.loading import model_ref
    from tunelab.engine.training.config import TrainingConfig

    assert job.base_model_id and job.dataset_id and job.prompt_version_id
    base = store.get_model_by_id(job.base_model_id)
    if base.source in ("builtin", "gguf"):
        base = replace(base, source="hf_folder", path=model_ref(store, base).path)
    dataset = store.get_dataset_by_id(job.dataset_id)
    version = store.get_prompt_version_by_id(job.prompt_version_id)
    config = TrainingConfig.from_dict(job.config)
    exported = export_splits(store, dataset.name, splits_needed(dataset, config, version), folder)
    spec = JobSpec(
        job.id, job.config, base, dataset, version, str(folder), job.output_dir,
        str(stop_file), exported, scheduler,
    )  # fmt: skip
    path = folder / SPEC_FILE
    write_json_atomically(path, spec.to_dict())
    return path


def read_spec(path: Path) -> JobSpec:
    return read_spec_file(path, "the job spec", JobSpec.from_dict)


class SpecStore:
    """The store calls the training loop makes, served from a job spec.

    Reads come from the spec and the exported rows. Checkpoints, the best checkpoint and
    metric updates become events; a checkpoint's id here is minus its step (the store gives
    it a real id when the event is ingested).
    """

    def __init__(self, spec: JobSpec, events: EventWriter | None) -> None:
        self.spec = spec
        self.events = events
        self._exported = ExportedRows(spec.folder, spec.splits, "the job spec")

    def get_model_by_id(self, model_id: int) -> Model:
        if model_id != self.spec.base.id:
            raise EngineError(f"model {model_id} is not in the job spec")
        return self.spec.base

    def get_dataset_by_id(self, dataset_id: int) -> Dataset:
        return self.spec.dataset

    def get_prompt_version_by_id(self, version_id: int) -> PromptVersion:
        return self.spec.prompt_version

    def dataset_rows(
        self, dataset: str, split: str, indices: Any = None, limit: int | None = None
    ) -> list[DatasetRow]:
        return self._exported.dataset_rows(dataset, split, indices, limit)

    def add_model(self, new: Any, exist_ok: bool = False) -> Model:
        if self.events is not None:
            self.events.write("checkpoint", model=asdict(new))
        return record_from_dict(Model, {**asdict(new), "id": -int(new.step or 0)})  # type: ignore[no-any-return]

    def mark_best_model(self, job_id: int, model_id: int) -> None:
        if self.events is not None:
            self.events.write("best", step=-model_id)

    def update_model_metrics(self, model_id: int, metrics: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.write("model_metrics", step=-model_id, metrics=metrics)

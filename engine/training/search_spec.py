"""The search spec: what a prompt search on a compute node needs, without the database.

A search job on Slurm (kind `optimize`, submitted by `optimize/remote.py`) gets
`search-spec.json` in its job folder: the request (the job's config), every version of the
seed's prompt (so the worker numbers new candidates as the workspace would), the dataset
record with its train and validation splits exported as `rows-<split>.jsonl` (never `test`),
the model records the search and its proposer load (adapters with their bases), the finished
runs of those versions the search may reuse, and where to report. A resubmission writes it
again, so a resumed search reuses what the earlier allocation scored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.data.exported import (
    export_splits,
    read_spec_file,
    record_from_dict,
    write_json_atomically,
)

if TYPE_CHECKING:
    from tunelab.store import Job, Model, Run, Store

SEARCH_KIND = "optimize"
"""The job kind of a prompt search (`optimize/job.py`'s `KIND`), queued or on Slurm."""
SEARCH_SPEC_FILE = "search-spec.json"
SEARCH_WORKER_MODULE = "tunelab.engine.optimize.remote_worker"


@dataclass(frozen=True)
class SearchSpec:
    """A search as a worker without the database runs it.

    Args:
        request: the search request, as the job's config holds it.
        versions: every version of the seed's prompt, in version order (record dicts).
        dataset: the dataset record; `splits` its exported splits, by name.
        models: model records, each base before the adapters on it.
        model_names: the record names of the search's `model` and `proposer`.
        runs: finished runs of the prompt's versions on the search's split and model, each
            with its `version` number and `outputs`, for the search to reuse.
        scheduler: the scheduler's submission options (kept for resubmission).
    """

    job_id: int
    request: dict[str, Any]
    prompt_name: str
    versions: list[dict[str, Any]]
    dataset: dict[str, Any]
    splits: dict[str, str]
    models: list[dict[str, Any]]
    model_names: dict[str, str]
    folder: str
    stop_file: str
    scheduler: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _model_chain(store: Store, model: Model) -> list[Model]:
    chain = [model]
    while chain[0].base_model_id is not None:
        chain.insert(0, store.get_model_by_id(chain[0].base_model_id))
    return chain


def _reusable_runs(store: Store, job: Job, val_split: str) -> list[Run]:
    """Finished, complete runs of the prompt's versions on the search's split and model."""
    assert job.prompt_version_id is not None
    seed = store.get_prompt_version_by_id(job.prompt_version_id)
    return [
        r
        for r in store.list_runs(dataset_id=job.dataset_id, prompt_id=seed.prompt_id,
                                 model_id=job.base_model_id)
        if r.split == val_split and r.status == "succeeded" and r.rows_done == r.rows_total
        and r.sample_seed is None and r.samples == 1
    ]  # fmt: skip


def _run_record(store: Store, run: Run, version: int) -> dict[str, Any]:
    skip = {"id", "run_id", "created_at", "rating"}
    outputs = [
        {k: v for k, v in asdict(o).items() if k not in skip} for o in store.run_outputs(run.id)
    ]
    return {"id": run.id, "version": version, "scoring": run.scoring, "row_limit": run.row_limit,
            "settings": run.settings, "metric_names": run.metric_names,
            "rows_total": run.rows_total, "metrics": run.metrics, "device": run.device,
            "outputs": outputs}  # fmt: skip


def write_search_spec(
    store: Store, job: Job, folder: Path, stop_file: Path, scheduler: dict[str, Any]
) -> Path:
    """Export what the search job reads into its folder and write `search-spec.json`;
    returns its path. Nothing in it points at the database: the worker never opens it."""
    from tunelab.engine.evaluation.plan import resolve_model_arg

    config = dict(job.config)
    assert job.prompt_version_id is not None and job.dataset_id is not None
    assert job.base_model_id is not None
    seed = store.get_prompt_version_by_id(job.prompt_version_id)
    dataset = store.get_dataset_by_id(job.dataset_id)
    model = store.get_model_by_id(job.base_model_id)
    proposer = model
    if int(config.get("propose_instructions") or 0):
        proposer = resolve_model_arg(store, str(config.get("proposer") or "builtin"))
    models: dict[int, Model] = {}
    for record in (*_model_chain(store, model), *_model_chain(store, proposer)):
        models.setdefault(record.id, record)
    read = [s for s in (config.get("train_split"), config.get("val_split")) if s]
    splits = [s for s in dict.fromkeys(read) if s in dataset.split_names]
    versions = store.list_prompt_versions(seed.prompt_name)
    numbers = {v.id: v.version for v in versions}
    runs = [
        _run_record(store, run, numbers[run.prompt_version_id])
        for run in _reusable_runs(store, job, str(config.get("val_split", "")))
    ]
    shown = asdict(dataset)
    shown["splits"] = [s for s in shown["splits"] if s["name"] in splits]
    spec = SearchSpec(
        job_id=job.id,
        request=config,
        prompt_name=seed.prompt_name,
        versions=[asdict(v) for v in versions],
        dataset=shown,
        splits=export_splits(store, dataset.name, splits, folder),
        models=[asdict(m) for m in models.values()],
        model_names={"model": model.name, "proposer": proposer.name},
        folder=str(folder),
        stop_file=str(stop_file),
        scheduler=scheduler,
        runs=sorted(runs, key=lambda r: int(r["id"])),
    )
    path = folder / SEARCH_SPEC_FILE
    write_json_atomically(path, spec.to_dict())
    return path


def read_search_spec(path: Path) -> SearchSpec:
    return read_spec_file(path, "the search spec", partial(record_from_dict, SearchSpec))

"""The remote search worker: `python -m tunelab.engine.optimize.remote_worker SPEC`.

Runs on a compute node (the batch script starts it under `srun`). It never opens the
workspace database: it fills a private scratch store (a temporary SQLite file on the node,
`Store(None)`) from the search spec (the prompt's versions, the dataset's train and
validation rows, the model records, the finished runs to reuse), runs the ordinary
`optimize` on it, and appends what the search writes there (`version`, `message`, `run`,
`label`) with `progress`, then `finished` or `failed`, to the job folder as events. So the
search is the same code as a local one, and the front ends replay its writes. SIGTERM (a
`scancel`, a time limit) or the stop file stops it after the current evaluation.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunelab.engine.data.exported import ExportedRows, record_from_dict
from tunelab.engine.optimize.job import SearchJobProgress, request_from_config
from tunelab.engine.optimize.search import OptimizeProgress, optimize
from tunelab.engine.optimize.worker import result_message
from tunelab.engine.training.job_events import EventWriter
from tunelab.engine.training.remote_worker_life import report_failure, report_stopped, start_worker
from tunelab.engine.training.search_spec import SearchSpec, read_search_spec
from tunelab.store import (
    CachedResponse,
    Model,
    NewDataset,
    NewModel,
    NewRunOutput,
    NewSplit,
    PromptContent,
    PromptVersion,
    Run,
    SaveResult,
    Store,
)


class ReportingStore(Store):
    """A scratch store that reports the search's writes as job-folder events.

    Nothing is reported until `report_to` is called, so filling it from the spec is silent.
    """

    def __init__(self) -> None:
        super().__init__(None)
        self.events: EventWriter | None = None
        self._fresh: dict[str, CachedResponse] = {}
        self._exported: set[int] = set()

    def report_to(self, events: EventWriter) -> None:
        self.events = events
        self._fresh.clear()
        self._exported = {row["id"] for row in self._query("SELECT id FROM prompt_versions")}

    def identity(self, version: PromptVersion) -> dict[str, Any]:
        """How an event names a version: its ref and content hash, and, for one copied from
        the workspace, its number there (the same here), which tells apart equal contents."""
        exported = version.id in self._exported
        return {"ref": version.ref, "hash": version.content_hash,
                "number": version.version if exported else None}  # fmt: skip

    def take_fresh(self) -> dict[str, dict[str, Any]]:
        """The responses computed since the last call, as event data by cache key."""
        fresh, self._fresh = self._fresh, {}
        return {key: asdict(value) for key, value in fresh.items()}

    def save_prompt_version(
        self,
        name: str,
        content: PromptContent,
        message: str = "",
        description: str | None = None,
        parent_version_id: int | None = None,
    ) -> SaveResult:
        saved = super().save_prompt_version(name, content, message, description,
                                            parent_version_id)  # fmt: skip
        if self.events is not None and saved.created:
            self.events.write("version", content=asdict(content), message=message,
                              **self.identity(saved.version))  # fmt: skip
        return saved

    def set_version_message(self, version_id: int, message: str) -> None:
        super().set_version_message(version_id, message)
        if self.events is not None:
            version = self.get_prompt_version_by_id(version_id)
            self.events.write("message", message=message, **self.identity(version))

    def set_label(self, ref: str, label: str) -> tuple[PromptVersion, int | None]:
        version, previous = super().set_label(ref, label)
        if self.events is not None:
            self.events.write("label", label=label, **self.identity(version))
        return version, previous

    def cache_responses(self, entries: dict[str, CachedResponse]) -> None:
        super().cache_responses(entries)
        self._fresh.update(entries)

    def finish_run(
        self,
        run_id: int,
        status: str,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Run:
        run = super().finish_run(run_id, status, metrics, error)
        if self.events is not None:
            version = self.get_prompt_version_by_id(run.prompt_version_id)
            skip = {"id", "run_id", "created_at", "rating"}
            outputs = [
                {k: v for k, v in asdict(o).items() if k not in skip}
                for o in self.run_outputs(run.id)
            ]
            self.events.write(
                "run", **self.identity(version), model=run.model_name,
                split=run.split, rows_total=run.rows_total, settings=run.settings,
                scoring=run.scoring, metric_names=run.metric_names, row_limit=run.row_limit,
                sample_seed=run.sample_seed, samples=run.samples, status=run.status,
                metrics=run.metrics, error=run.error, device=run.device, outputs=outputs,
                responses=self.take_fresh(),
            )  # fmt: skip
        return run


def fill_scratch(store: Store, spec: SearchSpec) -> None:
    """Put what the spec exported into an empty scratch store: the dataset's exported splits
    (rows in order, so indices match), the models (bases first), the prompt's versions (in
    order, so a new candidate gets the number the workspace would give it) and the runs to
    reuse."""
    dataset = dict(spec.dataset)
    rows = ExportedRows(spec.folder, spec.splits, "the search spec")
    splits = [
        NewSplit(s["name"], [r.data for r in sorted(rows.dataset_rows(dataset["name"], s["name"]),
                                                    key=lambda r: r.idx)], s["fingerprint"])
        for s in dataset["splits"]
    ]  # fmt: skip
    copied = store.add_dataset(
        NewDataset(
            dataset["name"], dataset["source"], dataset["fingerprint"], splits,
            dataset["task"], list(dataset["input_columns"]), dataset["reference_column"],
            list(dataset["labels"]), list(dataset["metrics"]), dataset.get("card", ""),
            dataset.get("answer_rule"),
        )
    )  # fmt: skip
    model_ids: dict[int, int] = {}
    for data in spec.models:
        model = record_from_dict(Model, data)
        new = NewModel(
            model.name, model.kind, model.source, model.path,
            model_ids.get(model.base_model_id) if model.base_model_id is not None else None,
            model.method, training_config=model.training_config, step=model.step,
            metrics=model.metrics, size_bytes=model.size_bytes, fingerprint=model.fingerprint,
        )  # fmt: skip
        model_ids[model.id] = store.add_model(new, exist_ok=True).id
    version_ids: dict[int, int] = {}
    by_number: dict[int, PromptVersion] = {}
    for data in spec.versions:
        version = record_from_dict(PromptVersion, data)
        content = PromptContent(version.template, version.system, version.examples,
                                version.mode, version.reasoning, version.settings)  # fmt: skip
        parent = version_ids.get(version.parent_version_id or -1)
        saved = store.save_prompt_version(spec.prompt_name, content, version.message,
                                          parent_version_id=parent).version  # fmt: skip
        version_ids[version.id] = saved.id
        by_number[version.version] = saved
    for run in spec.runs:
        _copy_run(store, run, by_number[int(run["version"])], spec, copied.id)


def _copy_run(
    store: Store, data: dict[str, Any], version: PromptVersion, spec: SearchSpec, dataset_id: int
) -> None:
    split = str(spec.request.get("val_split", "validation"))
    model = store.get_model(spec.model_names["model"])
    run = store.create_run(
        version.id, model.id, dataset_id, split, int(data["rows_total"]), dict(data["settings"]),
        str(data["scoring"]), list(data["metric_names"]), data["row_limit"],
    )  # fmt: skip
    store.add_run_outputs(run.id, [NewRunOutput(**{**o, "row_id": None})
                                   for o in data["outputs"]])  # fmt: skip
    store.finish_run(run.id, "succeeded", dict(data["metrics"]))


def run_spec(spec_path: Path, events: EventWriter | None = None) -> int:
    """Run the spec's search on a scratch store, reporting through file events; returns the
    exit status (0 finished, 1 stopped or failed)."""
    spec = read_search_spec(spec_path)
    events = events or EventWriter(Path(spec.folder))
    should_stop = start_worker(events, spec.stop_file, "the current evaluation")
    store = ReportingStore()
    try:
        fill_scratch(store, spec)
        store.report_to(events)
        request = dataclasses.replace(
            request_from_config(spec.request),
            model=spec.model_names["model"],
            proposer=spec.model_names["proposer"],
        )

        def report(progress: OptimizeProgress) -> None:
            snapshot = SearchJobProgress.of(progress)
            version = store.get_prompt_version(progress.evaluation.version_ref)
            events.write("progress", snapshot=snapshot.to_dict(), **store.identity(version))
            print(f"[{progress.evaluations}] {snapshot.message}  candidates "
                  f"{snapshot.step}/{snapshot.total_steps}", flush=True)  # fmt: skip

        result = optimize(store, request, report, should_stop)
        if result.interrupted:
            return report_stopped(events, "stopped: the scored candidates are reported")
        best = store.get_prompt_version(result.best_ref) if result.best_ref else None
        named = store.identity(best) if best is not None else {}
        events.write("finished", message=result_message(result), **named,
                     responses=store.take_fresh())  # fmt: skip
        print(f"job {spec.job_id}: {result_message(result)}", flush=True)
        return 0
    except Exception as exc:
        return report_failure(events, exc)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunelab-search-remote-worker")
    parser.add_argument("spec", type=Path)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_spec(args.spec)


if __name__ == "__main__":
    sys.exit(main())

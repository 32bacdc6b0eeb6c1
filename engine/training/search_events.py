"""Ingesting a remote prompt search's file events into the store (a job of kind `optimize`).

The worker (`optimize/remote_worker.py`) runs the search on a private scratch store and
appends what the search wrote there: `version` (a new candidate with its content and commit
message), `message` (its message rewritten with its score), `run` (a finished evaluation
with its rows and fresh responses), `label` (the best labelled `optimized`), `progress`,
then `finished` or `failed`. Versions are matched by content hash (as the scorer matches
them), so the workspace numbers them itself; each event is applied once (`ingest_events`),
so a file read twice adds nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.training.eval_events import mark_failed, mark_started
from tunelab.engine.training.job_events import ingest_events

if TYPE_CHECKING:
    from tunelab.store import Job, PromptVersion, Store


def ingest_search_events(store: Store, job: Job, folder: Path) -> int:
    """Apply the new events of a search job's worker files; returns how many."""
    return ingest_events(store, job.id, folder, lambda event: _apply(store, job, event))


def _apply(store: Store, job: Job, event: dict[str, Any]) -> None:
    kind = event.get("kind")
    at = str(event.get("at") or _now())
    if kind == "started":
        mark_started(store, job, event, at)
    elif kind == "version":
        _version(store, job, event, create=True)
    elif kind == "message":
        version = _version(store, job, event)
        if version is not None:
            store.set_version_message(version.id, str(event.get("message", "")))
    elif kind == "label":
        version = _version(store, job, event)
        if version is not None:
            store.set_label(version.ref, str(event["label"]))
    elif kind == "run":
        _add_run(store, job, event)
    elif kind == "progress":
        snapshot = dict(event.get("snapshot") or {})
        snapshot["message"] = _workspace_refs(store, job, event, str(snapshot.get("message", "")))
        if store.get_job(job.id).status == "running":
            store.update_job(job.id, progress=snapshot, heartbeat_at=at)
    elif kind == "finished":
        _cache(store, event)
        message = _workspace_refs(store, job, event, str(event.get("message", "")))
        store.transition_job(job.id, ["queued", "running"], ("succeeded", message),
                             status="succeeded", finished_at=at)  # fmt: skip
    elif kind == "failed":
        mark_failed(store, job, event, at)


def _version(
    store: Store, job: Job, event: dict[str, Any], create: bool = False
) -> PromptVersion | None:
    """The workspace version the event names: by its number for one the spec exported (the
    same number here), else the first with its content hash (as the scorer picks); with
    `create`, a new child of the seed when none has it."""
    from tunelab.store import PromptContent

    assert job.prompt_version_id is not None
    seed = store.get_prompt_version_by_id(job.prompt_version_id)
    digest = event.get("hash")
    versions = store.list_prompt_versions(seed.prompt_name)
    number = event.get("number")
    found = next((v for v in versions if v.version == number and v.content_hash == digest), None)
    found = found or next((v for v in versions if v.content_hash == digest), None)
    if found is not None or not create:
        return found
    content = PromptContent(**dict(event["content"]))
    return store.save_prompt_version(
        seed.prompt_name, content, message=str(event.get("message", "")),
        parent_version_id=seed.id,
    ).version  # fmt: skip


def _workspace_refs(store: Store, job: Job, event: dict[str, Any], message: str) -> str:
    """The worker's message with its scratch store's ref of the event's version replaced by
    the workspace's (they differ when versions were saved here while the search ran)."""
    ref = event.get("ref")
    version = _version(store, job, event) if ref else None
    if version is None or version.ref == ref:
        return message
    whole = rf"(?<![\w.@-]){re.escape(str(ref))}(?![\w.@-])"
    return re.sub(whole, version.ref, message, count=1)


def _add_run(store: Store, job: Job, event: dict[str, Any]) -> None:
    """A finished evaluation of the search as a run here: its rows (row ids of this
    workspace), its metrics and status, and its fresh responses into the cache."""
    from tunelab.store import NewRunOutput

    version = _version(store, job, event)
    if version is None or job.dataset_id is None:
        return
    model = store.get_model(str(event["model"]))
    dataset = store.get_dataset_by_id(job.dataset_id)
    split = str(event["split"])
    outputs = [dict(o) for o in event.get("outputs") or []]
    indices = [int(o["row_idx"]) for o in outputs]
    row_ids = {r.idx: r.id for r in store.dataset_rows(dataset.name, split, indices=indices)}
    run = store.create_run(
        version.id, model.id, dataset.id, split, int(event["rows_total"]),
        dict(event.get("settings") or {}), str(event.get("scoring", "generate")),
        list(event.get("metric_names") or []), event.get("row_limit"), event.get("sample_seed"),
        int(event.get("samples", 1)),
    )  # fmt: skip
    store.hand_run_to_scheduler(run.id, f"slurm:job-{job.id}")
    store.add_run_outputs(
        run.id, [NewRunOutput(**{**o, "row_id": row_ids.get(int(o["row_idx"]))}) for o in outputs]
    )
    if event.get("device"):
        store.set_run_device(run.id, str(event["device"]))
    store.finish_run(run.id, str(event["status"]), dict(event.get("metrics") or {}),
                     event.get("error"))  # fmt: skip
    _cache(store, event)


def _cache(store: Store, event: dict[str, Any]) -> None:
    from tunelab.store import CachedResponse

    responses = event.get("responses") or {}
    if responses:
        store.cache_responses({k: CachedResponse(**v) for k, v in responses.items()})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")

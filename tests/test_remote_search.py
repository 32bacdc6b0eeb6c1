"""Prompt searches on Slurm: the search spec, the worker's file events and their idempotent
ingestion into versions and runs, Slurm's verdict on an allocation that ended without one,
bad input refused before anything is submitted, a worker that never opens `tunelab.db`
(marked `model`), and (marked `slurm`) a real search on the local cluster, its cancel and
its resume."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tune_helpers import add_training_data, wait_for
from tunelab.engine.optimize.job import KIND, METHOD, request_to_config
from tunelab.engine.optimize.remote import submit_search
from tunelab.engine.optimize.search import OPTIMIZED_LABEL, OptimizeRequest, optimize
from tunelab.engine.optimize.space import SearchSpace
from tunelab.engine.training import slurm
from tunelab.engine.training.job_events import EventWriter, job_dir, stop_file
from tunelab.engine.training.jobs import refresh_job_states
from tunelab.engine.training.search_events import ingest_search_events
from tunelab.engine.training.search_spec import (
    SEARCH_KIND,
    SEARCH_SPEC_FILE,
    read_search_spec,
    write_search_spec,
)
from tunelab.store import Job, PromptContent, Store, Workspace, content_hash

SLURM = slurm.slurm_available()
needs_slurm = pytest.mark.skipif(
    not SLURM, reason="no Slurm controller answers `sinfo` (run scripts/start_slurm.sh)"
)
DONE = ("succeeded", "failed", "cancelled")


def _request(budget: int = 2) -> OptimizeRequest:
    space = SearchSpace(k_min=0, k_max=1, pool_size=4, instructions=("Classify the tweet.",),
                        scorings=("likelihood",))  # fmt: skip
    return OptimizeRequest(prompt="irony@1", dataset="irony", budget=budget, first_rung=2,
                           batch_size=4, space=space)  # fmt: skip


def _data(workspace: Workspace) -> Store:
    store = workspace.open_store()
    add_training_data(store, None, n_train=8, n_val=4)
    return store


def _job_by_hand(workspace: Workspace, store: Store, seed_ref: str = "irony@1") -> Job:
    """A search job and its spec, as `submit_search` leaves them before sbatch."""
    request = dataclasses.replace(_request(), prompt=seed_ref)
    model = store.get_model("builtin")
    dataset = store.get_dataset("irony")
    seed = store.get_prompt_version(seed_ref)
    job = store.create_job(METHOD, request_to_config(request), model.id, dataset.id, seed.id,
                           kind=KIND, scheduler="slurm")  # fmt: skip
    folder = job_dir(workspace, job.id)
    write_search_spec(store, job, folder, stop_file(workspace, job.id), {})
    return store.update_job(job.id, scheduler_job_id="88", scheduler_state="PENDING")


def test_the_spec_exports_train_and_validation_only_and_never_names_the_database(
    workspace: Workspace,
) -> None:
    store = _data(workspace)
    job = _job_by_hand(workspace, store)
    path = job_dir(workspace, job.id) / SEARCH_SPEC_FILE
    spec = read_search_spec(path)
    assert SEARCH_KIND == KIND
    assert sorted(spec.splits) == ["train", "validation"]
    assert [v["version"] for v in spec.versions] == [1]
    assert spec.model_names == {"model": "builtin", "proposer": "builtin"}
    assert spec.runs == []
    text = path.read_text()
    assert "tunelab.db" not in text and str(workspace.db_path) not in text


def _candidate(text: str) -> PromptContent:
    return PromptContent(template="Ironic? irony or non_irony.\n{{ text }}", system=text)


def _run_event(store: Store, content: PromptContent, ref: str, score: float) -> dict[str, object]:
    rows = store.dataset_rows("irony", "validation", indices=[0, 1])
    return {
        "ref": ref, "hash": content_hash(content), "model": "builtin", "split": "validation",
        "rows_total": 2, "settings": {}, "scoring": "likelihood", "metric_names": ["accuracy"],
        "row_limit": 2, "sample_seed": None, "samples": 1, "status": "succeeded",
        "metrics": {"accuracy": score}, "error": None, "device": "cpu",
        "outputs": [{"row_idx": r.idx, "rendered_prompt": "p", "output": "irony",
                     "prediction": "irony", "reference": r.data["label"],
                     "scores": {"accuracy": score}} for r in rows],
        "responses": {"key-1": {"output": "irony", "tokens_in": 5, "tokens_out": 1}},
    }  # fmt: skip


def test_events_ingested_twice_are_one_version_and_one_run_each(workspace: Workspace) -> None:
    store = _data(workspace)
    job = _job_by_hand(workspace, store)
    folder = job_dir(workspace, job.id)
    # Someone saves irony@2 here while the search runs: the worker's irony@2 becomes @3.
    store.save_prompt_version("irony", PromptContent(template="Other: {{ text }}"))
    events = EventWriter(folder)
    content = _candidate("Classify the tweet.")
    events.write("started", host="node1", pid=9, slurm_job_id="88")
    events.write("version", content={**content.__dict__}, message="search from irony@1: x",
                 ref="irony@2", hash=content_hash(content))  # fmt: skip
    events.write("run", **_run_event(store, content, "irony@2", 0.5))
    events.write("message", message="search from irony@1: x; validation accuracy=0.5000",
                 ref="irony@2", hash=content_hash(content))  # fmt: skip
    events.write("progress", ref="irony@2", hash=content_hash(content),
                 snapshot={"phase": "searching", "step": 1, "total_steps": 2,
                           "message": "irony@2 on 2 rows: 0.5000"})  # fmt: skip
    assert ingest_search_events(store, job, folder) == 5
    assert ingest_search_events(store, job, folder) == 0
    versions = store.list_prompt_versions("irony")
    assert [v.version for v in versions] == [1, 2, 3]
    candidate = versions[2]
    assert candidate.content_hash == content_hash(content) and candidate.parent_version_id == 1
    assert candidate.message.endswith("accuracy=0.5000")
    running = store.get_job(job.id)
    assert running.status == "running" and running.host == "node1"
    assert running.progress["message"] == "irony@3 on 2 rows: 0.5000"
    (run,) = store.list_runs()
    assert run.prompt_ref == "irony@3" and run.status == "succeeded" and run.rows_done == 2
    assert run.metrics == {"accuracy": 0.5} and run.device == "cpu" and run.pid is None
    rows = store.dataset_rows("irony", "validation", indices=[0, 1])
    assert [o.row_id for o in store.run_outputs(run.id)] == [r.id for r in rows]
    assert store.cached_responses(["key-1"])["key-1"].tokens_in == 5
    # A second worker (a resubmission) reporting the same candidate saves no second version.
    again = EventWriter(folder, source="z-again")
    again.write("version", content={**content.__dict__}, message="m", ref="irony@2",
                hash=content_hash(content))  # fmt: skip
    again.write("label", label=OPTIMIZED_LABEL, ref="irony@2", hash=content_hash(content))
    again.write("finished", message="1 candidates, best irony@2 accuracy=0.5000",
                ref="irony@2", hash=content_hash(content))  # fmt: skip
    assert ingest_search_events(store, job, folder) == 3
    assert len(store.list_prompt_versions("irony")) == 3
    assert store.get_prompt_version(f"irony:{OPTIMIZED_LABEL}").version == 3
    done = store.get_job(job.id)
    assert done.status == "succeeded"
    assert store.job_events(job.id)[-1].message == "1 candidates, best irony@3 accuracy=0.5000"


def test_a_run_of_a_version_the_spec_exported_goes_to_that_version_not_an_equal_one(
    workspace: Workspace,
) -> None:
    store = _data(workspace)
    first = store.get_prompt_version("irony@1")
    store.save_prompt_version("irony", PromptContent(template="Other: {{ text }}"))
    same = PromptContent(template=first.template, mode=first.mode)
    seed = store.save_prompt_version("irony", same).version  # irony@3, the content of @1
    assert seed.version == 3 and seed.content_hash == first.content_hash
    job = _job_by_hand(workspace, store, "irony@3")
    folder = job_dir(workspace, job.id)
    event = {**_run_event(store, same, "irony@3", 1.0), "number": 3}
    EventWriter(folder).write("run", **event)
    ingest_search_events(store, job, folder)
    (run,) = store.list_runs()
    assert run.prompt_ref == "irony@3"


@pytest.mark.parametrize(
    ("state", "status", "said"),
    [("TIMEOUT", "failed", "ended TIMEOUT"), ("CANCELLED", "cancelled", "cancelled in Slurm")],
)
def test_an_allocation_that_ended_without_a_verdict_ends_the_search(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, state: str, status: str, said: str
) -> None:
    store = _data(workspace)
    job = _job_by_hand(workspace, store)
    folder = job_dir(workspace, job.id)
    EventWriter(folder).write("started", host="node1", pid=9, slurm_job_id="88")
    if state == "CANCELLED":
        stop_file(workspace, job.id).touch()
    monkeypatch.setattr(slurm, "slurm_states", lambda: {"88": slurm.SlurmState(state, "x")})
    refresh_job_states(store, workspace)
    ended = store.get_job(job.id)
    assert ended.status == status and said in store.job_events(job.id)[-1].message
    if status == "failed":
        assert "resume with `tunelab jobs resume" in (ended.error or "")


def test_bad_input_exits_2_with_nothing_stored_or_submitted(workspace: Workspace) -> None:
    store = _data(workspace)
    flags = ["--prompt", "irony@1", "--dataset", "irony", "--budget", "2", "--first-rung", "2",
             "--on", "slurm"]  # fmt: skip
    local_fs = run_cli("optimize", *flags, workspace=workspace)
    detach = run_cli("optimize", *flags, "--detach", "--slurm-allow-local-fs",
                     workspace=workspace)  # fmt: skip
    test_split = run_cli("optimize", *flags, "--slurm-allow-local-fs", "--val-split", "test",
                         workspace=workspace)  # fmt: skip
    no_slurm = run_cli("optimize", *flags[:8], "--time", "10:00", workspace=workspace)
    for done, said in ((local_fs, "compute nodes"), (detach, "--detach"),
                       (test_split, "test"), (no_slurm, "need --on slurm")):  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert store.list_jobs() == [] and len(store.list_prompt_versions("irony")) == 1


_AUDITED = """
import json, sys
opened, connected = [], []
def hook(event, args):
    if event == "open":
        opened.append(str(args[0]))
    elif event == "sqlite3.connect":
        connected.append(str(args[0]))
sys.addaudithook(hook)
from tunelab.engine.optimize.remote_worker import main
code = main([sys.argv[1]])
with open(sys.argv[2], "w") as fh:
    json.dump({"opened": opened, "connected": connected}, fh)
sys.exit(code)
"""


@pytest.mark.model
def test_the_worker_never_opens_the_database_and_its_search_is_a_local_one(
    workspace: Workspace, tmp_path: Path
) -> None:
    store = _data(workspace)
    job = _job_by_hand(workspace, store)
    folder = job_dir(workspace, job.id)
    audit = tmp_path / "audit.json"
    done = subprocess.run(
        [sys.executable, "-c", _AUDITED, str(folder / SEARCH_SPEC_FILE), str(audit)],
        capture_output=True, text=True, timeout=600, cwd=workspace.root,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(audit.read_text())
    assert seen["connected"], "the audit hook saw no SQLite connection at all"
    database = str(workspace.db_path)
    touched = [p for p in seen["opened"] + seen["connected"] if p.startswith(database)]
    assert touched == [] and not any(str(workspace.root) in p for p in seen["connected"])
    assert ingest_search_events(store, job, folder) > 0
    assert ingest_search_events(store, job, folder) == 0
    finished = store.get_job(job.id)
    assert finished.status == "succeeded", store.job_events(job.id)[-1].message
    best = store.get_prompt_version(f"irony:{OPTIMIZED_LABEL}")
    runs = store.list_runs()
    assert len(store.list_prompt_versions("irony")) >= 2 and len(runs) >= 3
    # The same search here finds every evaluation already stored: nothing is run again.
    local = optimize(store, _request())
    assert local.generated_rows == 0 and local.reused_evaluations == local.evaluations
    assert local.best_ref == best.ref and len(store.list_runs()) == len(runs)


def _refreshed(workspace: Workspace, store: Store, job_id: int) -> Job:
    refresh_job_states(store, workspace)
    return store.get_job(job_id)


@pytest.mark.slurm
@pytest.mark.model
@needs_slurm
def test_a_search_on_the_local_cluster_reports_candidates_as_versions_and_runs(
    workspace: Workspace,
) -> None:
    store = _data(workspace)
    options = slurm.SlurmOptions(allow_local_fs=True, extra=[("cpus-per-task", "1")])
    job = submit_search(workspace, store, _request(), options)
    assert job.scheduler_job_id and job.kind == KIND
    shown = run_cli("jobs", "list", workspace=workspace)
    assert f"Slurm job {job.scheduler_job_id}" in shown.stdout
    seen_runs: list[int] = []

    def ended() -> Job | None:
        current = _refreshed(workspace, store, job.id)
        seen_runs.append(len(store.list_runs()))
        return current if current.status in DONE else None

    done = wait_for(ended, 400, "the Slurm search to end")
    assert done.status == "succeeded", (done.error, Path(done.log_path).read_text())
    assert seen_runs[-1] >= 3 and seen_runs == sorted(seen_runs)  # runs only ever arrive
    best = store.get_prompt_version(f"irony:{OPTIMIZED_LABEL}")
    assert best.parent_version_id == store.get_prompt_version("irony@1").id
    assert "validation accuracy=" in best.message
    assert ingest_search_events(store, done, job_dir(workspace, job.id)) == 0
    shown = run_cli("jobs", "show", str(job.id), workspace=workspace)
    assert "candidates, best" in shown.stdout
    history = run_cli("optimize", "show", "irony@1", workspace=workspace)
    assert best.ref in history.stdout


@pytest.mark.slurm
@pytest.mark.model
@needs_slurm
def test_a_search_on_the_cluster_cancels_and_resumes_reusing_what_it_scored(
    workspace: Workspace,
) -> None:
    store = _data(workspace)
    options = slurm.SlurmOptions(allow_local_fs=True, extra=[("cpus-per-task", "1")])
    job = submit_search(workspace, store, _request(budget=4), options)
    wait_for(lambda: _refreshed(workspace, store, job.id).status == "running", 300,
             "the search to start")  # fmt: skip
    cancelled = run_cli("jobs", "cancel", str(job.id), workspace=workspace)
    assert cancelled.returncode == 0, cancelled.stderr

    def ended() -> Job | None:
        current = _refreshed(workspace, store, job.id)
        return current if current.status in DONE else None

    stopped = wait_for(ended, 300, "the cancelled search to end")
    assert stopped.status == "cancelled" and stop_file(workspace, job.id).exists()
    assert any(e.kind == "cancel_requested" for e in store.job_events(job.id))
    assert OPTIMIZED_LABEL not in store.get_prompt("irony").labels
    kept = len(store.list_runs())
    resumed = run_cli("jobs", "resume", str(job.id), workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr
    assert "reusing every evaluation it finished" in " ".join(resumed.stdout.split())
    finished = wait_for(ended, 400, "the resumed search to end")
    assert finished.status == "succeeded", (finished.error, Path(finished.log_path).read_text())
    assert store.get_prompt_version(f"irony:{OPTIMIZED_LABEL}").prompt_name == "irony"
    # The resumed worker reused the runs the first allocation reported: none is repeated.
    keys = [(r.prompt_version_id, r.scoring, r.row_limit) for r in store.list_runs()
            if r.status == "succeeded"]  # fmt: skip
    assert len(keys) == len(set(keys)) and len(store.list_runs()) >= kept

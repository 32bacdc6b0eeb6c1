"""Evaluations on Slurm: the spec, the worker's file events and their idempotent ingestion,
Slurm's verdict on an allocation that ended without one, bad input refused before anything
is submitted, and (marked `slurm`) a real run on the local cluster equal to a local run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tune_helpers import add_training_data, wait_for
from tunelab.engine.evaluation import plan as eval_plan
from tunelab.engine.evaluation.remote_spec import (
    EVAL_SPEC_FILE,
    EvalSpec,
    read_eval_spec,
    write_eval_spec,
)
from tunelab.engine.evaluation.request import EvalRequest
from tunelab.engine.evaluation.run import create_planned_run, evaluate
from tunelab.engine.training import slurm
from tunelab.engine.training.eval_events import EVAL_KIND, ingest_eval_events
from tunelab.engine.training.eval_worker import run_spec
from tunelab.engine.training.job_events import EventWriter, job_dir, stop_file
from tunelab.engine.training.remote_eval import refresh_remote_runs, submit_evaluation
from tunelab.store import Job, Run, Store, Workspace

SLURM = slurm.slurm_available()
needs_slurm = pytest.mark.skipif(
    not SLURM, reason="no Slurm controller answers `sinfo` (run scripts/start_slurm.sh)"
)


def _request(limit: int = 2) -> EvalRequest:
    return EvalRequest(
        prompt="irony@1", model="builtin", dataset="irony", split="validation", limit=limit,
        settings={"max_new_tokens": 4}, latency_probe=0, batch_size=2,
    )  # fmt: skip


def _submitted_by_hand(workspace: Workspace, store: Store, limit: int = 2) -> tuple[Run, Job]:
    """A run, its eval job and its spec, as `submit_evaluation` leaves them before sbatch."""
    plan = eval_plan.prepare(store, _request(limit))
    run = create_planned_run(store, plan, 1)
    job = store.create_job("eval", {"run_id": run.id}, plan.model.id, plan.dataset.id,
                           plan.version.id, kind=EVAL_KIND, scheduler="slurm")  # fmt: skip
    store.hand_run_to_scheduler(run.id, f"slurm:job-{job.id}")
    folder = job_dir(workspace, job.id)
    write_eval_spec(store, plan, run, job.id, folder, stop_file(workspace, job.id), 2, {})
    return run, store.update_job(job.id, scheduler_job_id="77", scheduler_state="PENDING")


def test_spec_round_trips_and_never_names_the_database(workspace: Workspace) -> None:
    store = workspace.open_store()
    add_training_data(store, None)
    run, job = _submitted_by_hand(workspace, store, limit=3)
    path = job_dir(workspace, job.id) / EVAL_SPEC_FILE
    spec = read_eval_spec(path)
    assert EvalSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.run_id == run.id and spec.row_indices == [0, 1, 2]
    assert spec.metrics == ["accuracy"] and spec.settings["max_new_tokens"] == 4
    assert "tunelab.db" not in path.read_text() and str(workspace.db_path) not in path.read_text()
    assert spec.ref().path  # the built-in model resolved to the folder it loads from
    assert store.get_run(run.id).pid is None  # no process here owns it: nothing marks it gone


def _outputs_event(run: Run, store: Store, correct: bool) -> list[dict[str, object]]:
    rows = store.dataset_rows("irony", "validation", indices=[0, 1])
    return [
        {"row_idx": r.idx, "row_id": r.id, "rendered_prompt": f"p{r.idx}", "output": "x",
         "prediction": r.data["label"] if correct else "invalid",
         "reference": r.data["label"], "scores": {"accuracy": 1.0 if correct else 0.0}}
        for r in rows
    ]  # fmt: skip


def test_events_ingested_twice_are_one_row_each(workspace: Workspace) -> None:
    store = workspace.open_store()
    add_training_data(store, None)
    run, job = _submitted_by_hand(workspace, store)
    folder = job_dir(workspace, job.id)
    events = EventWriter(folder)
    events.write("started", host="node1", pid=5, slurm_job_id="77")
    events.write("outputs", outputs=_outputs_event(run, store, True),
                 responses={"k1": {"output": "x", "tokens_in": 3, "tokens_out": 1}})  # fmt: skip
    assert ingest_eval_events(store, job, folder) == 2
    assert ingest_eval_events(store, job, folder) == 0
    # A second worker of a resubmission scoring the same rows again adds none.
    EventWriter(folder, source="z-again").write("outputs", outputs=_outputs_event(run, store, True))
    events.write("finished", rows=2)
    assert ingest_eval_events(store, job, folder) == 2
    finished = store.get_run(run.id)
    assert finished.status == "succeeded" and finished.rows_done == 2
    assert finished.metrics["accuracy"] == 1.0  # aggregated here from the stored rows
    assert len(store.run_outputs(run.id)) == 2
    assert store.get_job(job.id).status == "succeeded" and store.get_job(job.id).host == "node1"
    assert store.cached_responses(["k1"])["k1"].tokens_in == 3


@pytest.mark.parametrize(
    ("state", "status", "said"),
    [("TIMEOUT", "failed", "ended TIMEOUT"), ("CANCELLED", "cancelled", "cancelled")],
)
def test_an_allocation_that_ended_without_a_verdict_fails_the_run(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, state: str, status: str, said: str
) -> None:
    store = workspace.open_store()
    add_training_data(store, None)
    run, job = _submitted_by_hand(workspace, store)
    folder = job_dir(workspace, job.id)
    EventWriter(folder).write("outputs", outputs=_outputs_event(run, store, False)[:1])
    if state == "CANCELLED":
        stop_file(workspace, job.id).touch()
    monkeypatch.setattr(slurm, "slurm_states", lambda: {"77": slurm.SlurmState(state, "x")})
    refresh_remote_runs(workspace, store)
    failed = store.get_run(run.id)
    assert store.get_job(job.id).status == status
    assert failed.status == "failed" and said in (failed.error or "")
    assert failed.rows_done == 1 and failed.metrics["accuracy"] == 0.0  # the row it had


def test_bad_input_exits_2_with_nothing_stored_or_submitted(workspace: Workspace) -> None:
    store = workspace.open_store()
    add_training_data(store, None)
    flags = ["--on", "slurm", "--slurm-allow-local-fs", "--dataset", "irony", "--split",
             "validation"]  # fmt: skip
    bad_metric = run_cli("eval", "--prompt", "irony@1", *flags, "--metric", "nope",
                         workspace=workspace)  # fmt: skip
    samples = run_cli("eval", "--prompt", "irony@1", *flags, "--samples", "3",
                      "--temperature", "0.7", workspace=workspace)  # fmt: skip
    local_fs = run_cli("eval", "--prompt", "irony@1", "--on", "slurm", "--dataset", "irony",
                       "--split", "validation", workspace=workspace)  # fmt: skip
    for done, said in ((bad_metric, "nope"), (samples, "--samples"), (local_fs, "compute")):
        assert done.returncode == 2, done.stderr
        assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert store.list_runs() == [] and store.list_jobs() == []


def _outputs(store: Store, run_id: int) -> list[tuple[int, str, str | None]]:
    return [(o.row_idx, o.output, o.prediction) for o in store.run_outputs(run_id)]


@pytest.mark.model
def test_the_worker_on_the_real_model_equals_a_local_run(workspace: Workspace) -> None:
    store = workspace.open_store()
    add_training_data(store, None)
    local = evaluate(store, _request(), should_stop=None).run
    run, job = _submitted_by_hand(workspace, store)
    assert run_spec(job_dir(workspace, job.id) / EVAL_SPEC_FILE) == 0
    ingest_eval_events(store, job, job_dir(workspace, job.id))
    remote = store.get_run(run.id)
    assert remote.status == "succeeded" and remote.rows_done == 2
    assert _outputs(store, remote.id) == _outputs(store, local.id)
    assert remote.metrics["accuracy"] == local.metrics["accuracy"]
    assert not any(o.cached for o in store.run_outputs(remote.id))


@pytest.mark.slurm
@pytest.mark.model
@needs_slurm
def test_eval_on_the_local_cluster_equals_a_local_run(workspace: Workspace) -> None:
    store = workspace.open_store()
    add_training_data(store, None)
    options = slurm.SlurmOptions(allow_local_fs=True, extra=[("cpus-per-task", "1")])
    run, job = submit_evaluation(workspace, store, _request(4), options)
    assert job.scheduler_job_id and run.status == "running"
    shown = run_cli("jobs", "list", workspace=workspace)
    assert f"Slurm job {job.scheduler_job_id}" in shown.stdout

    def ended() -> bool:
        refresh_remote_runs(workspace, store)
        return store.get_run(run.id).status != "running"

    wait_for(ended, timeout=400, what="the Slurm evaluation to end")
    remote = store.get_run(run.id)
    assert remote.status == "succeeded", (remote.error, Path(job.log_path).read_text())
    local = evaluate(store, _request(4)).run
    assert local.cached_rows == 4  # the remote responses reached the cache on ingestion
    assert _outputs(store, remote.id) == _outputs(store, local.id)
    assert asdict(store.get_job(job.id))["status"] == "succeeded"


def test_a_resumed_evaluation_scores_only_the_rows_its_run_lacks(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.engine.training.jobs import resume_job

    store = workspace.open_store()
    add_training_data(store, None)
    run, job = _submitted_by_hand(workspace, store, limit=3)
    folder = job_dir(workspace, job.id)
    EventWriter(folder).write("outputs", outputs=_outputs_event(run, store, True))
    monkeypatch.setattr(slurm, "slurm_states", lambda: {"77": slurm.SlurmState("TIMEOUT")})
    refresh_remote_runs(workspace, store)
    assert store.get_job(job.id).status == "failed"
    submitted: list[list[str]] = []

    def fake_sbatch(store: Store, job: Job, folder: Path, options: slurm.SlurmOptions,
                    worker_args: list[str] | None = None) -> Job:  # fmt: skip
        submitted.append(worker_args or [])
        return store.get_job(job.id)

    monkeypatch.setattr(slurm, "sbatch", fake_sbatch)
    resume_job(workspace, store, job.id)
    assert submitted == [[slurm.EVAL_WORKER_MODULE, str(folder / EVAL_SPEC_FILE)]]
    assert read_eval_spec(folder / EVAL_SPEC_FILE).done_rows == [0, 1]
    assert store.get_run(run.id).status == "running"
    said = store.job_events(job.id)[-1].message
    assert said.startswith("resume requested; scores only the rows its run does not hold yet")

"""Fine-tuning on Slurm: file events and their idempotent ingestion, the shared-filesystem
rule, the batch script, and (marked `slurm`, on the real local cluster that
`scripts/start_slurm.sh` starts) submission, progress while it runs, cancel and resume.

The cluster jobs train a tiny random Llama (built-in tokenizer), so each takes seconds.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tune_helpers import add_training_data, tiny_model_dir, wait_for
from tunelab.engine.errors import BadInputError
from tunelab.engine.training.job_events import EventWriter, ingest_job_events, read_events
from tunelab.engine.training.jobs import refresh_job_states
from tunelab.engine.training.slurm import (
    SlurmOptions,
    batch_script,
    check_shared_fs,
    parse_slurm_args,
    slurm_available,
)
from tunelab.store import Job, Store, Workspace

DONE = ("succeeded", "failed", "cancelled")
SLURM = slurm_available()
needs_slurm = pytest.mark.skipif(
    not SLURM, reason="no Slurm controller answers `sinfo` (run scripts/start_slurm.sh)"
)


def _slurm_job(store: Store) -> Job:
    job = store.create_job("lora", {"method": "lora"}, None, None, None, scheduler="slurm")
    return store.update_job(job.id, status="queued")


def test_events_ingested_twice_are_applied_once(tmp_path: Path) -> None:
    store = Store.memory()
    job = _slurm_job(store)
    events = EventWriter(tmp_path)
    events.write("started", host="node1", pid=42, worker={"pid": 42}, slurm_job_id="7")
    events.write(
        "progress",
        reset_from=1,
        step=1,
        metrics={"train_loss": 2.5},
        snapshot={"phase": "training", "step": 1, "total_steps": 2},
    )
    model = {
        "name": "tiny-lora-job-1-step2",
        "kind": "adapter",
        "source": "artifact",
        "path": str(tmp_path / "step-000002"),
        "job_id": job.id,
        "step": 2,
        "metrics": {"val_loss": 1.0},
        "method": "lora",
    }
    events.write("checkpoint", model=model)
    events.write("best", step=2)
    events.write(
        "progress",
        step=2,
        metrics={"train_loss": 2.0},
        snapshot={
            "phase": "done",
            "step": 2,
            "total_steps": 2,
            "best": {"model_id": -2, "step": 2},
        },
    )
    assert ingest_job_events(store, job.id, tmp_path) == 5
    assert store.get_job(job.id).status == "running"
    events.write("result", status="succeeded", error=None, message="finished")
    # A second front end reading the same files, and a worker mid-way through a line.
    with events.path.open("a") as fh:
        fh.write('{"seq": 7, "kind": "message"')
    assert ingest_job_events(store, job.id, tmp_path) == 1
    assert ingest_job_events(store, job.id, tmp_path) == 0
    done = store.get_job(job.id)
    assert done.status == "succeeded" and done.host == "node1" and done.pid == 42
    assert [(p.step, p.value) for p in store.job_metrics(job.id)] == [(1, 2.5), (2, 2.0)]
    (checkpoint,) = store.models_of_job(job.id)
    assert checkpoint.step == 2 and checkpoint.is_best
    assert done.progress["best"]["model_id"] == checkpoint.id  # the store's id, not -2
    assert [e["seq"] for e in read_events(events.path)] == [1, 2, 3, 4, 5, 6]
    kinds = [e.kind for e in store.job_events(job.id)]
    assert kinds.count("running") == 1 and kinds.count("succeeded") == 1


def test_events_of_a_resubmitted_run_replace_the_replayed_metrics(tmp_path: Path) -> None:
    store = Store.memory()
    job = _slurm_job(store)
    first = EventWriter(tmp_path, source="20260101T000000000000-a-1")
    first.write("started", host="a", pid=1)
    for step in (1, 2, 3):
        first.write(
            "progress",
            step=step,
            metrics={"train_loss": float(step)},
            **({"reset_from": 1} if step == 1 else {}),
        )
    second = EventWriter(tmp_path, source="20260101T000100000000-b-2")
    second.write("started", host="b", pid=2, slurm_job_id="9", restart=1)
    second.write("progress", reset_from=3, step=3, metrics={"train_loss": 30.0})
    ingest_job_events(store, job.id, tmp_path)
    assert [(p.step, p.value) for p in store.job_metrics(job.id)] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    assert store.get_job(job.id).host == "b"


def test_workspace_compute_nodes_cannot_see_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="--slurm-allow-local-fs"):
        check_shared_fs(tmp_path, allow_local=False)
    with pytest.raises(BadInputError, match="under /dev/shm"):
        check_shared_fs(Path("/dev/shm/ws"), allow_local=False)
    check_shared_fs(tmp_path, allow_local=True)
    # A home folder on a disk passes (the repository itself may be cloned under /tmp).
    check_shared_fs(Path.home() / "tunelab-workspace", allow_local=False)


def test_tune_on_slurm_from_tmp_is_one_line_exit_2(workspace: Workspace) -> None:
    store = workspace.open_store()
    add_training_data(store, None)
    result = run_cli(
        "tune", "--dataset", "irony", "--prompt", "irony@1", "--on", "slurm", workspace=workspace
    )
    assert result.returncode == 2, result.stderr
    assert "compute nodes do not see" in result.stderr and "Traceback" not in result.stderr
    assert store.list_jobs() == []
    flags = run_cli(
        "tune", "--dataset", "irony", "--prompt", "irony@1", "--nodes", "2", workspace=workspace
    )
    assert flags.returncode == 2 and "need --on slurm" in flags.stderr


def test_slurm_args_and_options_are_checked() -> None:
    assert parse_slurm_args(["mem=8G", "--account=proj", "requeue"]) == [
        ("mem", "8G"),
        ("account", "proj"),
        ("requeue", ""),
    ]
    with pytest.raises(BadInputError, match="KEY=VALUE"):
        parse_slurm_args(["=8G"])
    with pytest.raises(BadInputError, match="not a Slurm time"):
        SlurmOptions(time="two hours")
    with pytest.raises(BadInputError, match="--nodes"):
        SlurmOptions(nodes=0)


def test_batch_script_runs_the_worker_under_srun(tmp_path: Path) -> None:
    single = batch_script(
        3,
        tmp_path,
        SlurmOptions(partition="debug", time="2:00:00", extra=[("mem", "4G"), ("requeue", "")]),
    )
    assert "#SBATCH --partition=debug\n" in single and "#SBATCH --time=2:00:00\n" in single
    assert "#SBATCH --mem=4G\n" in single and "#SBATCH --requeue\n" in single
    assert "exec srun" in single and f"--spec {tmp_path / 'spec.json'}" in single
    assert "torch.distributed.run" not in single
    multi = batch_script(3, tmp_path, SlurmOptions(nodes=2, gpus_per_node=4))
    assert "#SBATCH --nodes=2\n" in multi and "#SBATCH --gpus-per-node=4\n" in multi
    assert "torch.distributed.run --nnodes=2 --nproc_per_node=4" in multi
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in multi


# On the real cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def _tune(workspace: Workspace, *flags: str) -> int:
    result = run_cli(
        "tune",
        "--base",
        "tiny",
        "--dataset",
        "irony",
        "--prompt",
        "irony@1",
        "--on",
        "slurm",
        "--slurm-allow-local-fs",
        "--batch-size",
        "4",
        "--max-seq-len",
        "48",
        "--eval-samples",
        "4",
        "--json",
        *flags,
        workspace=workspace,
    )
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["job_id"])


def _refreshed(workspace: Workspace, store: Store, job_id: int) -> Job:
    refresh_job_states(store, workspace)
    return store.get_job(job_id)


def _slurm_state(slurm_id: str) -> str:
    done = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", slurm_id],
        capture_output=True,
        text=True,
        timeout=30,
    )
    fields = dict(part.split("=", 1) for part in done.stdout.split() if "=" in part)
    return fields.get("JobState", "GONE")


@pytest.mark.slurm
@needs_slurm
def test_lora_job_on_slurm_reports_progress_while_it_runs(
    workspace: Workspace, tiny_dir: Path
) -> None:
    store = workspace.open_store()
    add_training_data(store, tiny_dir)
    job_id = _tune(workspace, "--max-steps", "30", "--eval-every", "10")
    job = store.get_job(job_id)
    assert job.scheduler == "slurm" and job.scheduler_job_id
    slurm_id = job.scheduler_job_id

    def running_with_progress() -> Job | None:
        job = _refreshed(workspace, store, job_id)
        assert job.status not in DONE, job.error
        return job if job.status == "running" and job.progress.get("step", 0) > 0 else None

    seen = wait_for(running_with_progress, 240, "progress ingested while the job runs")
    assert seen.scheduler_state.startswith(("RUNNING", "COMPLETING"))
    assert _slurm_state(slurm_id) in ("RUNNING", "COMPLETING")
    listing = run_cli("jobs", "list", workspace=workspace)
    assert f"Slurm job {slurm_id}" in listing.stdout, listing.stdout
    done = wait_for(
        lambda: (j := _refreshed(workspace, store, job_id)).status in DONE and j,
        240,
        "the job to end",
    )
    assert done.status == "succeeded", done.error
    assert done.progress["step"] == done.progress["total_steps"] == 30
    models = store.models_of_job(job_id)
    assert [m.step for m in models] == [10, 20, 30]
    assert sum(m.is_best for m in models) == 1 and all(Path(m.path).is_dir() for m in models)
    best = next(m for m in models if m.is_best)
    assert done.progress["best"]["model_id"] == best.id
    assert {"train_loss", "val_loss"} <= {p.name for p in store.job_metrics(job_id)}
    assert len(store.job_metrics(job_id, "train_loss")) == 30
    wait_for(
        lambda: _refreshed(workspace, store, job_id).scheduler_state == "COMPLETED",
        60,
        "Slurm to report the job completed",
    )
    shown = run_cli("jobs", "show", str(job_id), workspace=workspace)
    assert f"Slurm job {slurm_id}: COMPLETED" in shown.stdout, shown.stdout
    logs = run_cli("jobs", "logs", str(job_id), workspace=workspace)
    assert f"Slurm job {slurm_id}" in logs.stdout and "succeeded" in logs.stdout
    # Ingesting again changes nothing: every event is one row.
    before = (len(store.job_metrics(job_id)), len(store.job_events(job_id)))
    run_cli("jobs", "show", str(job_id), workspace=workspace)
    assert (len(store.job_metrics(job_id)), len(store.job_events(job_id))) == before


@pytest.mark.slurm
@needs_slurm
def test_cancel_in_slurm_then_resume_finishes_from_the_checkpoint(
    workspace: Workspace, tiny_dir: Path
) -> None:
    store = workspace.open_store()
    add_training_data(store, tiny_dir)
    job_id = _tune(workspace, "--max-steps", "400", "--eval-every", "1000")
    slurm_id = store.get_job(job_id).scheduler_job_id
    assert slurm_id

    def trained_a_few() -> bool:
        job = _refreshed(workspace, store, job_id)
        assert job.status not in DONE, job.error
        return job.status == "running" and job.progress.get("step", 0) >= 3

    wait_for(trained_a_few, 240, "a few steps")
    cancelled = run_cli("jobs", "cancel", str(job_id), workspace=workspace)
    assert cancelled.returncode == 0, cancelled.stderr
    assert _slurm_state(slurm_id) in ("CANCELLED", "COMPLETING", "GONE")
    job = wait_for(
        lambda: (j := _refreshed(workspace, store, job_id)).status in DONE and j,
        120,
        "the cancel to land",
    )
    assert job.status == "cancelled", job.error
    stopped_at = job.progress["step"]
    assert 3 <= stopped_at < 400
    assert [m.step for m in store.models_of_job(job_id)] == [stopped_at]

    resumed = run_cli("jobs", "resume", str(job_id), workspace=workspace)
    assert resumed.returncode == 0, resumed.stderr
    assert f"continues from its checkpoint at step {stopped_at}" in resumed.stdout
    again = store.get_job(job_id)
    assert again.scheduler_job_id not in (None, slurm_id)
    done = wait_for(
        lambda: (j := _refreshed(workspace, store, job_id)).status in DONE and j,
        300,
        "the resumed job to end",
    )
    assert done.status == "succeeded", done.error
    assert done.progress["step"] == 400
    messages = [e.message for e in store.job_events(job_id)]
    assert f"resumed from step {stopped_at}" in messages
    assert len(store.job_metrics(job_id, "train_loss")) == 400


@pytest.mark.slurm
@needs_slurm
def test_allocation_that_ends_without_a_result_is_failed_with_slurms_state(
    workspace: Workspace, tiny_dir: Path
) -> None:
    store = workspace.open_store()
    add_training_data(store, tiny_dir)
    job_id = _tune(workspace, "--max-steps", "400", "--eval-every", "1000")
    slurm_id = store.get_job(job_id).scheduler_job_id
    assert slurm_id
    wait_for(
        lambda: _refreshed(workspace, store, job_id).progress.get("step", 0) >= 2,
        240,
        "training to start",
    )
    # Not through tunelab: Slurm ends the allocation (as a node failure or an admin would).
    subprocess.run(["scancel", slurm_id], check=True, timeout=30)
    job = wait_for(
        lambda: (j := _refreshed(workspace, store, job_id)).status in DONE and j,
        120,
        "the job to be seen ended",
    )
    assert job.status == "failed"
    assert job.error and f"Slurm job {slurm_id} ended CANCELLED" in job.error
    assert "tunelab jobs resume" in job.error


@pytest.mark.slurm
@pytest.mark.slow  # Slurm holds a requeued job about two minutes before it starts again
@needs_slurm
def test_a_requeued_job_resumes_from_its_checkpoint_as_the_same_job(
    workspace: Workspace, tiny_dir: Path
) -> None:
    store = workspace.open_store()
    add_training_data(store, tiny_dir)
    job_id = _tune(
        workspace, "--max-steps", "300", "--eval-every", "1000", "--slurm-arg", "requeue"
    )
    slurm_id = store.get_job(job_id).scheduler_job_id
    assert slurm_id
    wait_for(
        lambda: _refreshed(workspace, store, job_id).progress.get("step", 0) >= 3,
        240,
        "training to start",
    )
    # What preemption with requeue does: SIGTERM to the job, then the same job id back to the
    # queue, started again on a node.
    subprocess.run(["scontrol", "requeue", slurm_id], check=True, timeout=30)

    def ended() -> Job | None:
        job = _refreshed(workspace, store, job_id)
        return job if job.status in DONE else None

    done = wait_for(ended, 420, "the requeued run to finish")
    assert done.status == "succeeded", done.error
    assert done.scheduler_job_id == slurm_id and done.progress["step"] == 300
    events = store.job_events(job_id)
    stopped = [e for e in events if e.kind == "stopped"]
    assert stopped and "checkpoint saved" in stopped[0].message
    assert any(e.kind == "running" and "restart 1" in e.message for e in events)
    assert any(e.message.startswith("resumed from step") for e in events)
    assert len(store.job_metrics(job_id, "train_loss")) == 300

"""Detached fine-tuning jobs: queue, SIGHUP survival, kill -9 detection and resume, cancel,
two-process data parallel training, and the `tunelab tune` / `tunelab jobs` CLI.

The jobs train a tiny random Llama (built-in tokenizer) so each takes seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tune_helpers import add_training_data, tiny_model_dir, wait_for, wait_status
from tunelab.engine.errors import BadInputError
from tunelab.engine.processes import process_start_ticks
from tunelab.engine.training.checkpoint import latest_checkpoint
from tunelab.engine.training.config import TrainingConfig
from tunelab.engine.training.jobs import (
    cancel_job,
    launch_job,
    refresh_job_states,
    resume_job,
    vanished_reason,
)
from tunelab.engine.training.worker import HEARTBEAT_ENV, cancel_requested
from tunelab.store import Store, Workspace

DONE = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def _config(**changes: object) -> TrainingConfig:
    base = {"max_steps": 4, "batch_size": 4, "max_seq_len": 48, "eval_every_steps": 2,
            "eval_samples": 4}  # fmt: skip
    return TrainingConfig(**{**base, **changes})  # type: ignore[arg-type]


def _launch(workspace: Workspace, tiny_dir: Path, **changes: object):  # type: ignore[no-untyped-def]
    store = workspace.open_store()
    base, dataset, version = add_training_data(store, tiny_dir)
    gpus = int(changes.pop("gpus", 0))  # type: ignore[call-overload]
    return store, launch_job(workspace, store, _config(**changes), base, dataset, version.ref, gpus)


def test_job_runs_detached_and_the_queue_runs_one_at_a_time(
    workspace: Workspace, tiny_dir: Path
) -> None:
    store, first = _launch(workspace, tiny_dir, max_steps=6)
    base, dataset, version = add_training_data(store, tiny_dir)
    second = launch_job(workspace, store, _config(), base, dataset, version.ref)
    assert first.status == "queued" and first.log_path.endswith(f"job-{first.id}.log")
    seen_both_running = False
    for _ in range(400):
        statuses = {j.id: j.status for j in store.list_jobs()}
        seen_both_running |= list(statuses.values()).count("running") > 1
        if all(s in DONE for s in statuses.values()):
            break
        time.sleep(0.25)
    assert not seen_both_running
    for job_id in (first.id, second.id):
        job = store.get_job(job_id)
        assert job.status == "succeeded", job.error
        assert job.progress["step"] == job.progress["total_steps"]
        for key in ("epoch", "learning_rate", "tokens_per_s", "peak_memory_mb", "val"):
            assert key in job.progress
        models = store.models_of_job(job_id)
        assert [m.step for m in models] == list(range(2, job.progress["step"] + 1, 2))
        assert sum(m.is_best for m in models) == 1
        assert all(m.kind == "adapter" and m.source == "artifact" for m in models)
        assert models[0].training_dataset_id == dataset.id
        assert models[0].prompt_version_id == version.id
        assert models[0].base_model_id == base.id and models[0].job_id == job_id
        names = {p.name for p in store.job_metrics(job_id)}
        assert {"train_loss", "lr", "val_loss", "val_accuracy"} <= names
    # The second job's worker found the first running and left it queued; the first's worker
    # started it when it ended.
    assert store.get_job(second.id).started_at > store.get_job(first.id).finished_at


def test_job_survives_its_launcher_being_hung_up(workspace: Workspace, tiny_dir: Path) -> None:
    store = workspace.open_store()
    add_training_data(store, tiny_dir)
    # The launcher stands for a shell in a terminal: SIGHUP at its default, even when the
    # suite itself runs under nohup (which would hand the ignored disposition down).
    launcher = f"""
import signal, sys, time
signal.signal(signal.SIGHUP, signal.SIG_DFL)
from tunelab.store import find_workspace
from tunelab.engine.training.jobs import launch_job
from tunelab.engine.training.config import TrainingConfig
ws = find_workspace({str(workspace.root)!r}); s = ws.open_store()
cfg = TrainingConfig(max_steps=6, batch_size=4, max_seq_len=48, eval_every_steps=3,
                     eval_samples=4)
job = launch_job(ws, s, cfg, s.get_model("tiny"), s.get_dataset("irony"), "irony@1")
print(job.id, flush=True)
time.sleep(600)
"""
    proc = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    job_id = int(proc.stdout.readline())
    wait_status(store, job_id, ("running", *DONE))
    os.killpg(proc.pid, signal.SIGHUP)  # what closing the terminal does to its process group
    assert proc.wait(timeout=30) == -signal.SIGHUP
    job = wait_status(store, job_id, DONE)
    assert job.status == "succeeded", job.error


def test_kill_9_is_detected_then_resume_finishes(workspace: Workspace, tiny_dir: Path) -> None:
    store, job = _launch(workspace, tiny_dir, max_steps=30, eval_every_steps=0,
                         save_every_steps=2)  # fmt: skip
    # A checkpoint's model is registered before its optimizer state is written; only one with
    # that state resumes, so wait for it rather than for the model record.
    output_dir = Path(store.get_job(job.id).output_dir)
    wait_for(lambda: latest_checkpoint(output_dir), 240, "a first resumable checkpoint")
    running = store.get_job(job.id)
    assert running.status == "running" and running.pid
    os.kill(running.pid, signal.SIGKILL)
    changed = wait_for(lambda: refresh_job_states(store), 30, "the death to be noticed")
    failed = store.get_job(job.id)
    assert [j.id for j in changed] == [job.id]
    assert failed.status == "failed"
    assert f"process {running.pid} vanished (killed or rebooted)" in (failed.error or "")
    assert f"tunelab jobs resume {job.id}" in (failed.error or "")
    resume_job(workspace, store, job.id)
    done = wait_status(store, job.id, DONE, timeout=400)
    assert done.status == "succeeded", done.error
    assert done.progress["step"] == 30
    messages = [e.message for e in store.job_events(job.id)]
    assert any(m.startswith("resumed from step") for m in messages)
    steps = [m.step for m in store.models_of_job(job.id)]
    assert steps == sorted(set(steps)) and steps[-1] == 30
    # The steps replayed after the checkpoint replaced their points: one per step.
    assert [p.step for p in store.job_metrics(job.id, "train_loss")] == list(range(1, 31))


def test_cancel_saves_a_checkpoint_and_marks_cancelled(
    workspace: Workspace, tiny_dir: Path
) -> None:
    store, job = _launch(workspace, tiny_dir, max_steps=5000, eval_every_steps=0)
    wait_for(lambda: store.get_job(job.id).progress.get("step", 0) >= 2, 240, "two steps")
    cancel_job(workspace, store, job.id)
    done = wait_status(store, job.id, DONE)
    assert done.status == "cancelled"
    models = store.models_of_job(job.id)
    assert len(models) == 1 and 2 <= (models[0].step or 0) < 5000
    with pytest.raises(BadInputError, match="only queued or running jobs cancel"):
        cancel_job(workspace, store, job.id)


def test_a_resumed_cancelled_job_is_not_cancelled_again(
    workspace: Workspace, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fast heartbeat: it beats many times while the resumed worker loads its model, so a
    # stale cancel request would stop the job right after its first step.
    monkeypatch.setenv(HEARTBEAT_ENV, "0.1")
    store, job = _launch(workspace, tiny_dir, max_steps=1_000_000, eval_every_steps=0)
    try:
        wait_for(lambda: store.get_job(job.id).progress.get("step", 0) >= 2, 240, "two steps")
        cancel_job(workspace, store, job.id)
        assert wait_status(store, job.id, DONE).status == "cancelled"
        stopped_at = max(m.step or 0 for m in store.models_of_job(job.id))
        resume_job(workspace, store, job.id)

        def went_on() -> bool:
            current = store.get_job(job.id)
            moved = current.progress.get("step", 0) >= stopped_at + 20
            return moved or current.status in DONE

        wait_for(went_on, 240, "the resumed job to go on or end")
        assert store.get_job(job.id).status == "running"
        cancel_job(workspace, store, job.id)  # a fresh request still cancels it
        assert wait_status(store, job.id, DONE).status == "cancelled"
    finally:
        if store.get_job(job.id).status in ("queued", "running"):
            cancel_job(workspace, store, job.id)
            wait_status(store, job.id, DONE)


def test_cancel_requests_count_only_after_the_claim(store: Store) -> None:
    job = store.create_job("lora", {}, None, None, None)
    store.add_job_event(job.id, "cancel_requested", "cancel requested; saving a checkpoint")
    claimed = store.claim_job(job.id, os.getpid(), socket.gethostname(), {})
    assert claimed is not None
    since = store.job_events(job.id)[-1].id
    assert not cancel_requested(store, job.id, since)
    store.add_job_event(job.id, "cancel_requested", "cancel requested; saving a checkpoint")
    assert cancel_requested(store, job.id, since)


def test_resume_with_no_checkpoint_left_says_so_and_keeps_one_point_per_step(
    workspace: Workspace, tiny_dir: Path
) -> None:
    store, job = _launch(workspace, tiny_dir, max_steps=4, eval_every_steps=2)
    assert wait_status(store, job.id, DONE).status == "succeeded"
    shutil.rmtree(store.get_job(job.id).output_dir)  # every checkpoint gone
    store.update_job(job.id, status="failed", error="lost its checkpoints")
    out = run_cli("jobs", "resume", str(job.id), workspace=workspace)
    assert out.returncode == 0, out.stderr
    assert "no checkpoint left: restarts from step 0" in out.stdout
    assert "continues from" not in out.stdout
    done = wait_status(store, job.id, DONE)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in store.job_events(job.id)]
    assert "resume requested; no checkpoint left: restarts from step 0" in messages
    points = Counter((p.name, p.step) for p in store.job_metrics(job.id))
    assert points and set(points.values()) == {1}, points
    assert [p.step for p in store.job_metrics(job.id, "train_loss")] == [1, 2, 3, 4]
    assert [p.step for p in store.job_metrics(job.id, "val_loss")] == [2, 4]


def test_cancel_a_queued_job_and_refuse_to_resume_a_running_one(
    workspace: Workspace, tiny_dir: Path
) -> None:
    # Far more steps than it will get: it must still be running when it is cancelled.
    store, first = _launch(workspace, tiny_dir, max_steps=1_000_000, eval_every_steps=0)
    base, dataset, version = add_training_data(store, tiny_dir)
    queued = launch_job(workspace, store, _config(), base, dataset, version.ref)
    try:
        wait_status(store, first.id, ("running",))
        assert cancel_job(workspace, store, queued.id).status == "cancelled"
        with pytest.raises(BadInputError, match="still going"):
            resume_job(workspace, store, first.id)
    finally:
        if store.get_job(first.id).status in ("queued", "running"):
            cancel_job(workspace, store, first.id)  # never leave a million-step job behind
    assert wait_status(store, first.id, DONE).status == "cancelled"


def test_two_process_data_parallel_training(workspace: Workspace, tiny_dir: Path) -> None:
    store, job = _launch(workspace, tiny_dir, gpus=2, max_steps=4)
    done = wait_status(store, job.id, DONE, timeout=400)
    assert done.status == "succeeded", done.error
    log = Path(done.log_path).read_text()
    assert "torch.distributed.run" in log and "--nproc_per_node=2" in log
    models = store.models_of_job(job.id)
    assert [m.step for m in models] == [2, 4]  # rank 0 alone registers checkpoints
    # 24 rows, batch 4, 2 processes: 3 batches per process per epoch.
    assert done.progress["epoch"] == pytest.approx(4 / 3)


def test_vanished_reason_spots_pid_reuse_and_stale_remote_heartbeats(store: Store) -> None:
    job = store.create_job("lora", {}, None, None, None)
    me = os.getpid()
    fake = dataclasses.replace(
        job, status="running", pid=me, host=socket.gethostname(),
        progress={"worker": {"pid": me, "start_ticks": process_start_ticks(me)}},
    )  # fmt: skip
    assert vanished_reason(fake) is None
    reused = dataclasses.replace(fake, progress={"worker": {"pid": me, "start_ticks": 1}})
    assert "vanished" in (vanished_reason(reused) or "")
    remote = dataclasses.replace(fake, host="elsewhere", heartbeat_at="2020-01-01T00:00:00+00:00")
    assert "sent no heartbeat" in (vanished_reason(remote) or "")
    beat = datetime.now(UTC).isoformat()
    assert vanished_reason(dataclasses.replace(remote, heartbeat_at=beat)) is None


WIDE = {"COLUMNS": "200"}


def test_cli_tune_returns_at_once_and_jobs_commands_work(
    workspace: Workspace, tiny_dir: Path
) -> None:
    store = workspace.open_store()
    add_training_data(store, tiny_dir)
    out = run_cli("tune", "--base", "tiny", "--dataset", "irony", "--prompt", "irony@1",
                  "--method", "lora", "--max-steps", "2", "--batch-size", "4",
                  "--max-seq-len", "48", "--eval-every", "2", "--json",
                  workspace=workspace)  # fmt: skip
    assert out.returncode == 0, out.stderr
    job_id = json.loads(out.stdout)["job_id"]
    followed = run_cli("jobs", "follow", str(job_id), workspace=workspace, timeout=300)
    assert followed.returncode == 0, followed.stderr
    assert "succeeded" in followed.stdout
    listed = json.loads(run_cli("jobs", "list", "--json", workspace=workspace).stdout)
    assert {"id": job_id, "status": "succeeded"}.items() <= listed[0].items()
    shown = json.loads(run_cli("jobs", "show", str(job_id), "--json", workspace=workspace).stdout)
    assert shown["models"] and shown["status"] == "succeeded"
    text = run_cli("jobs", "show", str(job_id), workspace=workspace, env=WIDE).stdout
    assert "base tiny, dataset irony, prompt irony@1" in text
    assert "settings: batch_size=4, eval_every_steps=2, max_seq_len=48, max_steps=2\n" in text
    exported = run_cli("model", "export", shown["models"][-1]["name"], "--merge",
                       str(workspace.root / "merged"), workspace=workspace)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert (workspace.root / "merged" / "config.json").exists()
    assert not (workspace.root / "merged" / "adapter_config.json").exists()
    logs = run_cli("jobs", "logs", str(job_id), workspace=workspace)
    assert f"job {job_id}: succeeded" in logs.stdout
    bad = run_cli("tune", "--base", "tiny", "--dataset", "irony", "--prompt", "irony@1",
                  "--batch-size", "500", workspace=workspace)  # fmt: skip
    assert bad.returncode == 2
    assert "batch_size 500 is larger than the 24 training rows" in bad.stderr
    assert "Traceback" not in bad.stderr
    resumed = run_cli("jobs", "resume", str(job_id), workspace=workspace)
    assert resumed.returncode == 2 and "only failed or cancelled jobs resume" in resumed.stderr

"""Hardening: faults. kill -9 of an evaluation, a disk that fills during a checkpoint save,
databases from a newer tunelab or corrupt, owner-only files, and no network use.

kill -9 of a training job is proved in tests/test_jobs.py
(test_kill_9_is_detected_then_resume_finishes); docs/reliability.md has the full table.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tune_helpers import add_training_data, tiny_model_dir, wait_for, wait_status
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.run import resume_run
from tunelab.engine.training import jobs
from tunelab.engine.training.checkpoint import latest_checkpoint
from tunelab.engine.training.config import TrainingConfig
from tunelab.store import NewDataset, NewSplit, PromptContent, Workspace, init_workspace

DONE = ("succeeded", "failed", "cancelled")
ROWS = [{"text": f"I just love waiting {i} hours for a bus", "label": ["irony", "non_irony"][i % 2]}
        for i in range(16)]  # fmt: skip

# Blocks (and records) any IP connection or name lookup in the tunelab process it is loaded into.
NO_NETWORK = """
import os, socket
_log = os.environ["HARDEN_NET_LOG"]
def _refuse(what):
    with open(_log, "a") as fh:
        fh.write(what + "\\n")
    raise OSError("network use blocked by the hardening test: " + what)
_connect = socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse(f"connect {address!r}")
    return _connect(self, address)
socket.socket.connect = connect
socket.socket.connect_ex = lambda self, address: _refuse(f"connect_ex {address!r}")
socket.getaddrinfo = lambda *a, **k: _refuse(f"getaddrinfo {a[:2]!r}")
"""


def no_network_env(tmp_path: Path) -> dict[str, str]:
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    log = tmp_path / "network.log"
    log.touch()
    path = os.pathsep.join(filter(None, [str(guard), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "HARDEN_NET_LOG": str(log)}


def _irony_workspace(workspace: Workspace) -> None:
    with workspace.open_store() as store:
        store.add_dataset(
            NewDataset(
                name="irony", source="test", fingerprint="fp", task="classification",
                splits=[NewSplit("test", ROWS, "fp-test")], input_columns=["text"],
                reference_column="label", labels=["irony", "non_irony"], metrics=["accuracy"],
            )
        )  # fmt: skip
        template = "Is this tweet ironic? Reply irony or non_irony.\n\nTweet: {{ text }}"
        store.save_prompt_version(
            "irony", PromptContent(template=template, settings={"max_new_tokens": 3})
        )


def _outputs(workspace: Workspace, run_id: int) -> list[tuple[int, int, str]]:
    conn = sqlite3.connect(f"file:{workspace.db_path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT id, row_idx, output FROM run_outputs WHERE run_id = ? ORDER BY id", [run_id]
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.model
def test_kill_9_of_an_evaluation_keeps_rows_and_resume_finishes_once(
    workspace: Workspace, tmp_path: Path
) -> None:
    _irony_workspace(workspace)
    env = {**os.environ, **no_network_env(tmp_path), "TUNELAB_WORKSPACE": str(workspace.root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "eval", "--prompt", "irony", "--dataset", "irony",
         "--batch-size", "1", "--no-cache", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(_outputs(workspace, 1)) >= 2 or proc.poll() is not None, 300,
                 "two scored rows")  # fmt: skip
        assert proc.poll() is None, proc.communicate()
        # While it runs, nobody else may resume (and so double-write) the same run.
        with workspace.open_store() as store, pytest.raises(BadInputError) as busy:
            resume_run(store, 1)
        assert f"still running in process {proc.pid}" in str(busy.value)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = _outputs(workspace, 1)
    assert 2 <= len(kept) < len(ROWS)
    assert len({row for _, row, _ in kept}) == len(kept)

    listed = run_cli("run", "list", "--json", workspace=workspace)
    run = json.loads(listed.stdout)[0]
    assert run["status"] == "interrupted", run  # not 'running' forever
    assert f"process {proc.pid} vanished (killed or crashed)" in run["error"]
    assert f"after {len(kept)} of {len(ROWS)} rows" in run["error"]
    assert "tunelab eval --resume 1" in run["error"]

    resumed = run_cli("eval", "--resume", "1", "--batch-size", "4", "--json", workspace=workspace,
                      env=no_network_env(tmp_path))  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    payload = json.loads(resumed.stdout)
    assert payload["run_id"] == 1 and payload["status"] == "succeeded"
    assert payload["rows"] == len(ROWS) and payload["new_rows"] == len(ROWS) - len(kept)
    final = _outputs(workspace, 1)
    assert sorted(row for _, row, _ in final) == list(range(len(ROWS)))  # each row exactly once
    assert final[: len(kept)] == kept  # the rows scored before the kill are untouched
    assert (tmp_path / "network.log").read_text() == ""


# The job worker with a disk that fills during the Nth checkpoint save: a partial file is
# written, then the write fails with ENOSPC, as a full disk does.
FULL_DISK_WORKER = """
import errno, os, sys
from pathlib import Path
what, fail_at = os.environ.get("HARDEN_FAIL_WHAT"), int(os.environ.get("HARDEN_FAIL_AT", "0"))
calls = {"n": 0}

def full(path, data):
    Path(path).write_bytes(data[: len(data) // 2])
    raise OSError(errno.ENOSPC, "No space left on device", str(path))

if what == "weights":
    import peft.peft_model as pm
    real_save = pm.safe_save_file
    def save_file(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] == fail_at:
            full(filename, b"x" * 4096)
        return real_save(tensors, filename, metadata=metadata)
    pm.safe_save_file = save_file
elif what == "state":
    import io, torch
    real_torch_save = torch.save
    def save(obj, f, *args, **kwargs):
        if "trainer_state" in str(f):
            calls["n"] += 1
            if calls["n"] == fail_at:
                buffer = io.BytesIO()
                real_torch_save(obj, buffer)
                full(f, buffer.getvalue())
        return real_torch_save(obj, f, *args, **kwargs)
    torch.save = save

from tunelab.engine.training.worker import main
sys.exit(main())
"""


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("what", ["weights", "state"])
def test_disk_full_during_a_checkpoint_save(
    workspace: Workspace, tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    what: str,
) -> None:  # fmt: skip
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    script = tmp_path / "full_disk_worker.py"
    script.write_text(FULL_DISK_WORKER)
    monkeypatch.setattr(jobs, "worker_command", lambda ws, job_id, kind="finetune": [
        sys.executable, str(script), "--workspace", str(ws.root), str(job_id)])  # fmt: skip
    monkeypatch.setenv("HARDEN_FAIL_WHAT", what)
    monkeypatch.setenv("HARDEN_FAIL_AT", "2")
    store = workspace.open_store()
    base, dataset, version = add_training_data(store, tiny_dir)
    config = TrainingConfig(max_steps=6, batch_size=4, max_seq_len=48, eval_every_steps=0,
                            save_every_steps=2)  # fmt: skip
    job = jobs.launch_job(workspace, store, config, base, dataset, version.ref)
    failed = wait_status(store, job.id, DONE, timeout=400)

    assert failed.status == "failed", (failed.status, failed.error)
    assert "disk full while saving checkpoint step-000004" in (failed.error or "")
    assert f"tunelab jobs resume {job.id}" in (failed.error or "")
    out = Path(failed.output_dir)
    assert not [p.name for p in out.rglob("*") if p.name.endswith(".tmp")], "temp files left"
    previous = latest_checkpoint(out)
    assert previous is not None and previous.name == "step-000002"
    base_model = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    PeftModel.from_pretrained(base_model, str(previous))  # plain peft loads it

    conn = sqlite3.connect(workspace.db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    models = store.models_of_job(job.id)
    assert [m.step for m in models] == ([2] if what == "weights" else [2, 4])
    for model in models:  # no model row points at a missing or partial folder
        assert (Path(model.path) / "adapter_config.json").is_file(), model.path
        assert (Path(model.path) / "adapter_model.safetensors").stat().st_size > 4096

    if what == "state":  # space freed: resume continues from step 2 and finishes
        monkeypatch.delenv("HARDEN_FAIL_WHAT")
        jobs.resume_job(workspace, store, job.id)
        done = wait_status(store, job.id, DONE, timeout=400)
        assert done.status == "succeeded", done.error
        assert done.progress["step"] == 6
        assert any(e.message.startswith("resumed from step 2") for e in store.job_events(job.id))
        assert [m.step for m in store.models_of_job(job.id)] == [2, 4, 6]
    store.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_database_from_a_newer_tunelab_is_refused_untouched(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    conn = sqlite3.connect(ws.db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('tunelab', 'm999_from_the_future', '2030-01-01')"
    )
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = _digest(ws.db_path)
    for args in (["prompt", "list"], ["run", "list"], ["init", str(ws.root)]):
        result = run_cli(*args, workspace=ws)
        assert result.returncode == 2, (args, result.stderr)
        assert "newer tunelab" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert _digest(ws.db_path) == before
    names = sqlite3.connect(ws.db_path).execute("SELECT name FROM _sqlite_migrations").fetchall()
    assert ("m999_from_the_future",) in names


def test_corrupt_database_is_reported_never_overwritten(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    for suffix in ("-wal", "-shm"):
        Path(str(ws.db_path) + suffix).unlink(missing_ok=True)
    ws.db_path.write_bytes(b"\x00garbage, not SQLite\x00" * 512)
    before = _digest(ws.db_path)
    for args in (["prompt", "list"], ["dataset", "list"], ["init", str(ws.root)]):
        result = run_cli(*args, workspace=ws)
        assert result.returncode == 2, (args, result.stderr)
        assert "not a readable" in result.stderr and "Traceback" not in result.stderr
        assert str(ws.db_path) in result.stderr.replace("\n", "")
    assert _digest(ws.db_path) == before


def _exited(pid: int) -> bool:
    """True once `pid` is gone or a zombie (the detached worker is nobody's child here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def test_workspace_files_are_owner_only(
    workspace: Workspace, tmp_path: Path, tiny_dir: Path
) -> None:
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text(
            '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'
        )
    template = tmp_path / "t.j2"
    template.write_text("{{ text }}")
    env = no_network_env(tmp_path)
    for args in (["dataset", "add", str(tmp_path / "train.jsonl"),
                  str(tmp_path / "validation.jsonl"), "--name", "d"],
                 ["prompt", "new", "p", "--template-file", str(template)],
                 ["tune", "--base", str(tiny_dir), "--dataset", "d", "--prompt", "p@1",
                  "--batch-size", "1", "--max-steps", "1", "--max-seq-len", "32",
                  "--eval-samples", "2", "--json"]):  # fmt: skip
        result = run_cli(*args, workspace=workspace, env=env)
        assert result.returncode == 0, (args, result.stderr)
    job_id = json.loads(result.stdout)["job_id"]
    with workspace.open_store() as store:
        job = wait_status(store, job_id, DONE, timeout=400)
    # The worker writes its last files after it marks the job done: wait until it has exited.
    wait_for(lambda: job.pid is None or _exited(job.pid), timeout=120, what="the job's worker")
    exposed = [
        f"{oct(p.stat().st_mode & 0o777)} {p}"
        for p in workspace.dir.rglob("*")
        if not p.is_symlink() and p.stat().st_mode & 0o077
    ]
    assert not exposed, exposed
    assert (tmp_path / "network.log").read_text() == ""


def test_runs_whose_process_vanished_are_marked_interrupted(workspace: Workspace) -> None:
    import socket

    from tunelab.engine.evaluation.run import refresh_run_states
    from tunelab.store import NewModel

    _irony_workspace(workspace)
    store = workspace.open_store()
    model = store.add_model(NewModel("builtin", "base", "builtin", "builtin"))
    ids = (store.get_prompt_version("irony").id, model.id, store.get_dataset("irony").id)
    runs = [store.create_run(*ids, "test", rows_total=8, settings={}) for _ in range(4)]
    assert runs[0].pid == os.getpid() and runs[0].host == socket.gethostname()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    conn = sqlite3.connect(workspace.db_path)
    conn.execute("UPDATE runs SET pid = ? WHERE id = ?", [gone.pid, runs[1].id])  # killed
    conn.execute("UPDATE runs SET pid_start = pid_start + 7 WHERE id = ?", [runs[2].id])  # reused
    conn.execute("UPDATE runs SET pid = NULL WHERE id = ?", [runs[3].id])  # before m002
    conn.commit()
    conn.close()
    changed = refresh_run_states(store)
    assert [r.id for r in changed] == [runs[1].id, runs[2].id]
    statuses = [store.get_run(r.id).status for r in runs]
    assert statuses == ["running", "interrupted", "interrupted", "running"]
    assert f"process {gone.pid} vanished" in (store.get_run(runs[1].id).error or "")
    assert refresh_run_states(store) == []
    with pytest.raises(BadInputError, match=f"still running in process {os.getpid()}"):
        resume_run(store, runs[0].id)  # alive: never two writers on one run
    store.close()


async def test_the_runs_screen_shows_a_vanished_run_as_interrupted(workspace: Workspace) -> None:
    """The TUI, like the CLI, marks a run whose process died instead of showing it running."""
    from tests.tui_helpers import screen_text, show_screen
    from tunelab.store import NewModel
    from tunelab.tui.app import make_app
    from tunelab.tui.config import UserSettings

    _irony_workspace(workspace)
    with workspace.open_store() as store:
        model = store.add_model(NewModel("builtin", "base", "builtin", "builtin"))
        ids = (store.get_prompt_version("irony").id, model.id, store.get_dataset("irony").id)
        run = store.create_run(*ids, "test", rows_total=8, settings={})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    conn = sqlite3.connect(workspace.db_path)
    conn.execute("UPDATE runs SET pid = ? WHERE id = ?", [gone.pid, run.id])
    conn.commit()
    conn.close()
    app = make_app(workspace, settings=UserSettings())
    async with app.run_test(size=(120, 30)) as pilot:
        await show_screen(app, pilot, "4", "Runs")
        assert "interrupted" in screen_text(app)
        assert app.store.get_run(run.id).status == "interrupted"

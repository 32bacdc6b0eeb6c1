"""Hardening: many writers on one workspace at once, with nothing lost and no "database is
locked".

Four processes write through the real store for a while, as tunelab does in use: two
training jobs (progress, metric series, events, and a heartbeat thread on its own
connection, as `engine/job_worker.py` does), a CLI evaluation (runs, outputs in chunks,
response cache, final metrics) and the TUI (worker threads saving prompt versions, moving
labels, rating outputs, and reading the lists it shows); meanwhile the real `tunelab`
command saves prompt versions and moves a label in a loop. Each counts what it wrote; every
count must be in the database afterwards, and no process may see an error. The default
run writes for ~20 s; the `slow` variant for three minutes.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tunelab.store import NewDataset, NewModel, NewSplit, PromptContent, Workspace

WRITER = r"""
import json, random, sys, threading, time, traceback
from tunelab.store import CachedResponse, NewRunOutput, PromptContent, find_workspace

role, root, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
store = find_workspace(root).open_store()
deadline = time.monotonic() + seconds
counts = {}
errors = []
slowest = [0.0]
lock = threading.Lock()

def bump(name, n=1):
    with lock:
        counts[name] = counts.get(name, 0) + n

def timed(call, *args, **kwargs):
    started = time.perf_counter()
    value = call(*args, **kwargs)
    with lock:
        slowest[0] = max(slowest[0], time.perf_counter() - started)
    return value

def guarded(body):
    def run():
        try:
            body()
        except BaseException:
            with lock:
                errors.append(traceback.format_exc())
    return run

def job():
    job = timed(store.create_job, "lora", {"max_steps": 10**6}, None, None, None)
    timed(store.update_job, job.id, ("started", "started"), status="running")
    bump("jobs")
    def heartbeat():
        beat = find_workspace(root).open_store()  # its own connection, as the worker's
        while time.monotonic() < deadline:
            timed(beat.update_job, job.id, heartbeat_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
            bump("heartbeats")
            time.sleep(0.05)
        beat.close()
    beat = threading.Thread(target=guarded(heartbeat))
    beat.start()
    step = 0
    while time.monotonic() < deadline:
        step += 1
        timed(store.add_job_metrics, job.id, step, {"train_loss": 1 / step, "lr": 1e-4})
        bump("job_metrics", 2)
        timed(store.update_job, job.id, progress={"step": step, "phase": "train"})
        if step % 10 == 0:
            timed(store.add_job_event, job.id, "progress", f"step {step}")
            bump("job_events")
    beat.join()
    timed(store.update_job, job.id, ("finished", "finished"), status="succeeded")
    with lock:
        counts["job_id"] = job.id

def evaluation():
    ids = json.loads(sys.argv[5])
    while time.monotonic() < deadline:
        run = timed(store.create_run, ids["version"], ids["model"], ids["dataset"], "test",
                    rows_total=40, settings={}, metric_names=["accuracy"])
        bump("runs")
        for start in range(0, 40, 4):
            outputs = [NewRunOutput(row_idx=i, rendered_prompt=f"p{i}", output="irony",
                                    prediction="irony", reference="irony",
                                    scores={"accuracy": 1.0}) for i in range(start, start + 4)]
            bump("run_outputs", timed(store.add_run_outputs, run.id, outputs))
            timed(store.cache_responses, {f"{run.id}-{i}": CachedResponse("irony", 3, 1)
                                          for i in range(start, start + 4)})
            bump("cache", 4)
        timed(store.finish_run, run.id, "succeeded", {"accuracy": 1.0})

def tui():
    def prompts():
        n = 0
        while time.monotonic() < deadline:
            n += 1
            saved = timed(store.save_prompt_version, "tui",
                          PromptContent(template=f"Version {n}: {{{{ text }}}}"))
            bump("versions")
            timed(store.set_label, saved.version.ref, "staging")
            bump("label_events")
    def ratings():
        while time.monotonic() < deadline:
            rows = store.db.execute("SELECT id FROM run_outputs ORDER BY id DESC LIMIT 50")
            ids = [r[0] for r in rows.fetchall()]
            if ids:
                timed(store.rate_output, random.choice(ids), random.randint(1, 5), "tui")
                bump("ratings")
            time.sleep(0.01)
    def reader():
        while time.monotonic() < deadline:
            store.list_runs(limit=50)
            store.list_jobs()
            store.list_prompts()
            bump("reads")
    threads = [threading.Thread(target=guarded(f)) for f in (prompts, ratings, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

guarded({"job": job, "eval": evaluation, "tui": tui}[role])()
store.close()
with open(out, "w") as fh:
    json.dump({"counts": counts, "errors": errors, "slowest_write_s": slowest[0]}, fh)
"""


def _prepare(workspace: Workspace) -> dict[str, int]:
    with workspace.open_store() as store:
        model = store.add_model(NewModel("builtin", "base", "builtin", "builtin"), exist_ok=True)
        dataset = store.add_dataset(
            NewDataset(
                name="d", source="test", fingerprint="fp", task="classification",
                splits=[NewSplit("test", [{"text": "t", "label": "irony"}] * 40, "fp")],
                input_columns=["text"], reference_column="label", labels=["irony", "no"],
            )
        )  # fmt: skip
        version = store.save_prompt_version("p", PromptContent(template="{{ text }}")).version
        return {"model": model.id, "dataset": dataset.id, "version": version.id}


def _soak(workspace: Workspace, tmp_path: Path, seconds: float) -> None:
    ids = _prepare(workspace)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    roles = ["job", "job", "eval", "tui"]
    procs = []
    for i, role in enumerate(roles):
        out = tmp_path / f"{role}-{i}.json"
        args = [sys.executable, str(script), role, str(workspace.root), str(seconds), str(out),
                json.dumps(ids)]  # fmt: skip
        procs.append((role, out, subprocess.Popen(args, stderr=subprocess.PIPE, text=True)))
    # Meanwhile, the real `tunelab` command saves prompt versions and moves a label.
    cli_versions = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        template = tmp_path / "cli.j2"
        template.write_text(f"CLI version {cli_versions + 1}: {{{{ text }}}}")
        saved = run_cli("prompt", "new", "cli", "--template-file", str(template), "--json",
                        workspace=workspace)  # fmt: skip
        assert saved.returncode == 0, saved.stderr
        version = json.loads(saved.stdout)["version"]
        moved = run_cli("prompt", "label", f"cli@{version}", "production", workspace=workspace)
        assert moved.returncode == 0, moved.stderr
        cli_versions += 1
    reports = []
    for role, out, proc in procs:
        _, stderr = proc.communicate(timeout=seconds + 240)
        assert proc.returncode == 0, (role, stderr)
        reports.append((role, json.loads(out.read_text())))
    for role, report in reports:
        assert report["errors"] == [], (role, report["errors"][0])
    total: dict[str, int] = {}
    for _, report in reports:
        for name, value in report["counts"].items():
            if name != "job_id":
                total[name] = total.get(name, 0) + value

    slowest = max(report["slowest_write_s"] for _, report in reports)
    print(
        f"soak {seconds:.0f}s: {total}; {cli_versions} CLI versions; slowest write {slowest:.2f}s"
    )  # shown with -s

    conn = sqlite3.connect(workspace.db_path)
    count = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    assert count("PRAGMA integrity_check") == "ok"
    assert count("SELECT COUNT(*) FROM jobs") == total["jobs"] == 2
    assert count("SELECT COUNT(*) FROM job_metrics") == total["job_metrics"]
    events = "SELECT COUNT(*) FROM job_events WHERE kind = 'progress'"
    assert count(events) == total.get("job_events", 0)
    assert count("SELECT COUNT(*) FROM runs") == total["runs"]
    assert count("SELECT COUNT(*) FROM run_outputs") == total["run_outputs"] == 40 * total["runs"]
    assert count("SELECT COUNT(*) FROM runs WHERE status != 'succeeded'") == 0
    assert count("SELECT COUNT(*) FROM response_cache") == total["cache"]
    assert count("SELECT COUNT(*) FROM ratings") == total.get("ratings", 0)
    tui_versions = "SELECT COUNT(*) FROM prompt_versions v JOIN prompts p ON p.id = v.prompt_id"
    assert count(tui_versions + " WHERE p.name = 'tui'") == total["versions"]
    assert count(tui_versions + " WHERE p.name = 'cli'") == cli_versions
    label_events = total["label_events"] + cli_versions
    assert count("SELECT COUNT(*) FROM prompt_label_events") == label_events
    for _, report in reports:  # every job's last progress write is the one kept
        job_id = report["counts"].get("job_id")
        if job_id:
            steps = count(f"SELECT MAX(step) FROM job_metrics WHERE job_id = {job_id}")
            progress = json.loads(count(f"SELECT progress FROM jobs WHERE id = {job_id}"))
            assert progress["step"] == steps
    conn.close()
    # Something real happened on every side.
    assert total["job_metrics"] > 50 and total["runs"] >= 2 and total["versions"] > 5
    assert total["heartbeats"] > 10 and total["reads"] > 5 and cli_versions >= 2


def test_tui_two_jobs_and_an_eval_write_at_once(workspace: Workspace, tmp_path: Path) -> None:
    _soak(workspace, tmp_path, seconds=20)


@pytest.mark.slow
def test_soak_three_minutes_of_concurrent_writers(workspace: Workspace, tmp_path: Path) -> None:
    _soak(workspace, tmp_path, seconds=180)


@pytest.mark.slow
@pytest.mark.model
def test_real_jobs_eval_and_tui_writers_at_once(workspace: Workspace, tmp_path: Path) -> None:
    """The same with real processes: two tiny training jobs (allowed to run side by side), a real
    `tunelab eval` on the built-in model, and the TUI's writers, until all are done."""
    from tests.tune_helpers import irony_rows, tiny_model_dir, wait_for
    from tunelab.engine.training.jobs import MAX_RUNNING_ENV

    tiny = tiny_model_dir(tmp_path)
    for split, rows in (("train", irony_rows(32)), ("validation", irony_rows(8, offset=32))):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "t.j2").write_text("Ironic? irony or non_irony.\n{{ text }}")
    env = {MAX_RUNNING_ENV: "2"}
    for args in (["dataset", "add", str(tmp_path / "train.jsonl"),
                  str(tmp_path / "validation.jsonl"), "--name", "irony"],
                 ["prompt", "new", "irony", "--template-file", str(tmp_path / "t.j2"),
                  "--max-tokens", "3"]):  # fmt: skip
        assert run_cli(*args, workspace=workspace).returncode == 0
    job_ids = []
    for _ in range(2):
        tune = run_cli("tune", "--base", str(tiny), "--dataset", "irony", "--prompt", "irony@1",
                       "--max-steps", "60", "--batch-size", "4", "--max-seq-len", "48",
                       "--eval-every", "20", "--eval-samples", "4", "--json",
                       workspace=workspace, env=env)  # fmt: skip
        assert tune.returncode == 0, tune.stderr
        job_ids.append(json.loads(tune.stdout)["job_id"])
    ids = {"model": 0, "dataset": 0, "version": 0}
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    seconds = 60.0
    tui = subprocess.Popen([sys.executable, str(script), "tui", str(workspace.root),
                            str(seconds), str(tmp_path / "tui.json"), json.dumps(ids)],
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    evaluation = run_cli("eval", "--prompt", "irony", "--dataset", "irony", "--split",
                         "validation", "--batch-size", "2", "--no-cache", "--json",
                         workspace=workspace)  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr
    _, tui_err = tui.communicate(timeout=seconds + 240)
    assert tui.returncode == 0, tui_err
    report = json.loads((tmp_path / "tui.json").read_text())
    assert report["errors"] == [], report["errors"][0]

    conn = sqlite3.connect(workspace.db_path)
    count = lambda sql, *p: conn.execute(sql, p).fetchone()[0]  # noqa: E731

    def finished() -> bool:
        done = ("succeeded", "failed", "cancelled")
        return all(count("SELECT status FROM jobs WHERE id = ?", j) in done for j in job_ids)

    wait_for(finished, 600, "both jobs to end")
    run_id = json.loads(evaluation.stdout)["run_id"]
    assert count("SELECT COUNT(DISTINCT row_idx) FROM run_outputs WHERE run_id = ?", run_id) == 8
    assert count("SELECT COUNT(*) FROM run_outputs WHERE run_id = ?", run_id) == 8
    for job_id in job_ids:
        assert count("SELECT status FROM jobs WHERE id = ?", job_id) == "succeeded", count(
            "SELECT error FROM jobs WHERE id = ?", job_id
        )
        loss = (
            "SELECT COUNT(*), COUNT(DISTINCT step) FROM job_metrics WHERE job_id = ? AND name = ?"
        )
        assert conn.execute(loss, [job_id, "train_loss"]).fetchone() == (60, 60)
        assert count("SELECT COUNT(*) FROM models WHERE job_id = ?", job_id) == 3
        log = Path(count("SELECT log_path FROM jobs WHERE id = ?", job_id)).read_text()
        assert "database is locked" not in log
    tui_versions = "SELECT COUNT(*) FROM prompt_versions v JOIN prompts p ON p.id = v.prompt_id"
    assert count(tui_versions + " WHERE p.name = 'tui'") == report["counts"]["versions"]
    assert count("SELECT COUNT(*) FROM ratings") == report["counts"].get("ratings", 0)
    assert count("PRAGMA integrity_check") == "ok"
    conn.close()
    assert "database is locked" not in evaluation.stderr

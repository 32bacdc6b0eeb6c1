"""`tunelab optimize` through the real entry point: one-line bad input, and a small search."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, shared_dataset
from tunelab.store import NewDataset, NewSplit, PromptContent, Workspace

TEMPLATE = "Is this tweet ironic? Answer irony or non_irony.\n\nTweet: {{ text }}\nAnswer:"


def _rows(name: str, n: int) -> list[dict[str, str]]:
    with shared_dataset(name).open(encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(n)]


@pytest.fixture
def irony_ws(workspace: Workspace) -> Workspace:
    with workspace.open_store() as store:
        store.add_dataset(
            NewDataset(
                name="irony",
                source="tweeteval-irony",
                fingerprint="f",
                splits=[
                    NewSplit("train", _rows("tweeteval-irony-train.jsonl", 6), "a"),
                    NewSplit("validation", _rows("tweeteval-irony-val.jsonl", 4), "b"),
                    NewSplit("test", _rows("tweeteval-irony-test.jsonl", 2), "c"),
                ],
                task="classification",
                input_columns=["text"],
                reference_column="label",
                labels=["irony", "non_irony"],
                metrics=["accuracy"],
            )
        )
        store.save_prompt_version("irony", PromptContent(template=TEMPLATE, mode="plain"))
        store.save_prompt_version(
            "drawn", PromptContent(template=TEMPLATE, settings={"fewshot": {"k": 2}})
        )
        store.save_prompt_version("fixed", PromptContent(template="Is it ironic? Answer:"))
    return workspace


BASE = ["optimize", "--prompt", "irony@1", "--dataset", "irony"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([*BASE, "--budget", "0"], "budget must be at least 1"),
        ([*BASE, "--budget", "4", "--strategy", "grid"], "unknown strategy 'grid'"),
        (
            ["optimize", "--prompt", "drawn@1", "--dataset", "irony", "--budget", "4"],
            "draws its own few-shot examples",
        ),
        ([*BASE, "--budget", "4"], "fewer than the first halving rung of 8"),
        ([*BASE, "--budget", "4", "--val-split", "test"], "never uses the 'test' split"),
        ([*BASE, "--budget", "4", "--k-range", "9..2"], "k range"),
        ([*BASE, "--budget", "4", "--instructions", "/nonexistent.txt"], "cannot read"),
        ([*BASE, "--budget", "4", "--detach"], "fewer than the first halving rung of 8"),
        ([*BASE, "--budget", "4", "--first-rung", "2", "--train-split", "nope"], "nope"),
        (
            ["optimize", "--prompt", "fixed@1", "--dataset", "irony", "--budget", "4"],
            "no slot for demonstrations",
        ),
        ([*BASE, "--budget", "4", "--calibration", "platt"], "--calibration 'platt'"),
        (
            [*BASE, "--budget", "4", "--calibration", "batch", "--scoring", "generate"],
            "calibration applies to likelihood scoring",
        ),
        (
            [*BASE, "--budget", "4", "--demo-selection", "bm25", "--k-range", "0..0"],
            "retrieved demonstrations need k >= 1",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(irony_ws: Workspace, args: list[str], needle: str) -> None:
    result = run_cli(*args, workspace=irony_ws)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_optimize_show_before_any_search_and_optimize_without_its_options(
    irony_ws: Workspace,
) -> None:
    shown = run_cli("optimize", "show", "irony@1", workspace=irony_ws)
    assert shown.returncode == 0, shown.stderr
    assert "no search from irony@1 has been scored yet" in shown.stdout
    bare = run_cli("optimize", "--dataset", "irony", workspace=irony_ws)
    assert bare.returncode == 2
    assert bare.stderr.strip().splitlines() == [
        "error: name the seed, the data and the budget: --prompt NAME@V --dataset D --budget N"
    ]


@pytest.mark.model
@pytest.mark.slow  # ~40 s on 2 busy cores; the detached test below covers the CLI by default
def test_optimize_runs_a_search_and_labels_the_best(irony_ws: Workspace, tmp_path: Path) -> None:
    instructions = tmp_path / "instructions.txt"
    instructions.write_text("Say whether the tweet is ironic.\n\nIs it irony?\n")
    args = [*BASE, "--budget", "3", "--first-rung", "2", "--k-range", "0..1"]
    args += ["--pool-size", "3", "--instructions", str(instructions), "--strategy", "tpe"]
    result = run_cli(*args, "--json", workspace=irony_ws)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["candidates"]) == 3
    assert data["splits_read"] == ["train", "validation"]
    with irony_ws.open_store() as store:
        assert store.get_prompt_version("irony:optimized").ref == data["best_ref"]
    table = run_cli(*args, workspace=irony_ws)
    assert table.returncode == 0, table.stderr
    assert "labelled optimized" in table.stdout
    assert f"{data['evaluations']} reused" in table.stdout


@pytest.mark.model
def test_a_detached_search_outlives_its_command_and_labels_the_best(irony_ws: Workspace) -> None:
    args = [*BASE, "--budget", "2", "--first-rung", "4", "--k-range", "1..1", "--pool-size", "2"]
    started = run_cli(*args, "--detach", "--json", workspace=irony_ws)
    assert started.returncode == 0, started.stderr
    launched = json.loads(started.stdout)
    log = Path(launched["log"])
    assert log.parent == irony_ws.logs_dir and log.stat().st_mode & 0o077 == 0
    deadline = time.monotonic() + 240
    while _alive(launched["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling a condition with a deadline, not a fixed pause
    assert not _alive(launched["pid"]), "the detached search did not finish in time"
    with irony_ws.open_store() as store:
        best = store.get_prompt_version("irony:optimized")
        job = store.get_job(launched["job"])
    assert best.parent_version_id is not None, log.read_text()
    # A queued job like fine-tuning: its status, and its progress in the store.
    assert (job.kind, job.status, job.method) == ("optimize", "succeeded", "prompt-search")
    assert job.progress["step"] == job.progress["total_steps"] == 2
    assert job.progress["best"]["value"] >= 0
    listed = run_cli("jobs", "list", "--json", workspace=irony_ws)
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout) if j["kind"] == "optimize"] == [job.id]
    assert f"job {job.id}: succeeded" in log.read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A finished child of an exited parent is reaped by init; a zombie counts as finished.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.model
@pytest.mark.slow  # ~40 s: two workers load the model; the engine's stop test is the quick one
def test_a_killed_search_job_resumes_with_jobs_resume_reusing_its_evaluations(
    irony_ws: Workspace,
) -> None:
    args = [*BASE, "--budget", "3", "--first-rung", "2", "--k-range", "1..2", "--pool-size", "3"]
    started = run_cli(*args, "--detach", "--json", workspace=irony_ws)
    assert started.returncode == 0, started.stderr
    launched = json.loads(started.stdout)
    pid, job_id = launched["pid"], launched["job"]
    deadline = time.monotonic() + 240
    with irony_ws.open_store() as store:
        while time.monotonic() < deadline and _alive(pid):
            if sum(1 for r in store.list_runs() if r.status == "succeeded") >= 2:
                break
            time.sleep(0.1)  # polling a condition with a deadline, not a fixed pause
        finished_before = {r.id for r in store.list_runs() if r.status == "succeeded"}
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)  # no chance to stop cleanly: the worst case
    assert len(finished_before) >= 2
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # the kill lands asynchronously; wait for it, with a deadline
    shown = run_cli("jobs", "show", str(job_id), "--json", workspace=irony_ws)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "failed"  # the vanished worker was noticed
    resumed = run_cli("jobs", "resume", str(job_id), workspace=irony_ws)
    assert resumed.returncode == 0, resumed.stderr
    deadline = time.monotonic() + 240
    with irony_ws.open_store() as store:
        while time.monotonic() < deadline and store.get_job(job_id).status in ("queued", "running"):
            time.sleep(0.2)  # polling a condition with a deadline, not a fixed pause
        job = store.get_job(job_id)
        assert job.status == "succeeded", job.error
        runs = [r for r in store.list_runs() if r.status == "succeeded"]
        # The evaluations finished before the kill were reused, not run again.
        assert finished_before <= {r.id for r in runs}
        keys = [(r.prompt_version_id, r.scoring, r.row_limit) for r in runs]
        assert len(keys) == len(set(keys))
        assert store.get_prompt_version("irony:optimized").parent_version_id is not None

"""Detached evaluations: a run row and a worker process that outlives its launcher.

`tunelab eval --detach` and the TUI's New evaluation both use `start_evaluation`; the worker
writes the run, a cancel stops it resumably, and a worker that dies or fails leaves a run
that says why in one line.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tune_helpers import wait_for
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.detached import (
    cancel_evaluation,
    eval_log_path,
    reap_eval_workers,
    start_evaluation,
)
from tunelab.engine.evaluation.request import EvalRequest
from tunelab.engine.evaluation.run import refresh_run_states
from tunelab.store import NewDataset, NewModel, NewSplit, PromptContent, Run, Store, Workspace
from tunelab.store.errors import NotFoundError

ROWS = [{"text": f"I just love waiting {i} hours for a bus", "label": ["irony", "non_irony"][i % 2]}
        for i in range(6)]  # fmt: skip
TEMPLATE = "Is this tweet ironic? Reply irony or non_irony.\n\nTweet: {{ text }}"


@pytest.fixture
def irony_ws(workspace: Workspace) -> Workspace:
    with workspace.open_store() as store:
        store.add_dataset(
            NewDataset(
                name="irony", source="test", fingerprint="fp", task="classification",
                splits=[NewSplit("test", ROWS, "fp-test")], input_columns=["text"],
                reference_column="label", labels=["irony", "non_irony"], metrics=["accuracy"],
            )
        )  # fmt: skip
        store.save_prompt_version(
            "irony", PromptContent(template=TEMPLATE, settings={"max_new_tokens": 3})
        )
    return workspace


def _request(**changes: object) -> EvalRequest:
    fields: dict[str, object] = {"prompt": "irony", "dataset": "irony", "latency_probe": 0}
    fields.update(changes)
    return EvalRequest(**fields)  # type: ignore[arg-type]


def _wait_finished(store: Store, run_id: int, timeout: float = 300) -> Run:
    def finished() -> Run | None:
        refresh_run_states(store)
        run = store.get_run(run_id)
        return run if run.status != "running" else None

    found: Run = wait_for(finished, timeout, f"run {run_id} to finish")
    return found


def test_bad_input_is_refused_before_a_run_or_a_process_exists(irony_ws: Workspace) -> None:
    with irony_ws.open_store() as store:
        with pytest.raises(NotFoundError, match="no split 'train'"):
            start_evaluation(irony_ws, store, _request(split="train"))
        with pytest.raises(BadInputError, match="starts a new run"):
            start_evaluation(irony_ws, store, _request(resume_run_id=1))
        assert store.list_runs() == []


def test_a_killed_worker_leaves_its_run_interrupted_with_why(irony_ws: Workspace) -> None:
    with irony_ws.open_store() as store:
        run = start_evaluation(irony_ws, store, _request())
        assert run.status == "running" and run.rows_total == len(ROWS)
        assert run.pid is not None and run.pid != os.getpid()  # owned by the worker, not us
        os.kill(run.pid, signal.SIGKILL)
        wait_for(lambda: run.pid in reap_eval_workers(), 30, "the killed worker to be reaped")
        finished = _wait_finished(store, run.id, 30)
        with pytest.raises(BadInputError, match="is interrupted; only a running evaluation"):
            cancel_evaluation(store, run.id)
    assert finished.status == "interrupted"
    assert f"process {run.pid} vanished (killed or crashed)" in (finished.error or "")
    assert f"tunelab eval --resume {run.id}" in (finished.error or "")


def test_detach_refuses_resume_and_judge_in_one_line(irony_ws: Workspace) -> None:
    resumed = run_cli("eval", "--resume", "1", "--detach", workspace=irony_ws)
    assert resumed.returncode == 2
    assert "--detach starts a new run" in resumed.stderr and "Traceback" not in resumed.stderr
    judged = run_cli("eval", "-p", "irony", "-d", "irony", "--detach", "--judge", "r@1",
                     workspace=irony_ws)  # fmt: skip
    assert judged.returncode == 2 and "judge it afterwards" in judged.stderr


@pytest.mark.model
def test_eval_detach_prints_the_run_and_the_worker_finishes_it(irony_ws: Workspace) -> None:
    started = run_cli("eval", "-p", "irony", "-d", "irony", "--limit", "3", "--batch-size", "3",
                      "--no-latency-probe", "--detach", "--json", workspace=irony_ws,
                      env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert started.returncode == 0, started.stderr
    payload = json.loads(started.stdout)
    assert payload["status"] == "running" and Path(payload["log"]).exists()
    with irony_ws.open_store() as store:
        finished = _wait_finished(store, payload["run_id"])
        assert finished.status == "succeeded", (finished.error, Path(payload["log"]).read_text())
        assert finished.rows_done == 3 and "accuracy" in finished.metrics
    assert f"run {payload['run_id']} succeeded" in Path(payload["log"]).read_text()
    shown = run_cli("eval", "-p", "irony", "-d", "irony", "--limit", "3", "--detach",
                    workspace=irony_ws)  # fmt: skip
    assert f"tunelab run show {payload['run_id'] + 1}" in shown.stdout


@pytest.mark.model
def test_cancel_stops_after_a_chunk_and_the_run_resumes(irony_ws: Workspace) -> None:
    with irony_ws.open_store() as store:
        run = start_evaluation(irony_ws, store, _request(batch_size=1))
        wait_for(lambda: store.get_run(run.id).rows_done >= 1, 300, "a first scored row")
        cancel_evaluation(store, run.id)
        stopped = _wait_finished(store, run.id)
    assert stopped.status == "interrupted", stopped.error
    assert 1 <= stopped.rows_done < len(ROWS)
    assert f"resume with `tunelab eval --resume {run.id}`" in (stopped.error or "")


@pytest.mark.model
def test_a_worker_that_fails_ends_its_run_failed_with_one_line(irony_ws: Workspace) -> None:
    gone = irony_ws.root / "gone-model"
    with irony_ws.open_store() as store:
        store.add_model(NewModel(name="gone", kind="base", source="hf_folder", path=str(gone)))
        run = start_evaluation(irony_ws, store, _request(model="gone"))
        failed = _wait_finished(store, run.id)
    assert failed.status == "failed"
    assert failed.error and "\n" not in failed.error and "Traceback" not in failed.error
    assert "Traceback" in eval_log_path(irony_ws, run.id).read_text()  # the rest is in the log

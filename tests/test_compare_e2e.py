"""End to end: a base-model run against a short LoRA run on the real built-in model.

Tiny on purpose (a few rows, two optimizer steps): the point is that real runs and a real
fine-tuning job flow through `compare` with their rows paired, their job's training time
priced, and the CLI answering in JSON, not that two steps of LoRA help.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import run_cli, shared_dataset
from tunelab.engine.compare.report import write_report
from tunelab.engine.compare.runs import compare_runs
from tunelab.store import NewDataset, NewSplit, PromptContent, Store, Workspace

LABELS = ["irony", "non_irony"]
TEMPLATE = "Is this tweet ironic? Reply with one word: irony or non_irony.\n\nTweet: {{ text }}"
TEST_ROWS = 6


def _rows(name: str, n: int) -> list[dict[str, str]]:
    with shared_dataset(name).open(encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(n)]


def _setup(store: Store) -> None:
    store.add_dataset(NewDataset(
        name="irony", source="tweeteval-irony", fingerprint="e2e",
        splits=[NewSplit("train", _rows("tweeteval-irony-train.jsonl", 16), "tr"),
                NewSplit("validation", _rows("tweeteval-irony-val.jsonl", 4), "va"),
                NewSplit("test", _rows("tweeteval-irony-test.jsonl", TEST_ROWS), "te")],
        task="classification", input_columns=["text"], reference_column="label",
        labels=LABELS, metrics=["accuracy", "macro_f1"],
    ))  # fmt: skip
    store.save_prompt_version(
        "irony", PromptContent(template=TEMPLATE, settings={"max_new_tokens": 4})
    )


def _evaluate(store: Store, model: str) -> int:
    from tunelab.engine.evaluation.run import EvalRequest, evaluate

    result = evaluate(
        store, EvalRequest(prompt="irony", model=model, dataset="irony", split="test", batch_size=3)
    )
    assert result.run.status == "succeeded"
    return result.run.id


def _train(store: Store, output_dir: Path) -> str:
    """Two LoRA steps as a recorded job; returns the name of the last checkpoint."""
    from tunelab.engine.models.sources import resolve_model
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.engine.training.loop import TrainingRequest, run_training

    base = resolve_model(store, "builtin")
    dataset = store.get_dataset("irony")
    version = store.get_prompt_version("irony@1")
    config = TrainingConfig(
        method="lora",
        max_steps=2,
        batch_size=4,
        max_seq_len=96,
        eval_every_steps=0,
        eval_samples=4,
        device="cpu",
    )
    job = store.create_job("lora", {"max_steps": 2}, base.id, dataset.id, version.id)
    # The job worker stamps these around run_training; here the test is the worker.
    store.update_job(job.id, status="running", started_at=datetime.now(UTC).isoformat())
    result = run_training(
        store, TrainingRequest(config, base.id, dataset.id, version.id, output_dir, job_id=job.id)
    )
    store.update_job(job.id, status="succeeded", finished_at=datetime.now(UTC).isoformat())
    assert result.model_ids
    return store.get_model_by_id(result.model_ids[-1]).name


@pytest.mark.model
def test_base_run_against_a_short_lora_run(workspace: Workspace, tmp_path: Path) -> None:
    pytest.importorskip("tunelab.engine.training.loop", reason="the fine-tuning engine is not here")
    store = workspace.open_store()
    try:
        _setup(store)
        base_run = _evaluate(store, "builtin")
        checkpoint = _train(store, tmp_path / "job")
        tuned_run = _evaluate(store, checkpoint)

        c = compare_runs(store, [base_run, tuned_run], n_boot=500, price_per_gpu_hour=2.0)
        assert c.rows == TEST_ROWS and not c.notes
        accuracy = c.metric("accuracy")
        assert accuracy.deltas[0].test == "mcnemar-exact"
        assert accuracy.ci_low is not None and accuracy.ci_high is not None
        assert accuracy.ci_low - 1e-9 <= accuracy.delta <= accuracy.ci_high + 1e-9
        assert c.metric("macro_f1").kind == "corpus"
        counts = c.pairs[0].counts
        assert counts is not None
        assert counts.fixed + counts.broken + counts.both_right + counts.both_wrong == TEST_ROWS
        base_cost, tuned_cost = c.costs
        assert base_cost.training_cost == 0 and base_cost.training_note.startswith("base")
        assert tuned_cost.training_seconds is not None and tuned_cost.training_seconds > 0
        assert tuned_cost.training_cost > 0
        assert tuned_cost.latency_p50_ms is not None and tuned_cost.latency_p50_ms > 0
        assert c.break_even[0].verdict
        write_report(c, tmp_path / "report.html")
        assert "mcnemar-exact" in (tmp_path / "report.html").read_text()
    finally:
        store.close()

    result = run_cli("compare", str(base_run), str(tuned_run), "--json", workspace=workspace)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["metrics"]["accuracy"]["delta"] == pytest.approx(accuracy.delta)
    assert data["fixed"] == counts.fixed and data["broken"] == counts.broken

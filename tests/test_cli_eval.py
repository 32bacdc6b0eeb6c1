"""`tunelab eval`, `run list|show|rate` and `generate` through the real entry point."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli, shared_dataset
from tunelab.store import NewDataset, NewSplit, PromptContent, Workspace

TEMPLATE = "Is this tweet ironic? Reply irony or non_irony.\n\nTweet: {{ text }}"


@pytest.fixture
def irony_ws(workspace: Workspace) -> Workspace:
    path = shared_dataset("tweeteval-irony-test.jsonl")
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(next(handle)) for _ in range(6)]
    with workspace.open_store() as store:
        store.add_dataset(
            NewDataset(
                name="irony",
                source=str(path),
                fingerprint="f",
                splits=[NewSplit("test", rows, "t")],
                task="classification",
                input_columns=["text"],
                reference_column="label",
                labels=["irony", "non_irony"],
                metrics=["accuracy", "macro_f1"],
            )
        )
        store.save_prompt_version(
            "irony", PromptContent(template=TEMPLATE, settings={"max_new_tokens": 3})
        )
    return workspace


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--prompt", "nope", "--dataset", "irony"], "unknown prompt 'nope'"),
        (["--prompt", "irony", "--dataset", "irony", "--scoring", "vibes"], "scoring"),
        (["--prompt", "irony", "--dataset", "irony", "--metric", "acc"], "unknown metric"),
        (["--prompt", "irony", "--dataset", "irony", "--set", "tempreature=1"], "tempreature"),
        (["--prompt", "irony", "--dataset", "irony", "--split", "train"], "train"),
        (["--dataset", "irony"], "--prompt"),
        (["--resume", "99"], "unknown run"),
        (["--prompt", "irony", "--dataset", "irony", "--latency-probe", "-1"], "latency-probe"),
    ],
)
def test_bad_input_exits_2_with_one_line(irony_ws: Workspace, args: list[str], needle: str) -> None:
    result = run_cli("eval", *args, "--json", workspace=irony_ws)
    assert result.returncode == 2, result.stderr
    assert needle in _one_error_line(result.stderr)
    assert result.stdout == ""


def test_run_commands_on_bad_ids(irony_ws: Workspace) -> None:
    shown = run_cli("run", "show", "42", workspace=irony_ws)
    assert shown.returncode == 2 and "unknown run" in _one_error_line(shown.stderr)
    listed = run_cli("run", "list", "--json", workspace=irony_ws)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    rated = run_cli("run", "rate", "1", "9", workspace=irony_ws)
    assert rated.returncode == 2 and "1 to 5" in _one_error_line(rated.stderr)


@pytest.mark.model
def test_eval_json_then_cached_rerun_and_run_commands(irony_ws: Workspace) -> None:
    args = [
        "eval",
        "--prompt",
        "irony@1",
        "--model",
        "builtin",
        "--dataset",
        "irony",
        "--limit",
        "3",
        "--batch-size",
        "3",
        "--json",
    ]
    first = run_cli(*args, "--latency-probe", "2", workspace=irony_ws)
    assert first.returncode == 0, first.stderr
    payload = json.loads(first.stdout)
    assert {"run_id", "rows", "cached_rows", "metrics"} <= set(payload)
    assert payload["rows"] == 3 and payload["cached_rows"] == 0
    assert 0 <= payload["metrics"]["accuracy"] <= 1
    assert 0 <= payload["metrics"]["macro_f1"] <= 1
    assert payload["metrics"]["probe_requests"] == 2
    assert payload["metrics"]["probe_latency_p50_ms"] > 0
    assert payload["metrics"]["rows_per_second"] > 0

    again = json.loads(run_cli(*args, "--no-latency-probe", workspace=irony_ws).stdout)
    assert again["run_id"] != payload["run_id"] and again["cached_rows"] == 3
    assert "probe_requests" not in again["metrics"]
    assert again["metrics"]["accuracy"] == payload["metrics"]["accuracy"]

    listed = json.loads(run_cli("run", "list", "--json", workspace=irony_ws).stdout)
    assert [r["id"] for r in listed] == [again["run_id"], payload["run_id"]]
    shown = run_cli(
        "run", "show", str(payload["run_id"]), "--json", "--outputs", workspace=irony_ws
    )
    detail = json.loads(shown.stdout)
    assert detail["run"]["status"] == "succeeded" and len(detail["outputs"]) == 3
    output_id = detail["outputs"][0]["id"]
    assert run_cli("run", "rate", str(output_id), "4", workspace=irony_ws).returncode == 0
    text = run_cli("run", "show", str(payload["run_id"]), "--outputs", workspace=irony_ws)
    assert text.returncode == 0 and "accuracy" in text.stdout


@pytest.mark.model
def test_generate_streams_one_prompt(irony_ws: Workspace) -> None:
    result = run_cli(
        "generate",
        "--prompt",
        "irony",
        "--model",
        "builtin",
        "--input",
        "text=I love Mondays, said no one ever",
        "--set",
        "max_new_tokens=4",
        workspace=irony_ws,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "time to first token" in result.stderr
    by_row = run_cli(
        "generate",
        "--prompt",
        "irony",
        "--dataset",
        "irony",
        "--row",
        "1",
        "--set",
        "max_new_tokens=2",
        workspace=irony_ws,
    )
    assert by_row.returncode == 0, by_row.stderr
    missing = run_cli("generate", "--prompt", "irony", "--input", "tweet=x", workspace=irony_ws)
    assert missing.returncode == 2 and "text" in _one_error_line(missing.stderr)


def test_a_run_with_no_scored_rows_shows_a_dash(irony_ws: Workspace) -> None:
    from tunelab.engine.models.sources import resolve_model

    with irony_ws.open_store() as store:
        version = store.get_prompt_version("irony")
        model = resolve_model(store, "builtin")
        run = store.create_run(
            version.id, model.id, store.get_dataset("irony").id, "test", 6, {},
            metric_names=["accuracy"],
        )  # fmt: skip
        # What an interrupted run with no rows used to store: an accuracy over nothing.
        store.finish_run(run.id, "interrupted", {"accuracy": 0.0})
    listed = run_cli("run", "list", workspace=irony_ws, env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert "—" in listed.stdout and "accuracy=0" not in listed.stdout
    shown = run_cli("run", "show", str(run.id), workspace=irony_ws, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "no rows scored" in shown.stdout and "0.0000" not in shown.stdout

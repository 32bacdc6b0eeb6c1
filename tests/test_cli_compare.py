"""`tunelab compare` and `tunelab diff` through the real entry point."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests import compare_helpers as h
from tests.conftest import run_cli
from tunelab.store import Workspace


@pytest.fixture
def runs(workspace: Workspace) -> dict[str, int]:
    """Base model with prompt p@1 vs a fine-tune with p@2 on one dataset, plus a stray run."""
    store = workspace.open_store()
    try:
        base = h.base_model(store)
        ft = h.finetuned_model(store, base, hours=1.0, gpus=2, config={"lora": {"r": 8}})
        ds = h.dataset(store, n=8)
        other = h.dataset(store, "other", n=8)
        v1 = h.prompt(store, "p", "Classify: {{ text }}")
        v2 = h.prompt(store, "p", "Classify the review: {{ text }}")
        a = h.classification_run(store, v1, base, ds, [1, 0, 0, 1, 0, 1, 0, 0], latency_ms=200)
        b = h.classification_run(store, v2, ft, ds, [1, 1, 1, 1, 0, 0, 1, 1], latency_ms=100)
        stray = h.classification_run(store, v1, base, other, [1] * 8)
        return {"a": a.id, "b": b.id, "stray": stray.id}
    finally:
        store.close()


def test_compare_json_has_values_delta_ci_p_test_and_counts(
    workspace: Workspace, runs: dict[str, int]
) -> None:
    args = ("compare", str(runs["a"]), str(runs["b"]), "--json", "--seed", "5",
            "--price-per-gpu-hour", "3.6")  # fmt: skip
    result = run_cli(*args, workspace=workspace)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    accuracy = data["metrics"]["accuracy"]
    assert accuracy["a"] == pytest.approx(3 / 8) and accuracy["b"] == pytest.approx(6 / 8)
    assert accuracy["delta"] == pytest.approx(3 / 8)
    assert accuracy["ci"]["low"] <= accuracy["delta"] <= accuracy["ci"]["high"]
    assert accuracy["test"] == "mcnemar-exact"
    assert accuracy["p_value"] == pytest.approx(2 * (1 + 5) / 32)  # 4 fixed, 1 broken
    assert (data["fixed"], data["broken"], data["both_right"], data["both_wrong"]) == (4, 1, 2, 1)
    assert data["break_even"][0]["requests"] == pytest.approx(72_000)
    again = run_cli(*args, workspace=workspace)
    assert json.loads(again.stdout)["metrics"] == data["metrics"]


def test_compare_tables_and_reports(
    workspace: Workspace, runs: dict[str, int], tmp_path: Path
) -> None:
    md, page = tmp_path / "report.md", tmp_path / "report.html"
    result = run_cli(
        "compare",
        str(runs["a"]),
        str(runs["b"]),
        "--report",
        str(md),
        "--row",
        "1",
        workspace=workspace,
        env={"COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    for text in (
        "accuracy",
        "mcnemar-exact",
        "fixed",
        "break-even",
        "72,000 requests",
        "row 1, run",
    ):
        assert text in result.stdout
    report = md.read_text()
    assert report.startswith("# Run comparison") and "| accuracy |" in report
    # The report's verdict names the runs by what they are and says how many rows it used.
    assert (
        f"not significant: run {runs['b']} (p@2 on LoRA job 1) differs from run {runs['a']} "
        "(p@1 on base) on accuracy by +0.375 on 8 rows, but the 95% CI"
    ) in report
    assert "fixed 4, broken 1, both right 2, both wrong 1" in report
    result = run_cli(
        "compare",
        str(runs["a"]),
        str(runs["b"]),
        "--report",
        str(page),
        "--json",
        workspace=workspace,
    )
    assert result.returncode == 0, result.stderr
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert not re.search(r"<script|<link|<img|src=|href=|@import|url\(", html)
    assert "mcnemar-exact" in html and "<del>pos</del>" in html


def test_compare_refuses_bad_input_with_one_line_and_exit_2(
    workspace: Workspace, runs: dict[str, int], tmp_path: Path
) -> None:
    cases = [
        ("compare", str(runs["a"]), str(runs["stray"])),
        ("compare", str(runs["a"]), "999"),
        ("compare", str(runs["a"]), str(runs["b"]), "--report", str(tmp_path / "r.pdf")),
    ]
    for args in cases:
        result = run_cli(*args, workspace=workspace)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert "same dataset and split" in run_cli(*cases[0], workspace=workspace).stderr


def test_diff_commands(workspace: Workspace, runs: dict[str, int]) -> None:
    result = run_cli("diff", "prompt", "p@1", "p@2", workspace=workspace)
    assert result.returncode == 0, result.stderr
    assert "-Classify: {{ text }}" in result.stdout
    assert "+Classify the review: {{ text }}" in result.stdout
    result = run_cli("diff", "model", "base", "ft", "--json", workspace=workspace)
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    assert model["lineage_b"] == ["ft", "base"]
    assert {"key": "lora.r", "a": None, "b": 8, "change": "added"} in model["config_changes"]
    result = run_cli("diff", "run", str(runs["a"]), str(runs["b"]), "--json", workspace=workspace)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["comparison"]["fixed"] == 4 and run["prompt"]["b_ref"] == "p@2"
    result = run_cli("diff", "prompt", "p@1", "p@7", workspace=workspace)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_compare_refuses_a_running_run_and_reads_a_killed_one_as_interrupted(
    workspace: Workspace, runs: dict[str, int]
) -> None:
    store = workspace.open_store()
    try:
        ds, base = store.get_dataset("ds"), store.get_model("base")
        v1 = store.get_prompt_version("p@1")
        # Both are left running by this (live) test process; then one's process "dies".
        live = h.classification_run(store, v1, base, ds, [1] * 8, finished=False)
        killed = h.classification_run(store, v1, base, ds, [0] * 8, finished=False)
    finally:
        store.close()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    conn = sqlite3.connect(workspace.db_path)
    conn.execute("UPDATE runs SET pid = ? WHERE id = ?", [gone.pid, killed.id])
    conn.commit()
    conn.close()

    refused = run_cli("compare", str(runs["a"]), str(live.id), workspace=workspace)
    assert refused.returncode == 2, refused.stdout
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert f"run {live.id} is still running" in refused.stderr
    assert "--allow-running" in refused.stderr
    args = ("compare", str(runs["a"]), str(live.id), "--allow-running", "--json")
    allowed = run_cli(*args, workspace=workspace)
    assert allowed.returncode == 0, allowed.stderr
    assert f"run {live.id} is running" in json.loads(allowed.stdout)["notes"]
    result = run_cli("compare", str(runs["a"]), str(killed.id), "--json", workspace=workspace)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["runs"][1]["status"] == "interrupted"
    assert f"run {killed.id} is interrupted" in data["notes"]

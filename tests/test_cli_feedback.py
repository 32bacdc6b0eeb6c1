"""`tunelab run correct|corrections|prefer` and `tunelab export sft|dpo` through the entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compare_helpers import base_model, classification_run, dataset, prompt
from tests.conftest import run_cli
from tunelab.store import NewModel, Workspace


@pytest.fixture
def feedback_ws(workspace: Workspace) -> Workspace:
    """Runs 1 and 2 on the train split, run 3 on the test split; four rows each."""
    with workspace.open_store() as store:
        pv = prompt(store, template="Q: {{ text }}\nA:", mode="plain")
        model = base_model(store)
        ds = dataset(store, n=4, splits=("train", "test"))
        classification_run(store, pv, model, ds, [1, 0, 1, 0], split="train")
        classification_run(store, pv, model, ds, [0, 1, 1, 0], split="train")
        test_run = classification_run(store, pv, model, ds, [1, 1, 1, 1], split="test")
        store.rate_output(store.run_outputs(test_run.id)[0].id, 5)
    return workspace


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_correct_prefer_and_export_round_trip(feedback_ws: Workspace) -> None:
    fixed = run_cli("run", "correct", "2", "--text", "The answer is neg", "--by", "ann",
                    workspace=feedback_ws)  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    assert "version 1, by ann" in fixed.stdout
    history = run_cli("run", "corrections", "2", "--json", workspace=feedback_ws)
    assert [c["text"] for c in json.loads(history.stdout)] == ["The answer is neg"]
    preferred = run_cli("run", "prefer", "1", "2", "--row", "0", "--choice", "a",
                        workspace=feedback_ws)  # fmt: skip
    assert preferred.returncode == 0, preferred.stderr

    sft = run_cli("export", "sft", "--from-run", "1", "--json", workspace=feedback_ws)
    assert sft.returncode == 0, sft.stderr
    report = json.loads(sft.stdout)
    text = Path(report["path"]).read_text(encoding="utf-8")
    lines = [json.loads(x) for x in text.splitlines()]
    assert lines == [{"prompt": "Q: row 1\nA:", "completion": "The answer is neg"}]
    assert report["lineage"]["outputs"][0]["correction_version"] == 1

    dpo = run_cli("export", "dpo", "--from-preferences", "1", "2", "--json", workspace=feedback_ws)
    assert dpo.returncode == 0, dpo.stderr
    pairs = json.loads(dpo.stdout)
    assert pairs["rows"] == 1
    assert pairs["lineage"]["source"] == "preferences"

    shown = run_cli("dataset", "show", pairs["dataset"], workspace=feedback_ws)
    assert shown.returncode == 0, shown.stderr
    assert "made from: dpo export from preferences; runs 1 " in shown.stdout
    as_json = run_cli("dataset", "show", report["dataset"], "--json", workspace=feedback_ws)
    assert json.loads(as_json.stdout)["lineage"] == report["lineage"]

    # A model trained on the export shows where its data came from.
    with feedback_ws.open_store() as store:
        data = store.get_dataset(pairs["dataset"])
        store.add_model(
            NewModel("tuned", "adapter", "artifact", "/models/tuned", base_model_id=1,
                     method="lora", training_dataset_id=data.id,
                     training_dataset_fingerprint=data.fingerprint)
        )  # fmt: skip
    model = run_cli("model", "show", "tuned", "--json", workspace=feedback_ws)
    assert model.returncode == 0, model.stderr
    assert any(
        line.startswith("training data made from: dpo export from preferences; runs 1 ")
        for line in json.loads(model.stdout)["lineage"]
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["export", "sft", "--from-run", "99"], "unknown run"),
        (["export", "sft", "--from-run", "1", "--min-rating", "9"], "--min-rating is 1 to 5"),
        (["export", "sft", "--from-run", "1"], "nothing to export"),
        (["export", "sft", "--from-run", "3"], "--include-eval-split"),
        (["export", "sft", "--from-run", "1", "--format", "csv"], "--format"),
        (["export", "dpo", "1", "2"], "--from-ratings"),
        (["export", "dpo", "--from-preferences", "1"], "RUN_A RUN_B"),
        (["export", "dpo", "--from-preferences"], "nothing to export"),
        (["export", "dpo", "--from-ratings", "1", "2"], "nothing to export"),
        (["run", "correct", "999", "--text", "x"], "run output"),
        (["run", "correct", "1", "--text", " "], "needs text"),
        (["run", "prefer", "1", "2", "--row", "0", "--choice", "maybe"], "a, b, tie"),
        (["run", "prefer", "1", "2", "--row", "7", "--choice", "a"], "no output for row 7"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    feedback_ws: Workspace, args: list[str], needle: str
) -> None:
    result = run_cli(*args, workspace=feedback_ws)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert needle in _one_error_line(result.stderr)
    with feedback_ws.open_store() as store:
        assert store.dataset_names() == ["ds"]
        assert store.preferences() == []
        assert store.corrections(1) == []

"""Preference tuning: `tunelab tune --method dpo`, from feedback to an evaluated adapter."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.compare_helpers import base_model, classification_run, dataset, prompt
from tests.conftest import run_cli
from tests.tune_helpers import tiny_model_dir
from tunelab.engine.errors import BadInputError
from tunelab.engine.training.config import TrainingConfig
from tunelab.store import NewDataset, NewModel, NewSplit, Store, Workspace


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with the built-in tokenizer: DPO mechanics in seconds."""
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _ok(*args: str, workspace: Workspace) -> str:
    result = run_cli(*args, workspace=workspace)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def _load_jsonl(path: str) -> list[dict[str, Any]]:
    import datasets

    return [dict(r) for r in datasets.load_dataset("json", data_files=path, split="train")]


@pytest.fixture
def feedback_ws(workspace: Workspace) -> Workspace:
    """The built-in model as `base`, and two runs of one prompt on four training rows."""
    with workspace.open_store() as store:
        pv = prompt(store, template="Q: {{ text }}\nA:", mode="plain")
        model = base_model(store)
        rows = [{"text": f"row {i}", "label": ("pos", "neg")[i % 2]} for i in range(4)]
        ds = store.add_dataset(
            NewDataset("ds", "test", "ds", [NewSplit(s, rows, s) for s in ("train", "test")],
                       task="classification", input_columns=["text"], reference_column="label",
                       labels=["pos", "neg"], metrics=["accuracy"])
        )  # fmt: skip
        classification_run(store, pv, model, ds, [1, 0, 1, 0], split="train")
        classification_run(store, pv, model, ds, [0, 1, 1, 0], split="train")
    return workspace


@pytest.mark.model
@pytest.mark.slow  # three model loads (job, evaluation) and many CLI processes: about a minute
def test_feedback_to_an_evaluated_dpo_adapter_with_its_lineage(feedback_ws: Workspace) -> None:
    ws = feedback_ws
    with ws.open_store() as store:
        first = store.run_outputs(1)
    for output, stars in zip(first[:2], (5, 4), strict=True):
        _ok("run", "rate", str(output.id), str(stars), "--by", "ann", workspace=ws)
    for row, choice in ((0, "a"), (1, "b"), (2, "a")):
        _ok("run", "prefer", "1", "2", "--row", str(row), "--choice", choice, "--by", "bob",
            workspace=ws)  # fmt: skip
    with ws.open_store() as store:
        authors = store.db.execute("SELECT author FROM ratings").fetchall()
        assert [a for (a,) in authors] == ["ann", "ann"]
        assert {p.author for p in store.preferences()} == {"bob"}

    sft = json.loads(_ok("export", "sft", "--from-run", "1", "--json", workspace=ws))
    dpo = json.loads(_ok("export", "dpo", "--from-preferences", "1", "2", "--json", workspace=ws))
    # Both files load with `datasets` and are in TRL's own formats (not conversational:
    # the prompt is plain text), with an explicit prompt column TRL leaves as it is.
    from trl.data_utils import is_conversational, maybe_extract_prompt

    sft_rows = _load_jsonl(sft["path"])
    assert len(sft_rows) == 2 and set(sft_rows[0]) == {"prompt", "completion"}
    pairs = _load_jsonl(dpo["path"])
    assert len(pairs) == 3 and set(pairs[0]) == {"prompt", "chosen", "rejected"}
    for record in [*sft_rows, *pairs]:
        assert not is_conversational(record)
    assert all(maybe_extract_prompt(p) == p for p in pairs)

    started, _ = json.JSONDecoder().raw_decode(_ok(
        "tune", "--method", "dpo", "--dataset", dpo["dataset"], "--base", "base",
        "--max-steps", "3", "--batch-size", "1", "--eval-every", "1", "--max-seq-len", "48",
        "--beta", "0.2", "--json", "--wait", workspace=ws,
    ))  # fmt: skip
    job_id = started["job_id"]
    shown = json.loads(_ok("jobs", "show", str(job_id), "--json", workspace=ws))
    assert shown["status"] == "succeeded", shown
    assert shown["config"]["method"] == "dpo" and shown["config"]["beta"] == 0.2
    final = shown["models"][-1]
    assert final["kind"] == "adapter" and final["step"] == 3
    assert {"val_loss", "val_reward_accuracy", "val_reward_margin"} <= set(final["metrics"])
    text = _ok("jobs", "show", str(job_id), workspace=ws)
    assert "val_reward_accuracy" in text and "val_reward_margin" in text
    with ws.open_store() as store:
        series = store.job_metrics(job_id)
        # the adapter starts equal to the reference: the first step's loss is log 2
        first_loss = next(p.value for p in series if p.name == "train_loss" and p.step == 1)
        assert math.isclose(first_loss, math.log(2), abs_tol=1e-3)
        assert {"train_reward_accuracy", "val_reward_margin"} <= {p.name for p in series}

    evaluated = json.loads(_ok(
        "eval", "--prompt", "cls@1", "--model", final["name"], "--dataset", "ds", "--split",
        "test", "--limit", "2", "--json", workspace=ws,
    ))  # fmt: skip
    assert evaluated["rows"] == 2 and 0 <= evaluated["metrics"]["accuracy"] <= 1

    lineage = json.loads(_ok("model", "show", final["name"], "--json", workspace=ws))["lineage"]
    assert f"trained on: {dpo['dataset']} ({dpo['fingerprint']})" in lineage
    assert any(
        line.startswith("training data made from: dpo export from preferences; runs 1 ")
        and "3 preferences" in line
        for line in lineage
    ), lineage
    assert "prompt: cls@1" in lineage  # the export's prompt, as no --prompt was given


@pytest.mark.model
def test_a_detached_dpo_job_on_the_built_in_model(workspace: Workspace) -> None:
    from tests.tune_helpers import wait_status
    from tunelab.engine.training.jobs import launch_job

    with workspace.open_store() as store:
        base = base_model(store)
        _preference_dataset(store, n=3)
        version = store.save_prompt_version("p", _plain_prompt()).version
        config = TrainingConfig(method="dpo", max_steps=2, batch_size=1, eval_every_steps=0,
                                max_seq_len=32)  # fmt: skip
        job = launch_job(workspace, store, config, base, store.get_dataset("prefs"), version)
        done = wait_status(store, job.id, ("succeeded", "failed", "cancelled"), timeout=300)
        assert done.status == "succeeded", (done.error, done.log_path)
        names = {p.name for p in store.job_metrics(job.id)}
        assert {"train_loss", "train_reward_accuracy", "val_loss", "val_reward_accuracy",
                "val_reward_margin"} <= names  # fmt: skip
        final = store.models_of_job(job.id)[-1]
        assert final.kind == "adapter" and final.method == "dpo" and final.step == 2
        assert final.training_dataset_id == store.get_dataset("prefs").id
        from tunelab.engine.compare.runs import describe_model

        assert describe_model(final) == f"DPO (LoRA) job {job.id}, step 2"  # as compare says


def _preference_dataset(store: Store, name: str = "prefs", n: int = 6) -> int:
    rows = [
        {"prompt": f"Q: is {i} even?\nA:", "chosen": "yes" if i % 2 == 0 else "no",
         "rejected": "no" if i % 2 == 0 else "yes"}
        for i in range(n)
    ]  # fmt: skip
    return store.add_dataset(
        NewDataset(name, "test", name, [NewSplit("train", rows, name)], task="generation",
                   input_columns=["prompt"], reference_column="chosen")
    ).id  # fmt: skip


@pytest.mark.model
def test_dpo_from_an_sft_adapter_keeps_it_as_the_frozen_reference(
    workspace: Workspace, tiny_dir: Path, tmp_path: Path
) -> None:
    from tunelab.engine.training.loop import TrainingRequest, run_training

    store = workspace.open_store()
    tiny = store.add_model(NewModel("tiny", "base", "hf_folder", str(tiny_dir)))
    data_id = _preference_dataset(store)
    version = store.save_prompt_version("p", _plain_prompt()).version
    sft = run_training(
        store,
        TrainingRequest(TrainingConfig(method="dpo", max_steps=1, batch_size=2, lr=1e-2),
                        tiny.id, data_id, version.id, tmp_path / "sft"),
    )  # fmt: skip
    start = store.get_model_by_id(sft.model_ids[-1])
    losses: list[float] = []
    config = TrainingConfig(method="dpo", max_steps=2, batch_size=2, from_adapter=start.name)
    result = run_training(
        store,
        TrainingRequest(config, tiny.id, data_id, version.id, tmp_path / "dpo"),
        lambda p: losses.append(p.train_loss) if p.metrics and p.train_loss else None,
    )
    # The policy starts as a copy of the reference, so the first loss is log 2, not more.
    assert math.isclose(losses[0], math.log(2), abs_tol=1e-3)
    saved = Path(store.get_model_by_id(result.model_ids[-1]).path)
    assert (saved / "adapter_model.safetensors").is_file()
    assert not (saved / "reference").exists()  # only the policy is saved
    assert store.get_model_by_id(result.model_ids[-1]).training_config["from_adapter"] == (
        start.name
    )


@pytest.mark.model
def test_a_stopped_dpo_run_resumes_from_its_checkpoint(
    workspace: Workspace, tiny_dir: Path, tmp_path: Path
) -> None:
    from tunelab.engine.training.loop import TrainingRequest, run_training

    store = workspace.open_store()
    tiny = store.add_model(NewModel("tiny", "base", "hf_folder", str(tiny_dir)))
    data_id = _preference_dataset(store)
    version = store.save_prompt_version("p", _plain_prompt()).version
    config = TrainingConfig(method="dpo", max_steps=3, batch_size=2, eval_every_steps=0)
    request = TrainingRequest(config, tiny.id, data_id, version.id, tmp_path / "out")
    steps: list[int] = []
    stopped = run_training(store, request, lambda p: steps.append(p.step), lambda: True)
    assert (stopped.status, stopped.step) == ("stopped", 1)
    resumed = run_training(store, request)
    assert (resumed.status, resumed.step) == ("completed", 3)
    assert [store.get_model_by_id(i).step for i in resumed.model_ids] == [3]


def _plain_prompt() -> Any:
    from tunelab.store import PromptContent

    return PromptContent(template="{{ prompt }}", mode="plain")


@pytest.mark.parametrize("beta", [0.0, -0.5, float("nan")])
def test_beta_must_be_positive(beta: float) -> None:
    with pytest.raises(BadInputError, match="beta must be a positive number"):
        TrainingConfig(method="dpo", beta=beta)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--dataset", "ds", "--method", "dpo", "--prompt", "cls@1"],
         "needs prompt, chosen and rejected columns"),
        (["--dataset", "prefs", "--method", "dpo", "--beta", "0"], "beta must be a positive"),
    ],
)  # fmt: skip
def test_bad_dpo_jobs_exit_2_with_one_line_and_queue_nothing(
    feedback_ws: Workspace, args: list[str], needle: str
) -> None:
    with feedback_ws.open_store() as store:
        _preference_dataset(store)
    result = run_cli("tune", "--base", "base", *args, workspace=feedback_ws)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert needle in _one_error_line(result.stderr)
    with feedback_ws.open_store() as store:
        assert store.list_jobs() == []


@pytest.mark.parametrize(
    ("dataset_name", "settings", "prompt_ref", "needle"),
    [
        ("prefs", {"beta": -1.0}, "cls@1", "beta must be a positive"),
        ("prefs", {}, "", "pass --prompt NAME@V"),
        ("prefs", {"method": "lora", "beta": 0.2}, "cls@1", "--beta applies only to method dpo"),
        ("prefs", {"from_adapter": "base"}, "cls@1", "is a base model, not a LoRA adapter"),
        ("prefs", {"from_adapter": "nope"}, "cls@1", "nope"),
        ("ds", {"method": "lora"}, "", "give --prompt NAME@V"),
    ],
)
def test_bad_dpo_launches_are_refused_before_queueing(
    feedback_ws: Workspace, dataset_name: str, settings: dict[str, Any], prompt_ref: str,
    needle: str,
) -> None:  # fmt: skip
    from tunelab.engine.training.jobs import launch_job
    from tunelab.store import StoreError

    with feedback_ws.open_store() as store:
        _preference_dataset(store)
        given = {"method": "dpo", **settings}
        with pytest.raises((BadInputError, StoreError), match=needle):
            config = TrainingConfig().with_overrides(**given)
            launch_job(feedback_ws, store, config, store.get_model("base"),
                       store.get_dataset(dataset_name), prompt_ref, given=list(given))  # fmt: skip
        assert store.list_jobs() == []


def test_exports_refuse_no_rated_rows_and_mixed_datasets(feedback_ws: Workspace) -> None:
    with feedback_ws.open_store() as store:
        pv = store.get_prompt_version("cls@1")
        other = dataset(store, name="other", n=2, splits=("train",))
        model = store.get_model("base")
        third = classification_run(store, pv, model, other, [1, 0], split="train")
        fourth = classification_run(store, pv, model, other, [0, 1], split="train")
        store.add_preference(store.run_outputs(1)[0].id, store.run_outputs(2)[0].id, "a")
        store.add_preference(
            store.run_outputs(third.id)[0].id, store.run_outputs(fourth.id)[0].id, "b"
        )
    unrated = run_cli("export", "sft", "--from-run", "1", workspace=feedback_ws)
    assert unrated.returncode == 2
    assert "nothing to export: no corrected rows or outputs rated" in _one_error_line(
        unrated.stderr
    )
    mixed = run_cli("export", "dpo", "--from-preferences", workspace=feedback_ws)
    assert mixed.returncode == 2
    assert "preferences reference rows of different datasets" in _one_error_line(mixed.stderr)
    with feedback_ws.open_store() as store:
        assert store.dataset_names() == ["ds", "other"]


def test_the_form_takes_a_dpo_job_without_a_prompt_as_the_cli_does(feedback_ws: Workspace) -> None:
    from tunelab.engine.api.facade import Engine

    with feedback_ws.open_store() as store:
        _preference_dataset(store)
        engine = Engine(store, feedback_ws)
        values = {f.name: f.default for f in engine.training_fields()}
        values.update(base="base", dataset="prefs", method="dpo", prompt="", beta=0.0)
        with pytest.raises(BadInputError, match="beta must be a positive number"):
            engine.launch_job(values)
        values["beta"] = 0.2
        # past the form's own checks: the engine asks for the prompt the export would name
        with pytest.raises(BadInputError, match="was not exported from runs"):
            engine.launch_job(values)
        with pytest.raises(BadInputError, match="a job needs a dataset and a prompt version"):
            engine.launch_job({**values, "method": "lora"})
        assert store.list_jobs() == []

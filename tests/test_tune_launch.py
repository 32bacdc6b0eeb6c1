"""`tunelab tune` refuses at launch, in one line with exit 2 and nothing queued, what its worker
would reject later or run other than asked (#14): the prompt's variables against the data,
settings the method ignores, empty references, a base model whose files are gone, a models
folder it cannot write to. The Fine-tune form's launch refuses the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.test_hardening_inputs import check_refused
from tests.tune_helpers import add_training_data, tiny_model_dir
from tunelab.engine.api.facade import Engine
from tunelab.engine.api.training_form import given_settings
from tunelab.engine.errors import BadInputError
from tunelab.store import NewDataset, NewModel, NewSplit, PromptContent, Workspace

TUNE = ["tune", "--base", "tiny", "--dataset", "irony", "--prompt", "irony@1", "--max-steps",
        "1", "--batch-size", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def ws(workspace: Workspace, tiny_dir: Path) -> Workspace:
    with workspace.open_store() as store:
        add_training_data(store, tiny_dir)
        store.save_prompt_version("tweet", PromptContent(template="Tweet: {{ tweet }}"))
        rows = [{"question": f"q{i}", "answer": "" if i == 3 else f"a{i}"} for i in range(6)]
        store.add_dataset(
            NewDataset(
                "holes", "test", "fp-holes", [NewSplit("train", rows, "fp-holes-train")],
                task="generation", input_columns=["question"], reference_column="answer",
            )
        )  # fmt: skip
        store.save_prompt_version("ask", PromptContent(template="Q: {{ question }}"))
    return workspace


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--method", "prompt", "--lora-r", "16"],
         ["--lora-r applies only to method lora or dpo, not prompt",
          "drop it or use --method lora"]),
        (["--method", "lora", "--num-virtual-tokens", "8"],
         ["--num-virtual-tokens applies only to method prefix or prompt, not lora"]),
        (["--prompt", "tweet@1"], ["prompt tweet@1 uses tweet, which dataset 'irony' lacks"]),
        (["--dataset", "holes", "--prompt", "ask@1"],
         ["split 'train' of dataset 'holes' has 1 row with an empty reference 'answer' (row 3)"]),
    ],
    ids=["lora flag with prompt tuning", "prompt flag with lora", "unknown variable",
         "empty reference"],
)  # fmt: skip
def test_tune_refuses_at_launch(ws: Workspace, args: list[str], needles: list[str]) -> None:
    check_refused(ws, [*TUNE, *args], needles)
    assert ws.open_store().list_jobs() == []


def test_a_flag_the_method_uses_is_not_refused(ws: Workspace) -> None:
    from tunelab.engine.training.options import check_options_apply

    check_options_apply("prompt", ["num_virtual_tokens", "lr", "epochs"])
    check_options_apply("lora", ["lora_r", "target_modules"])
    with pytest.raises(BadInputError, match="--target-modules applies only to method lora"):
        check_options_apply("full", ["target_modules"])


def test_base_model_whose_files_are_gone(ws: Workspace, tiny_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "moved-away"
    shutil.copytree(tiny_dir, copy)
    with ws.open_store() as store:
        store.add_model(NewModel("gone", "base", "hf_folder", str(copy)))
    shutil.rmtree(copy)
    check_refused(ws, [*TUNE, "--base", "gone"], ["base model 'gone':", "is gone",
                                                  "tunelab model add"])  # fmt: skip


def test_unwritable_models_folder(ws: Workspace) -> None:
    # A file where the models folder goes: unwritable even for root, unlike a chmod.
    shutil.rmtree(ws.models_dir, ignore_errors=True)
    ws.models_dir.write_text("not a folder")
    check_refused(ws, TUNE, ["cannot save checkpoints under", "is not a folder"])


def test_the_form_refuses_what_the_cli_refuses(ws: Workspace) -> None:
    engine = Engine(ws.open_store(), ws)
    values = {f.name: f.default for f in engine.training_fields()}
    values.update(base="tiny", dataset="irony", prompt="irony@1", max_steps=1, batch_size=2)
    with pytest.raises(BadInputError, match="--lora-r applies only to method lora"):
        engine.launch_job({**values, "method": "prompt", "lora_r": 16})
    with pytest.raises(BadInputError, match="uses tweet, which dataset 'irony' lacks"):
        engine.launch_job({**values, "prompt": "tweet@1"})
    with pytest.raises(BadInputError, match="unknown training settings: lora_rank"):
        engine.launch_job({**values, "lora_rank": 4})
    assert engine.store.list_jobs() == []
    # The form sends every field; only those that differ from their defaults count as given,
    # so prompt tuning with the LoRA settings left alone is not refused.
    given = given_settings({**values, "method": "prompt"})
    assert given == {"method": "prompt", "max_steps": 1, "batch_size": 2}

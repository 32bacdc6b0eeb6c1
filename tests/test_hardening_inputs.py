"""Hardening: bad input through the real `tunelab` command.

Every case must print one line on stderr that says what is wrong and how to fix it, exit with
status 2, never show a traceback, and write nothing (every table's row count and the
workspace's files are compared before and after). Cases covered elsewhere are listed in
docs/reliability.md with the test that proves them; this file adds the CLI-level ones.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tunelab.engine.errors import BadInputError
from tunelab.store import (
    NewDataset,
    NewModel,
    NewSplit,
    PromptContent,
    Store,
    Workspace,
    init_workspace,
)

ROWS = [{"text": f"tweet {i}", "label": ["irony", "non_irony"][i % 2]} for i in range(6)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    (d / "nolabel.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    (d / "ok.jsonl").write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    huge = json.dumps({"text": "a" * 1_100_000, "label": "x"}) + "\n"
    (d / "huge.jsonl").write_text(huge, encoding="utf-8")
    (d / "bad.parquet").write_bytes(b"PAR1 but not really a parquet file")
    (d / "ok.j2").write_text("{{ text }}", encoding="utf-8")
    (d / "syntax.j2").write_text("Hi\n  {% if %}\n", encoding="utf-8")
    (d / "filter.j2").write_text("Hi\n{{ text | nofilter }}\n", encoding="utf-8")
    (d / "notmodel").mkdir()
    (d / "notmodel" / "weights.txt").write_text("not a model", encoding="utf-8")
    (d / "bad.gguf").write_bytes(b"this is not a gguf file at all")
    (d / "remote").mkdir()
    remote_config = {"auto_map": {"AutoModelForCausalLM": "modeling.My"}, "model_type": "llama"}
    (d / "remote" / "config.json").write_text(json.dumps(remote_config), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace, _ = init_workspace(tmp_path_factory.mktemp("ws") / "ws")
    with workspace.open_store() as store:
        store.add_model(NewModel("builtin", "base", "builtin", "builtin"), exist_ok=True)
        for name, splits in (("irony", ["test"]), ("tr", ["train", "validation"])):
            store.add_dataset(
                NewDataset(
                    name=name, source="test", fingerprint=f"fp-{name}",
                    splits=[NewSplit(s, ROWS, f"fp-{name}-{s}") for s in splits],
                    task="classification", input_columns=["text"], reference_column="label",
                    labels=["irony", "non_irony"], metrics=["accuracy"],
                )
            )  # fmt: skip
        for name, template in (("irony", "{{ text }}"), ("unknown_var", "Tweet: {{ tweet }}"),
                               ("escape", "{{ ''.__class__.__mro__[1].__subclasses__() }}"),
                               ("huge", "word " * 12000 + "{{ text }}")):  # fmt: skip
            store.save_prompt_version(
                name, PromptContent(template=template, settings={"max_new_tokens": 2})
            )
        store.set_label("irony@1", "production")
    return workspace


def snapshot(workspace: Workspace) -> tuple[dict[str, int], set[str]]:
    """Row counts of every table, and every file in the workspace but the database's own and
    the caches (the `datasets` library leaves its lock files there even for a refused file)."""
    conn = sqlite3.connect(f"file:{workspace.db_path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()
    found = {
        str(p.relative_to(workspace.root))
        for p in workspace.root.rglob("*")
        if p.is_file()
        and not p.name.startswith("tunelab.db")
        and not p.is_relative_to(workspace.root / ".tunelab" / "cache")
    }
    return counts, found


def one_error_line(result: Any) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def check_refused(ws: Workspace, args: list[str], needles: list[str]) -> str:
    before = snapshot(ws)
    result = run_cli(*args, workspace=ws)
    assert result.returncode == 2, (args, result.returncode, result.stderr)
    line = one_error_line(result)
    for needle in needles:
        assert needle in line, (args, line)
    assert snapshot(ws) == before, f"{args} wrote something"
    return line


DATASET_CASES = {
    "missing reference column": (["nolabel.jsonl", "--reference", "label"],
                                 ["column 'label' is not in the data", "columns are: text"]),
    "missing label column": (["nolabel.jsonl", "--labels", "a,b"],
                             ["no label column found", "--reference COLUMN"]),
    "missing input column": (["ok.jsonl", "--input", "body"], ["column 'body' is not in the data"]),
    "huge row": (["huge.jsonl"], ["line 1 is", "bytes (limit", "split it or remove it"]),
    "label outside the set": (["ok.jsonl", "--labels", "yes,no"],
                              ["not in the declared label set"]),
    "unknown task": (["ok.jsonl", "--task", "vibes"], ["task"]),
    "corrupt parquet": (["bad.parquet"], ["bad.parquet: could not be read", "Parquet"]),
}  # fmt: skip


@pytest.mark.parametrize("case", DATASET_CASES)
def test_bad_dataset_files(ws: Workspace, files: Path, case: str) -> None:
    first, *rest = DATASET_CASES[case][0]
    args = ["dataset", "add", str(files / first), "--name", "new", *rest]
    check_refused(ws, args, DATASET_CASES[case][1])


def test_a_byte_order_mark_is_not_an_error(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    result = run_cli("dataset", "add", str(path), "--name", "bom", "--json", workspace=workspace)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["input_columns"] == ["text"]


PROMPT_CASES = {
    "syntax error": (["prompt", "new", "p", "--template-file", "syntax.j2"],
                     ["template syntax error at line 2, column 3"]),
    "unknown filter": (["prompt", "new", "p", "--template-file", "filter.j2"],
                       ["line 2", "nofilter"]),
    "empty logit-bias string": (["prompt", "new", "p", "--template-file", "ok.j2",
                                 "--logit-bias", "=2"], ["STRING=WEIGHT"]),
    "logit-bias weight": (["prompt", "new", "p", "--template-file", "ok.j2", "--logit-bias",
                           "yes=lots"], ["'lots' is not a number"]),
    "unknown variable": (["eval", "--prompt", "unknown_var", "--dataset", "irony"],
                         ["uses tweet", "its columns are label, text"]),
}  # fmt: skip


@pytest.mark.parametrize("case", PROMPT_CASES)
def test_bad_prompts(ws: Workspace, files: Path, case: str) -> None:
    args, needles = PROMPT_CASES[case]
    args = [str(files / a) if a.endswith(".j2") else a for a in args]
    check_refused(ws, args, needles)


@pytest.mark.model
def test_sandbox_escape_and_context_overflow_refused_before_a_run(ws: Workspace) -> None:
    # The sandbox stops the very first step of the escape, and nothing it would have reached
    # (the class list that `__subclasses__()` returns) leaks into the message.
    line = check_refused(ws, ["eval", "--prompt", "escape", "--dataset", "irony"],
                         ["Python internals", "not allowed",
                          "access to attribute '__class__' of 'str' object is unsafe"])  # fmt: skip
    assert "<class " not in line and "__subclasses__" not in line, line
    check_refused(ws, ["eval", "--prompt", "huge", "--dataset", "irony"], ["context window"])


MODEL_CASES = {
    "path that does not exist": (["/nonexistent/model"], ["does not exist", "check the path"]),
    "folder that is not a model": (["notmodel"], ["not a model folder", "no config.json"]),
    "corrupt GGUF": (["bad.gguf"], ["not a GGUF file", "re-download"]),
    "hub id offline": (["someorg/some-model"], ["offline", "download"]),
    "remote code without the flag": (["remote"], ["--trust-remote-code"]),
}


@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_models(ws: Workspace, files: Path, case: str) -> None:
    (source,), needles = MODEL_CASES[case]
    if (not source.startswith("/") and "/" not in source) or source.endswith(".gguf"):
        source = str(files / source)
    check_refused(ws, ["model", "add", source], needles)


def test_out_of_memory_on_load_is_a_one_line_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from tunelab.engine.models import loading as models

    def no_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")

    monkeypatch.setattr(models, "_load_base", no_memory)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    store = Store.memory()
    model = store.add_model(NewModel("big", "base", "hf_folder", str(folder)))
    with pytest.raises(BadInputError) as caught:
        models.load_model(store, model, device="cpu")
    message = str(caught.value)
    assert "not enough memory to load model 'big' on cpu" in message
    assert "smaller model" in message and "\n" not in message
    store.close()


TUNE = ["tune", "--dataset", "tr", "--prompt", "irony@1", "--max-steps", "1"]
TRAINING_CASES = {
    "rank 0": (["--lora-r", "0"], ["lora_r", ">= 1", "not 0"]),
    "negative learning rate": (["--lr", "-0.001"], ["lr must be a positive number"]),
    "batch larger than the data": (["--batch-size", "64"],
                                   ["batch_size 64", "6 training rows", "--batch-size 6"]),
    "unknown method": (["--method", "magic"], ["method must be one of lora, prefix, prompt, full"]),
    "unknown target module": (["--batch-size", "2", "--target-modules", "q_proj,nope_proj"],
                              ["target module nope_proj not found", "available:", "q_proj"]),
    "unknown split": (["--train-split", "trian"], ["no split 'trian'", "train"]),
    "negative epochs": (["--epochs", "-1"], ["epochs"]),
}  # fmt: skip
if shutil.which("nvidia-smi") is None:  # a machine without a GPU: refused at launch
    TRAINING_CASES["cuda without a GPU"] = (
        ["--batch-size", "2", "--device", "cuda"],
        ["'cuda' requested but CUDA is not available"],
    )


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_impossible_training_configs(ws: Workspace, case: str) -> None:
    args, needles = TRAINING_CASES[case]
    check_refused(ws, [*TUNE, *args], needles)


NAME_CASES = {
    "unknown prompt": (["prompt", "show", "ironi"], ["unknown prompt 'ironi'", "'irony'"]),
    "unknown version": (["prompt", "show", "irony@7"], ["prompt 'irony' has no version '7'",
                                                        "Known: '1'"]),
    "unknown label": (["prompt", "show", "irony:prodution"],
                      ["prompt 'irony' has no label 'prodution'", "Did you mean 'production'"]),
    "unknown dataset": (["eval", "--prompt", "irony", "--dataset", "iron"],
                        ["unknown dataset 'iron'", "Did you mean 'irony'"]),
    "unknown split": (["eval", "--prompt", "irony", "--dataset", "tr", "--split", "tarin"],
                      ["has no split 'tarin'", "'train'"]),
    "unknown model": (["model", "show", "bultin"], ["unknown model 'bultin'", "'builtin'"]),
    "unknown eval model": (["eval", "--prompt", "irony", "--dataset", "irony", "--model",
                            "bultin"], ["'bultin' is not a model name", "known models: builtin"]),
    "unknown run": (["run", "show", "41"], ["unknown run '41'"]),
    "unknown job": (["jobs", "show", "12"], ["unknown job '12'"]),
    "resume unknown job": (["jobs", "resume", "12"], ["unknown job '12'"]),
    "label an unknown version": (["prompt", "label", "irony@3", "staging"],
                                 ["prompt 'irony' has no version '3'"]),
}  # fmt: skip


@pytest.mark.parametrize("case", NAME_CASES)
def test_unknown_names_suggest_close_ones(ws: Workspace, case: str) -> None:
    args, needles = NAME_CASES[case]
    check_refused(ws, args, needles)

"""Hardening: data that used to be stored silently wrong, and inputs without resource limits.

Each case is a small file in tmp_path. Engine-level cases run in-process on a memory store;
the CLI cases check the one-line error, exit status 2 and that nothing was written.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.test_hardening_faults import no_network_env
from tunelab.engine.data.importing import DatasetOptions, add_dataset
from tunelab.engine.errors import BadInputError
from tunelab.store import ConflictError, NewModel, PromptContent, Store, Workspace


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def two_class_rows(n: int = 4, text: str = "t") -> list[dict[str, Any]]:
    return [{"text": f"{text} {i}", "label": ["a", "b"][i % 2]} for i in range(n)]


def add(store: Store, path: Path, name: str = "d", **options: Any) -> Any:
    return add_dataset(store, [path], DatasetOptions(name=name, **options))


# --- the rows stored are the bytes read -------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_file_rewritten_with_its_mtime_kept_is_imported_anew(
    store: Store, tmp_path: Path, suffix: str
) -> None:
    """`cp -p` / `touch -d`: same path, same size, same mtime, other bytes."""
    path = tmp_path / f"data{suffix}"

    def write(word: str) -> None:
        if suffix == ".csv":
            lines = ["text,label", *(f"{word} {i},{'ab'[i % 2]}" for i in range(4))]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            write_jsonl(path, two_class_rows(text=word))

    write("old")
    stat = path.stat()
    first = add_dataset(store, [path], DatasetOptions(name="one"))
    write("new")  # same length as "old", so the size matches too
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns and path.stat().st_size == stat.st_size
    second = add_dataset(store, [path], DatasetOptions(name="two"))
    rows = store.dataset_rows("two", "all")
    assert all(str(r.data["text"]).startswith("new") for r in rows), [r.data for r in rows]
    assert second.fingerprint != first.fingerprint


# --- --replace once runs use the dataset ------------------------------------------------------


def test_replace_of_a_dataset_that_runs_use_is_refused_naming_them(
    store: Store, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", two_class_rows())
    dataset = add(store, path)
    model = store.add_model(NewModel("m", "base", "builtin", "builtin"))
    version = store.save_prompt_version("p", PromptContent(template="{{ text }}")).version
    run = store.create_run(version.id, model.id, dataset.id, "all", 4, {})
    before = [r.data for r in store.dataset_rows("d", "all")]
    write_jsonl(path, two_class_rows(text="changed"))
    with pytest.raises(ConflictError) as caught:
        add_dataset(store, [path], DatasetOptions(name="d"), replace=True)
    message = str(caught.value)
    assert f"run {run.id}" in message and "another --name" in message and "\n" not in message
    assert [r.data for r in store.dataset_rows("d", "all")] == before
    with pytest.raises(ConflictError):
        store.delete_dataset("d")


def test_replace_of_an_unused_dataset_still_works(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", two_class_rows())
    add(store, path)
    write_jsonl(path, two_class_rows(text="changed"))
    add_dataset(store, [path], DatasetOptions(name="d"), replace=True)
    assert store.dataset_rows("d", "all")[0].data["text"] == "changed 0"


def test_cli_replace_used_dataset_is_one_line(workspace: Workspace, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", two_class_rows())
    with workspace.open_store() as store:
        dataset = add(store, path)
        model = store.add_model(NewModel("m", "base", "builtin", "builtin"))
        version = store.save_prompt_version("p", PromptContent(template="{{ text }}")).version
        store.create_run(version.id, model.id, dataset.id, "all", 4, {})
    result = run_cli("dataset", "add", str(path), "--name", "d", "--replace", workspace=workspace)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "cannot replace dataset 'd'" in result.stderr


# --- contents that fail or mislead later ------------------------------------------------------


BAD_CONTENTS: dict[str, tuple[list[dict[str, Any]], dict[str, Any], list[str]]] = {
    "one class": (
        [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}],
        {},
        ["only one class", "'x'", "--task generation"],
    ),
    "one declared label": (
        [{"text": "a", "label": "x"}],
        {"labels": ["x"]},
        ["only one class"],
    ),
    "int and str labels": (
        [{"text": "a", "label": 1}, {"text": "b", "label": "1"}, {"text": "c", "label": 2}],
        {},
        ["mix types", "int", "str", "same way"],
    ),
    "bool and int labels": (
        [{"text": "a", "label": True}, {"text": "b", "label": 0}],
        {},
        ["mix types", "bool", "int"],
    ),
    "int and float labels": (
        [{"text": "a", "label": 1}, {"text": "b", "label": 1.0}, {"text": "c", "label": 0}],
        {},
        ["mix types", "float", "int"],
    ),
    "empty label": (
        [{"text": "a", "label": "x"}, {"text": "b", "label": ""}, {"text": "c", "label": "y"}],
        {},
        ["row 2", "empty label", "'label'"],
    ),
    "null label": (
        [{"text": "a", "label": "x"}, {"text": "b", "label": None}, {"text": "c", "label": "y"}],
        {},
        ["row 2", "empty label"],
    ),
    "column with a space": (
        [{"tweet text": "a", "label": "x"}, {"tweet text": "b", "label": "y"}],
        {},
        ["'tweet text'", "cannot be named in a template", "tweet_text"],
    ),
    "column with an invisible character": (
        [{"text\u200b": "a", "label": "x"}, {"text\u200b": "b", "label": "y"}],
        {},
        ["invisible character", "U+200B", "rename"],
    ),
    "column named like a keyword": (
        [{"for": "a", "label": "x"}, {"for": "b", "label": "y"}],
        {},
        ["'for'", "cannot be named"],
    ),
    "no reference column": (
        [{"question": "a"}, {"question": "b"}],
        {},
        ["no reference column", "--reference COLUMN", "--metrics"],
    ),
}


@pytest.mark.parametrize("case", BAD_CONTENTS)
def test_misleading_contents_are_refused_in_one_line(
    store: Store, tmp_path: Path, case: str
) -> None:
    rows, options, needles = BAD_CONTENTS[case]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(BadInputError) as caught:
        add(store, path, **options)
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert store.dataset_names() == []


def test_a_column_that_is_not_an_input_may_have_any_name(store: Store, tmp_path: Path) -> None:
    rows = [{"text": "a", "label": "x", "my note": "n"}, {"text": "b", "label": "y", "my note": ""}]
    dataset = add(store, write_jsonl(tmp_path / "d.jsonl", rows), input_columns=["text"])
    assert dataset.input_columns == ["text"] and dataset.labels == ["x", "y"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([1, "1", 1.0, True, "a", 0]), min_size=2, max_size=8))
def test_labels_are_stored_only_when_they_cannot_merge(labels: list[Any]) -> None:
    """Whatever mix of label values, a stored dataset has one label per distinct value."""
    from tunelab.engine.data.importing import build_dataset

    rows = [{"text": str(i), "label": v} for i, v in enumerate(labels)]
    try:
        new = build_dataset({"all": rows}, "test", DatasetOptions(name="d"))
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    distinct = {(type(v), v) for v in labels}
    assert len(new.labels) == len(distinct) >= 2


def test_cli_refuses_metrics_the_dataset_cannot_compute(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "a"}, {"question": "b"}])
    result = run_cli(
        "dataset", "add", str(path), "--name", "q", "--metrics", "exact_match", workspace=workspace
    )
    assert result.returncode == 2, result.stderr
    assert "needs a reference column" in result.stderr and "Traceback" not in result.stderr
    with workspace.open_store() as store:
        assert store.dataset_names() == []


# --- the network is for hub ids only ----------------------------------------------------------


def _env_without_offline(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    return {**env, **extra}


def test_a_local_dataset_add_never_touches_the_network(
    workspace: Workspace, tmp_path: Path
) -> None:
    for suffix, text in (
        (".jsonl", "".join(json.dumps(r) + "\n" for r in two_class_rows())),
        (".csv", "text,label\na,x\nb,y\n"),
    ):
        path = tmp_path / f"train{suffix}"
        path.write_text(text, encoding="utf-8")
        env = _env_without_offline(
            {**no_network_env(tmp_path), "TUNELAB_WORKSPACE": str(workspace.root)}
        )
        result = subprocess.run(
            [sys.executable, "-m", "tunelab", "dataset", "add", str(path), "--name", suffix[1:]],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "network.log").read_text() == ""


def test_an_unreachable_hub_is_one_attempt_and_one_line(
    workspace: Workspace, tmp_path: Path
) -> None:
    # Port 9 on loopback refuses at once: an unreachable hub without waiting for a timeout.
    env = _env_without_offline(
        {"HF_ENDPOINT": "http://127.0.0.1:9", "TUNELAB_WORKSPACE": str(workspace.root)}
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tunelab", "dataset", "add", "someorg/somedata", "--name", "h"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "could not reach 'someorg/somedata'" in lines[0], result.stderr
    assert "Retrying" not in result.stderr and elapsed < 30


# --- weights and configs ----------------------------------------------------------------------


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A valid safetensors file: little-endian header length, JSON header, zeroed data."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        end = offset + count * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset

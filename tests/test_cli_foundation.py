"""The foundation CLI through the real entry point: init, datasets, prompt versions and labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import run_cli, shared_dataset
from tunelab.store import Workspace


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_init_creates_and_reuses_a_workspace(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "w"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["created"] is True
    again = run_cli("init", str(tmp_path / "w"), "--json")
    assert json.loads(again.stdout)["created"] is False
    assert (tmp_path / "w" / ".tunelab" / "tunelab.db").exists()


def test_commands_outside_a_workspace_say_how_to_make_one(tmp_path: Path) -> None:
    result = run_cli("prompt", "list", env={"TUNELAB_WORKSPACE": str(tmp_path)})
    assert result.returncode == 2
    assert "tunelab init" in result.stderr
    assert "Traceback" not in result.stderr


def test_dataset_add_infers_splits_and_labels(workspace: Workspace) -> None:
    val = shared_dataset("tweeteval-irony-val.jsonl")
    test = shared_dataset("tweeteval-irony-test.jsonl")
    result = run_cli("dataset", "add", str(val), str(test), "--name", "irony", "--json",
                     workspace=workspace)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["task"] == "classification"
    assert summary["labels"] == ["irony", "non_irony"]
    assert summary["splits"] == {"validation": 955, "test": 784}
    assert summary["input_columns"] == ["text"]
    listed = json.loads(run_cli("dataset", "list", "--json", workspace=workspace).stdout)
    assert [d["name"] for d in listed] == ["irony"]
    shown = json.loads(run_cli("dataset", "show", "irony", "--rows", "2", "--json",
                               workspace=workspace).stdout)  # fmt: skip
    assert len(shown["preview"]) == 2


def test_bad_dataset_files_get_one_line_errors_and_write_nothing(
    workspace: Workspace, tmp_path: Path
) -> None:
    cases = {
        "missing": (tmp_path / "nope.jsonl", "does not exist"),
        "empty": (_write(tmp_path / "empty.jsonl", ""), "empty"),
        "bad json": (_write(tmp_path / "bad.jsonl", '{"text": "a", "label": "x"}\n{"text": \n'),
                     "invalid JSON on line 2"),
        "columns": (_write(tmp_path / "cols.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n'),
                    "line 2 has different columns"),
        "csv columns": (_write(tmp_path / "c.csv", "text,label\na,x\nb,y,z\n"), "line 3 has 3"),
    }  # fmt: skip
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"text": "caf\xe9", "label": "x"}\n'.encode("latin-1"))
    cases["encoding"] = (latin, "not UTF-8")
    for what, (path, expected) in cases.items():
        result = run_cli("dataset", "add", str(path), "--name", "d", workspace=workspace)
        assert result.returncode == 2, (what, result.stderr)
        assert expected in result.stderr, (what, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, (what, result.stderr)
    out_of_set = _write(tmp_path / "labels.jsonl", '{"text": "a", "label": "maybe"}\n')
    result = run_cli("dataset", "add", str(out_of_set), "--name", "d", "--labels", "yes,no",
                     workspace=workspace)  # fmt: skip
    assert result.returncode == 2 and "not in the declared label set" in result.stderr
    assert json.loads(run_cli("dataset", "list", "--json", workspace=workspace).stdout) == []


def test_prompt_versions_labels_and_diff(workspace: Workspace, tmp_path: Path) -> None:
    template = _write(tmp_path / "t.j2", "Classify: {{ text }}\nAnswer:")
    result = run_cli("prompt", "new", "irony", "--template-file", str(template),
                     "--system", "You label tweets.", "--max-tokens", "8", "--stop", "\n",
                     "--logit-bias", "irony=2", "-m", "first", "--json",
                     workspace=workspace)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"prompt": "irony", "version": 1, "created": True}
    same = run_cli("prompt", "new", "irony", "--template-file", str(template),
                   "--system", "You label tweets.", "--max-tokens", "8", "--stop", "\n",
                   "--logit-bias", "irony=2", workspace=workspace)  # fmt: skip
    assert "No change" in same.stdout
    _write(template, "Is this tweet ironic? {{ text }}\nAnswer:")
    run_cli("prompt", "new", "irony", "--template-file", str(template), "--system",
            "You label tweets.", "--max-tokens", "8", workspace=workspace)  # fmt: skip
    shown = json.loads(run_cli("prompt", "show", "irony@1", "--json", workspace=workspace).stdout)
    assert shown["settings"]["max_new_tokens"] == 8
    assert shown["settings"]["logit_bias"] == {"irony": 2.0}
    assert run_cli("prompt", "label", "irony@1", "production", workspace=workspace).returncode == 0
    moved = run_cli("prompt", "label", "irony@2", "production", "--json", workspace=workspace)
    assert json.loads(moved.stdout) == {"label": "production", "version": 2, "previous_version": 1}
    prod = json.loads(run_cli("prompt", "show", "irony:production", "--json",
                              workspace=workspace).stdout)  # fmt: skip
    assert prod["version"] == 2
    diff = json.loads(run_cli("prompt", "diff", "irony@1", "irony@2", "--json",
                              workspace=workspace).stdout)  # fmt: skip
    template = next(t for t in diff["texts"] if t["name"] == "template")
    assert "-Classify: {{ text }}" in template["unified"]
    assert "+Is this tweet ironic? {{ text }}" in template["unified"]
    assert {c["key"] for c in diff["changes"]} == {"settings.logit_bias.irony", "settings.stop"}
    coloured = run_cli("prompt", "diff", "irony@1", "irony@2", workspace=workspace)
    assert coloured.returncode == 0 and "Is this tweet ironic?" in coloured.stdout
    log = json.loads(run_cli("prompt", "log", "irony", "--json", workspace=workspace).stdout)
    assert [v["version"] for v in log["versions"]] == [1, 2]
    assert len(log["label_history"]) == 2


def test_prompt_errors_are_one_line_with_exit_code_2(workspace: Workspace, tmp_path: Path) -> None:
    broken = _write(tmp_path / "b.j2", "Hello\n{{ text ")
    result = run_cli("prompt", "new", "p", "--template-file", str(broken), workspace=workspace)
    assert result.returncode == 2
    assert "line 2" in result.stderr and "Traceback" not in result.stderr
    ok = _write(tmp_path / "ok.j2", "{{ text }}")
    bad_setting = run_cli("prompt", "new", "p", "--template-file", str(ok), "--temperature", "-1",
                          workspace=workspace)  # fmt: skip
    assert bad_setting.returncode == 2 and "temperature" in bad_setting.stderr
    run_cli("prompt", "new", "sentiment", "--template-file", str(ok), workspace=workspace)
    unknown = run_cli("prompt", "show", "sentimnt", workspace=workspace)
    assert unknown.returncode == 2 and "sentiment" in unknown.stderr


def test_prompt_edit_uses_the_editor_and_saves_a_new_version(
    workspace: Workspace, tmp_path: Path
) -> None:
    ok = _write(tmp_path / "ok.j2", "{{ text }}")
    run_cli("prompt", "new", "p", "--template-file", str(ok), workspace=workspace)
    editor = _write(
        tmp_path / "editor.py",
        "import sys, pathlib\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "t = p.read_text().replace('{{ text }}', 'Tweet: {{ text }}')\n"
        "t = t.replace('=== message ===\\n', '=== message ===\\nadd a prefix')\n"
        "p.write_text(t)\n",
    )
    result = run_cli("prompt", "edit", "p@1", "--json", workspace=workspace,
                     env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == 2
    v2 = json.loads(run_cli("prompt", "show", "p@2", "--json", workspace=workspace).stdout)
    assert v2["template"] == "Tweet: {{ text }}"
    assert v2["message"] == "add a prefix"

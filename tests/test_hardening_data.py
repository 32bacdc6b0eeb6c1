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


def model_folder(tmp_path: Path, weights: dict[str, bytes], config: Any = None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    config = {"model_type": "llama"} if config is None else config
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for name, data in weights.items():
        (folder / name).write_bytes(data)
    return folder


GOOD_WEIGHTS = safetensors_bytes({"w": ("F32", [2, 3]), "b": ("F16", [3])})
BAD_MODELS: dict[str, tuple[dict[str, bytes], Any, list[str]]] = {
    "truncated weights": (
        {"model.safetensors": GOOD_WEIGHTS[:-5]},
        None,
        ["model.safetensors is truncated", "re-download"],
    ),
    "weights with a garbage header": (
        {"model.safetensors": b"\xff" * 64},
        None,
        ["model.safetensors is not a valid safetensors file", "header length"],
    ),
    "weights too short for a header": (
        {"model.safetensors": b"abc"},
        None,
        ["model.safetensors is not a valid safetensors file", "too short"],
    ),
    "weights whose header is not JSON": (
        {"model.safetensors": struct.pack("<Q", 4) + b"{{{{"},
        None,
        ["not JSON"],
    ),
    "corrupt adapter weights": (
        {"model.safetensors": GOOD_WEIGHTS, "adapter_model.safetensors": GOOD_WEIGHTS + b"xx"},
        None,
        ["adapter_model.safetensors is not a valid safetensors file", "stray bytes"],
    ),
    "empty config": ({"model.safetensors": GOOD_WEIGHTS}, {}, ['no "model_type"', "config.json"]),
    "config that is a list": ({"model.safetensors": GOOD_WEIGHTS}, [1], ['no "model_type"']),
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_weights_and_configs_are_refused_and_nothing_registered(
    store: Store, tmp_path: Path, case: str
) -> None:
    from tunelab.engine.models.sources import register_model

    weights, config, needles = BAD_MODELS[case]
    folder = model_folder(tmp_path, weights, config)
    with pytest.raises(BadInputError) as caught:
        register_model(store, str(folder))
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert store.list_models() == []


def test_valid_weights_register(store: Store, tmp_path: Path) -> None:
    from tunelab.engine.models.sources import register_model

    folder = model_folder(
        tmp_path, {"model.safetensors": GOOD_WEIGHTS, "adapter_model.safetensors": GOOD_WEIGHTS}
    )
    assert register_model(store, str(folder)).source == "hf_folder"


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOOD_WEIGHTS) - 1))
def test_any_truncation_of_a_weights_file_is_refused(cut: int) -> None:
    import tempfile

    from tunelab.engine.models.cache import check_safetensors

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(GOOD_WEIGHTS[:cut])
        with pytest.raises(BadInputError):
            check_safetensors(path)


# --- templates: bounded in time and memory, checked when saved --------------------------------


RUNAWAY_TEMPLATES = {
    "huge repeat": ('{{ "x" * 10**15 }}', "limit of 1,000,000"),
    "huge list repeat": ("{{ [1] * 10**9 }}", "limit of 1,000,000"),
    "huge power": ("{{ 7 ** (10**7) }}", "bits"),
    "nested loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "1,000,000 iterations",
    ),
    "huge range": ("{{ range(10**9)|list }}", "range of 1,000,000,000 items"),
    "huge padding": ('{{ "a"|center(10**12) }}', "width"),
    "huge method argument": ('{{ "a".ljust(10**12) }}', "passed to a method"),
    "doubling with ~": (
        '{% set ns = namespace(s="ab") %}{% for i in range(60) %}'
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "limit of 1,000,000 characters",
    ),
    "doubling a list in place": (
        "{% set l = [1] %}{% for i in range(60) %}{{ l.extend(l) }}{% endfor %}",
        "limit of 1,000,000",
    ),
    "endless recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion"),
}


@pytest.mark.parametrize("case", RUNAWAY_TEMPLATES)
def test_runaway_templates_stop_at_a_named_limit(case: str) -> None:
    from tunelab.engine.prompts.sandbox import TemplateLimitError
    from tunelab.engine.prompts.templates import render_template

    template, needle = RUNAWAY_TEMPLATES[case]
    started = time.monotonic()
    with pytest.raises(TemplateLimitError) as caught:
        render_template(template, {"text": "t"})
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    assert time.monotonic() - started < 5


def test_a_slow_render_stops_at_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exponential macro recursion never hits a size or loop limit, only the clock."""
    from tunelab.engine.prompts import sandbox
    from tunelab.engine.prompts.templates import render_template

    monkeypatch.setattr(sandbox, "RENDER_SECONDS", 0.2)
    template = (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    )
    started = time.monotonic()
    with pytest.raises(sandbox.TemplateLimitError, match=r"longer than the limit of 0\.2 s"):
        render_template(template, {})
    assert time.monotonic() - started < 3


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30), st.integers(min_value=0, max_value=50))
def test_the_limits_leave_ordinary_templates_alone(text: str, n: int) -> None:
    from tunelab.engine.prompts.templates import render_template

    template = (
        "{{ text * n }}|{{ n ** 3 }}|{{ text ~ n }}|"
        "{% for c in text %}{{ c }}{{ loop.index }}{% endfor %}|{{ range(n)|sum }}|"
        "{% set ns = namespace(s='') %}{% for i in range(n) %}{% set ns.s = ns.s ~ 'a' %}"
        "{% endfor %}{{ ns.s }}"
    )
    expected = (
        f"{text * n}|{n**3}|{text}{n}|"
        + "".join(f"{c}{i}" for i, c in enumerate(text, start=1))
        + f"|{sum(range(n))}|{'a' * n}"
    )
    assert render_template(template, {"text": text, "n": n}) == expected


SAVE_CASES: dict[str, tuple[PromptContent, list[str]]] = {
    "a template that never finishes": (
        PromptContent(
            template="{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}"
            "{% endfor %}{{ text }}"
        ),
        ["iterations"],
    ),
    "a system message that is too large": (
        PromptContent(template="{{ text }}", system='{{ "x" * 10**12 }}'),
        ["limit of 1,000,000"],
    ),
    "a system message with a syntax error": (
        PromptContent(template="{{ text }}", system="{% if %}"),
        ["template syntax error"],
    ),
    "an example without output": (
        PromptContent(
            template="{{ text }}", examples=[{"text": "a", "output": "x"}, {"text": "b"}]
        ),
        ["few-shot example 2 has no 'output' field"],
    ),
    "an example without a template variable": (
        PromptContent(template="{{ text }}", examples=[{"body": "a", "output": "x"}]),
        ["few-shot example 1 lacks text"],
    ),
}


@pytest.mark.parametrize("case", SAVE_CASES)
def test_versions_are_checked_when_saved(case: str) -> None:
    from tunelab.engine.prompts.text import validated_content

    content, needles = SAVE_CASES[case]
    with pytest.raises(BadInputError) as caught:
        validated_content(content)
    for needle in needles:
        assert needle in str(caught.value), str(caught.value)


def test_a_save_with_a_dataset_row_renders_it() -> None:
    from tunelab.engine.prompts.text import validated_content

    content = PromptContent(template="{{ text + 1 }}", mode="plain")
    validated_content(content)  # placeholder text proves nothing about types: allowed
    with pytest.raises(BadInputError, match="template failed to render"):
        validated_content(content, row={"text": "a"})
    assert validated_content(content, row={"text": 1}).template == content.template


# --- the same through the real command: one line, exit 2, nothing written ----------------------


@pytest.fixture(scope="module")
def cli_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from tunelab.store import init_workspace

    workspace, _ = init_workspace(tmp_path_factory.mktemp("ws") / "ws")
    return workspace


def test_cli_refuses_runaway_templates_weights_and_examples(
    cli_ws: Workspace, tmp_path: Path
) -> None:
    from tests.test_hardening_inputs import check_refused

    loops = tmp_path / "loops.j2"
    loops.write_text("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}")
    check_refused(cli_ws, ["prompt", "new", "p", "--template-file", str(loops)], ["iterations"])
    ok = tmp_path / "ok.j2"
    ok.write_text("{{ text }}")
    examples = tmp_path / "ex.json"
    examples.write_text(json.dumps([{"text": "a"}]))
    check_refused(
        cli_ws,
        ["prompt", "new", "p", "--template-file", str(ok), "--examples-file", str(examples)],
        ["has no 'output' field"],
    )
    folder = model_folder(tmp_path, {"model.safetensors": GOOD_WEIGHTS[:-1]})
    check_refused(cli_ws, ["model", "add", str(folder)], ["model.safetensors is truncated"])


def test_prompt_new_with_a_dataset_tries_its_first_row(cli_ws: Workspace, tmp_path: Path) -> None:
    from tests.test_hardening_inputs import check_refused

    with cli_ws.open_store() as store:
        add(store, write_jsonl(tmp_path / "d.jsonl", two_class_rows()), name="rows")
    typed = tmp_path / "typed.j2"
    typed.write_text("{{ text + 1 }}")
    check_refused(
        cli_ws,
        ["prompt", "new", "typed", "--template-file", str(typed), "--dataset", "rows"],
        ["template failed to render", "TypeError"],
    )
    plain = run_cli("prompt", "new", "plain", "--template-file", str(typed), workspace=cli_ws)
    assert plain.returncode == 0, plain.stderr  # no row named: placeholder text proves nothing


@pytest.mark.parametrize("missing", ["data/train.jsonl", "data/test.CSV", "d/x.parquet"])
def test_a_missing_file_that_looks_like_a_hub_id_is_not_looked_up(
    store: Store, missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.engine.data import importing

    def no_hub(*args: object, **kwargs: object) -> None:
        raise AssertionError("went to the hub")

    monkeypatch.setattr(importing, "read_hub", no_hub)
    with pytest.raises(BadInputError, match="does not exist"):
        add_dataset(store, [missing], DatasetOptions(name="d"))


def test_eval_of_a_runaway_version_stops_before_any_run(cli_ws: Workspace, tmp_path: Path) -> None:
    """A version stored before the save-time check existed still stops at the limit, exit 2."""
    from tests.test_hardening_inputs import check_refused

    with cli_ws.open_store() as store:
        if "evrows" not in store.dataset_names():
            add(store, write_jsonl(tmp_path / "d.jsonl", two_class_rows()), name="evrows")
        loops = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
        store.save_prompt_version("runaway", PromptContent(template=loops + "{{ text }}"))
        # eval registers the built-in model on first use; that is not what this test is about
        store.add_model(NewModel("builtin", "base", "builtin", "builtin"), exist_ok=True)
    check_refused(cli_ws, ["eval", "--prompt", "runaway", "--dataset", "evrows"],
                  ["template stopped", "1,000,000 iterations"])  # fmt: skip

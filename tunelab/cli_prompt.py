"""`tunelab prompt new|edit|show|log|diff|label|calibrate`: immutable prompt versions and labels."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import console, emit_json, fail, state
from tunelab.engine.prompts.settings import parse_logit_bias
from tunelab.engine.prompts.text import (
    content_to_text,
    text_to_content,
    version_to_content,
)
from tunelab.store import PromptContent, PromptVersion, parse_prompt_ref

prompt_app = typer.Typer(help="Write and version prompts.", no_args_is_help=True)

DEFAULT_TEMPLATE = "{{ text }}"


def _read_text_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{what} file {path} does not exist")
    except UnicodeDecodeError:
        fail(f"{what} file {path} is not UTF-8 text")
    except IsADirectoryError:
        fail(f"{what} file {path} is a directory")


def _read_examples(path: Path) -> list[dict[str, Any]]:
    text = _read_text_file(path, "examples")
    stripped = text.strip()
    try:
        if stripped.startswith("["):
            examples = json.loads(stripped)
        else:
            examples = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        fail(f"examples file {path}: invalid JSON at line {exc.lineno}: {exc.msg}")
    if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
        fail(f"examples file {path} must hold a JSON list of objects (or one object per line)")
    return examples


def edit_in_editor(text: str) -> str | None:
    """Open $EDITOR on `text`; None when the user saved nothing new."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        fail("no editor: set $EDITOR (e.g. export EDITOR=nano), or pass --template-file")
    with tempfile.NamedTemporaryFile("w", suffix=".tunelab-prompt.txt", delete=False) as handle:
        handle.write(text)
        path = Path(handle.name)
    try:
        result = subprocess.run([*shlex.split(editor), str(path)])
        if result.returncode != 0:
            fail(f"the editor exited with status {result.returncode}; nothing saved", code=1)
        edited = path.read_text(encoding="utf-8")
    finally:
        path.unlink(missing_ok=True)
    return None if edited == text else edited


def _save(
    name: str, content: PromptContent, message: str, as_json: bool, dataset: str | None = None
) -> None:
    from tunelab.engine.evaluation.answers import RULE_SETTING, parse_rule
    from tunelab.engine.prompts.text import validated_content

    if content.settings.get(RULE_SETTING):  # a bad rule fails now, not at the first eval
        parse_rule(str(content.settings[RULE_SETTING]))
    row = None
    if dataset is not None:  # a trial render on a real row catches type errors too
        store = state.store()
        first = store.get_dataset(dataset).splits[0].name
        rows = store.dataset_rows(dataset, first, limit=1)
        row = rows[0].data if rows else None
    content = validated_content(content, row=row)
    result = state.store().save_prompt_version(name, content, message=message)
    if as_json:
        emit_json({"prompt": name, "version": result.version.version, "created": result.created})
    elif result.created:
        console.print(f"Saved {result.version.ref} ({result.version.content_hash})")
    else:
        console.print(f"No change: identical to {result.version.ref}; nothing saved")


def _print_version(version: PromptVersion) -> None:
    labels = f"  labels: {', '.join(version.labels)}" if version.labels else ""
    console.print(
        Text(f"{version.ref}  {version.content_hash}  {version.created_at}{labels}", style="bold")
    )
    if version.message:
        console.print(f"  {version.message}")
    console.print(
        Text(
            f"mode: {version.mode}   reasoning: {version.reasoning}   settings: "
            f"{json.dumps(version.settings, sort_keys=True)}"
        )
    )
    if version.system:
        console.print(Text("--- system ---", style="dim"))
        console.print(Text(version.system))
    console.print(Text("--- template ---", style="dim"))
    console.print(Text(version.template))
    if version.examples:
        console.print(Text(f"--- examples ({len(version.examples)}) ---", style="dim"))
        console.print(Text(json.dumps(version.examples, indent=2, ensure_ascii=False)))


@prompt_app.command("new")
def prompt_new(
    name: str = typer.Argument(..., help="Prompt name."),
    template_file: Path | None = typer.Option(
        None, "--template-file", "-t", help="Template file (Jinja2); without it $EDITOR opens."
    ),
    system: str | None = typer.Option(None, "--system", help="System message."),
    system_file: Path | None = typer.Option(
        None, "--system-file", help="File holding the system message."
    ),
    examples_file: Path | None = typer.Option(
        None,
        "--examples-file",
        help="Few-shot examples: JSON list or JSONL of objects (columns plus 'output').",
    ),
    fewshot_k: int | None = typer.Option(
        None, "--fewshot-k", help="Draw K few-shot examples from a dataset split instead."
    ),
    fewshot_split: str = typer.Option(
        "train", "--fewshot-split", help="Split to draw few-shot examples from."
    ),
    mode: str = typer.Option(
        "chat", "--mode", help="chat (use the model's chat template) or plain."
    ),
    cot: bool = typer.Option(
        False, "--cot", help="Chain-of-thought: ask for reasoning, extract the final answer."
    ),
    answer_rule: str | None = typer.Option(
        None,
        "--answer-rule",
        help="How to read the final answer out of an output: gsm8k, marker, answer-line, "
        "answer-is, boxed, last-number or regex:PATTERN with one group (default: the "
        "dataset's rule).",
    ),
    temperature: float | None = typer.Option(None, "--temperature", help="0 means greedy."),
    top_p: float | None = typer.Option(None, "--top-p"),
    top_k: int | None = typer.Option(None, "--top-k"),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Maximum new tokens."),
    stop: list[str] = typer.Option([], "--stop", help="Stop sequence (repeatable)."),
    repetition_penalty: float | None = typer.Option(None, "--repetition-penalty"),
    seed: int | None = typer.Option(None, "--seed"),
    logit_bias: list[str] = typer.Option(
        [],
        "--logit-bias",
        help="STRING=WEIGHT (repeatable; quote a string with spaces: '\" yes\"=2').",
    ),
    message: str = typer.Option("", "--message", "-m", help="Commit message for the version."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Try the version on this dataset's first row before saving."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create a prompt's first version (or a new version of an existing prompt)."""
    settings: dict[str, Any] = {}
    for key, value in (
        ("temperature", temperature),
        ("top_p", top_p),
        ("top_k", top_k),
        ("max_new_tokens", max_tokens),
        ("repetition_penalty", repetition_penalty),
        ("seed", seed),
    ):
        if value is not None:
            settings[key] = value
    if stop:
        settings["stop"] = list(stop)
    if logit_bias:
        settings["logit_bias"] = parse_logit_bias(logit_bias)
    if fewshot_k is not None:
        settings["fewshot"] = {"k": fewshot_k, "split": fewshot_split, "seed": seed or 0}
    if answer_rule is not None and answer_rule.strip():
        settings["answer"] = answer_rule.strip()
    system_text = system or ""
    if system_file is not None:
        system_text = _read_text_file(system_file, "system")
    examples = _read_examples(examples_file) if examples_file else []
    draft = PromptContent(
        template=DEFAULT_TEMPLATE,
        system=system_text,
        examples=examples,
        mode=mode,
        reasoning="cot" if cot else "none",
        settings=settings,
    )
    if template_file is not None:
        draft = PromptContent(
            template=_read_text_file(template_file, "template"),
            system=draft.system,
            examples=draft.examples,
            mode=draft.mode,
            reasoning=draft.reasoning,
            settings=draft.settings,
        )
    else:
        edited = edit_in_editor(content_to_text(draft, message))
        if edited is None:
            fail("nothing saved: the editor closed without changes", code=1)
        draft, edited_message = text_to_content(edited)
        message = edited_message or message
    _save(name, draft, message, json_output, dataset)


@prompt_app.command("edit")
def prompt_edit(
    ref: str = typer.Argument(..., help="NAME, NAME@3 or NAME:label to start from."),
    message: str = typer.Option("", "--message", "-m", help="Commit message."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Try the version on this dataset's first row before saving."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Open $EDITOR on a version; saving makes a new version of the prompt."""
    version = state.store().get_prompt_version(ref)
    edited = edit_in_editor(content_to_text(version_to_content(version), message))
    if edited is None:
        fail("nothing saved: the editor closed without changes", code=1)
    content, edited_message = text_to_content(edited)
    _save(version.prompt_name, content, edited_message or message, json_output, dataset)


@prompt_app.command("show")
def prompt_show(
    ref: str = typer.Argument(..., help="NAME, NAME@3 or NAME:label."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one version: template, system message, examples and settings."""
    version = state.store().get_prompt_version(ref)
    if json_output:
        emit_json(version)
    else:
        _print_version(version)


@prompt_app.command("list")
def prompt_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List prompts with their latest version and labels."""
    prompts = state.store().list_prompts()
    if json_output:
        emit_json(prompts)
        return
    table = Table("prompt", "latest", "labels", "created")
    for p in prompts:
        labels = ", ".join(f"{k}@{v}" for k, v in p.labels.items())
        table.add_row(p.name, str(p.latest_version), labels, p.created_at[:19])
    console.print(table)


@prompt_app.command("log")
def prompt_log(
    name: str = typer.Argument(..., help="Prompt name."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Version history of a prompt, newest first, with labels."""
    store = state.store()
    versions = store.list_prompt_versions(name)
    if json_output:
        emit_json({"versions": versions, "label_history": store.label_history(name)})
        return
    table = Table("version", "hash", "created", "labels", "message")
    for v in reversed(versions):
        table.add_row(
            f"@{v.version}", v.content_hash, v.created_at[:19], ", ".join(v.labels), v.message
        )
    console.print(table)


@prompt_app.command("diff")
def prompt_diff(
    a: str = typer.Argument(..., help="First version, e.g. NAME@1."),
    b: str = typer.Argument(..., help="Second version, e.g. NAME@3."),
    side_by_side: bool = typer.Option(False, "--side-by-side", "-s", help="Two columns."),
    json_output: bool = typer.Option(False, "--json", help="Print the diff as JSON."),
) -> None:
    """Diff of template, system message, examples and settings (same as `tunelab diff prompt`)."""
    from tunelab.cli_compare import diff_prompt_command

    diff_prompt_command(a, b, side_by_side=side_by_side, json_output=json_output)


@prompt_app.command("calibrate")
def prompt_calibrate(
    ref: str = typer.Argument(..., help="The version to calibrate, NAME@VERSION."),
    method: str = typer.Option(
        ..., "--method", help="contextual (content-free inputs) or batch (unlabelled rows)."
    ),
    dataset: str = typer.Option(..., "--dataset", "-d", help="A classification dataset."),
    split: str = typer.Option(
        "validation", "--split", help="Split whose inputs a batch prior averages."
    ),
    model: str = typer.Option("builtin", "--model", help="Model the prior is measured with."),
    per_run: bool = typer.Option(
        False, "--per-run", help="batch: store no prior; each run averages the rows it scores."
    ),
    limit: int | None = typer.Option(None, "--limit", help="batch: average the first N rows."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Save a child version that calibrates its label-likelihood scores (Zhao et al. 2021,
    Zhou et al. 2023) from unlabelled inputs; likelihood evaluations of it apply the prior."""
    from tunelab.engine.evaluation.calibrate import calibrate_version

    version = calibrate_version(
        state.store(), ref, dataset, split, method, model, per_run=per_run, limit=limit
    )
    if json_output:
        emit_json(
            {"prompt": version.prompt_name, "version": version.version, "message": version.message}
        )
    else:
        console.print(f"Saved {version.ref}: {version.message}")


@prompt_app.command("label")
def prompt_label(
    ref: str = typer.Argument(..., help="NAME@VERSION to label (or NAME with --remove/--history)."),
    label: str | None = typer.Argument(None, help="Label, e.g. production or staging."),
    remove: bool = typer.Option(False, "--remove", help="Remove the label."),
    history: bool = typer.Option(False, "--history", help="Show where labels pointed over time."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Move a label (production, staging, ...) to a version; labels keep their history."""
    store = state.store()
    if history:
        events = store.label_history(parse_prompt_ref(ref)[0])
        if json_output:
            emit_json(events)
            return
        table = Table("when", "label", "from", "to")
        for e in events:
            table.add_row(
                e.moved_at[:19],
                e.label,
                f"@{e.previous_version}" if e.previous_version else "-",
                f"@{e.version}" if e.version else "(removed)",
            )
        console.print(table)
        return
    if label is None:
        fail("give the label to move, e.g. `tunelab prompt label NAME@3 production`")
    if remove:
        store.remove_label(parse_prompt_ref(ref)[0], label)
        if json_output:
            emit_json({"label": label, "removed": True})
        else:
            console.print(f"Removed label {label!r}")
        return
    version, previous = store.set_label(ref, label)
    if json_output:
        emit_json({"label": label, "version": version.version, "previous_version": previous})
    else:
        moved = f" (was @{previous})" if previous else ""
        console.print(f"{version.prompt_name}:{label} → @{version.version}{moved}")


def register(app: typer.Typer) -> None:
    app.add_typer(prompt_app, name="prompt")

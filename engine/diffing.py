"""Diffs of prompt versions, models and runs, as data the CLI and the TUI both render.

Nothing here formats for a terminal: a diff is a list of lines or segments tagged with what
changed, so a rich renderer, a Textual widget and a report can each draw it their own way.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.store import Model, PromptVersion, Run, Store, StoreError

from .errors import BadInputError

if TYPE_CHECKING:
    from .compare_types import Comparison

_TOKEN = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True)
class WordDiffSegment:
    op: str
    """'equal', 'delete' (only in a) or 'insert' (only in b)."""
    text: str


def word_diff(a: str, b: str) -> list[WordDiffSegment]:
    """A word-level diff from a to b; whitespace is kept so segments join back to the texts.

    Words are matched with whitespace runs treated as equal, so a re-wrapped line still lines
    up word by word; a changed whitespace run then shows as its own delete and insert.
    """
    tokens_a, tokens_b = _TOKEN.findall(a), _TOKEN.findall(b)
    words_a = [t if t.strip() else " " for t in tokens_a]
    words_b = [t if t.strip() else " " for t in tokens_b]
    matcher = difflib.SequenceMatcher(None, words_a, words_b, autojunk=False)
    segments: list[WordDiffSegment] = []

    def add(op: str, text: str) -> None:
        if not text:
            return
        if segments and segments[-1].op == op:
            segments[-1] = WordDiffSegment(op, segments[-1].text + text)
        else:
            segments.append(WordDiffSegment(op, text))

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            # Words match; whitespace may differ, and then both spellings are kept.
            for token_a, token_b in zip(tokens_a[i1:i2], tokens_b[j1:j2], strict=True):
                if token_a == token_b:
                    add("equal", token_a)
                else:
                    add("delete", token_a)
                    add("insert", token_b)
        else:
            add("delete", "".join(tokens_a[i1:i2]))
            add("insert", "".join(tokens_b[j1:j2]))
    return segments


@dataclass(frozen=True)
class SideBySideLine:
    tag: str
    """'equal', 'replace', 'delete' or 'insert'."""
    left: str | None
    right: str | None


@dataclass(frozen=True)
class TextDiff:
    """One multi-line field of two versions: its unified and side-by-side diffs."""

    name: str
    a: str
    b: str
    unified: list[str]
    side_by_side: list[SideBySideLine]

    @property
    def changed(self) -> bool:
        return self.a != self.b


def text_diff(name: str, a: str, b: str, a_label: str = "a", b_label: str = "b") -> TextDiff:
    lines_a, lines_b = a.splitlines(), b.splitlines()
    unified = list(
        difflib.unified_diff(
            lines_a, lines_b, f"{a_label} {name}", f"{b_label} {name}", lineterm=""
        )
    )
    rows: list[SideBySideLine] = []
    matcher = difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        left, right = lines_a[i1:i2], lines_b[j1:j2]
        for k in range(max(len(left), len(right))):
            rows.append(
                SideBySideLine(
                    tag, left[k] if k < len(left) else None, right[k] if k < len(right) else None
                )
            )
    return TextDiff(name, a, b, unified, rows)


@dataclass(frozen=True)
class ValueChange:
    key: str
    """A dotted path for nested values, e.g. 'lora.r'."""
    a: Any
    b: Any
    change: str
    """'added', 'removed' or 'changed'."""


_MISSING = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaf values; an empty dict has no leaves, so {} vs {"x": 1} is one add."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def dict_diff(a: dict[str, Any], b: dict[str, Any]) -> list[ValueChange]:
    """Keys that differ between two (nested) dicts, as dotted paths in sorted order."""
    flat_a, flat_b = _flatten(a), _flatten(b)
    changes = []
    for key in sorted(set(flat_a) | set(flat_b)):
        va, vb = flat_a.get(key, _MISSING), flat_b.get(key, _MISSING)
        if va is _MISSING:
            changes.append(ValueChange(key, None, vb, "added"))
        elif vb is _MISSING:
            changes.append(ValueChange(key, va, None, "removed"))
        elif va != vb:
            changes.append(ValueChange(key, va, vb, "changed"))
    return changes


@dataclass(frozen=True)
class PromptDiff:
    a_ref: str
    b_ref: str
    texts: list[TextDiff]
    """template, system and examples (as JSON lines)."""
    changes: list[ValueChange]
    """mode, reasoning and settings.* that differ."""
    a_message: str = ""
    b_message: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.changes) or any(t.changed for t in self.texts)


def diff_prompt_versions(a: PromptVersion, b: PromptVersion) -> PromptDiff:
    """Everything that differs between two prompt versions (shared by `prompt diff` and `diff`)."""
    texts = [
        text_diff("template", a.template, b.template, a.ref, b.ref),
        text_diff("system", a.system, b.system, a.ref, b.ref),
        text_diff("examples", _examples_text(a.examples), _examples_text(b.examples), a.ref, b.ref),
    ]
    changes = dict_diff(
        {"mode": a.mode, "reasoning": a.reasoning, "settings": a.settings},
        {"mode": b.mode, "reasoning": b.reasoning, "settings": b.settings},
    )
    return PromptDiff(a.ref, b.ref, texts, changes, a.message, b.message)


def _examples_text(examples: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(e, ensure_ascii=False, sort_keys=True) for e in examples)


def diff_prompts(store: Store, ref_a: str, ref_b: str) -> PromptDiff:
    """Resolve two prompt refs (NAME@1, NAME:production, NAME) and diff them."""
    return diff_prompt_versions(store.get_prompt_version(ref_a), store.get_prompt_version(ref_b))


@dataclass(frozen=True)
class ModelDiff:
    a_name: str
    b_name: str
    changes: list[ValueChange]
    """Kind, source, method, base, training data, step and other descriptive fields."""
    config_changes: list[ValueChange]
    """The training configurations, key by key."""
    metric_changes: list[ValueChange]
    lineage_a: list[str]
    """The model, then its base, then the base's base ..."""
    lineage_b: list[str]
    common_ancestor: str | None


def lineage(store: Store, model: Model) -> list[str]:
    """The model's name followed by each base model's name, up to a model with no base."""
    chain = [model.name]
    seen = {model.id}
    current = model
    while current.base_model_id is not None and current.base_model_id not in seen:
        current = store.get_model_by_id(current.base_model_id)
        seen.add(current.id)
        chain.append(current.name)
    return chain


def _model(store: Store, ref: str) -> Model:
    try:
        return store.get_model(ref)
    except StoreError:
        if ref.isdigit():
            return store.get_model_by_id(int(ref))
        raise


def _describe_model(store: Store, m: Model) -> dict[str, Any]:
    def name_of(model_id: int | None) -> str | None:
        return None if model_id is None else store.get_model_by_id(model_id).name

    def prompt_of(version_id: int | None) -> str | None:
        return None if version_id is None else store.get_prompt_version_by_id(version_id).ref

    def dataset_of(dataset_id: int | None) -> str | None:
        return None if dataset_id is None else store.get_dataset_by_id(dataset_id).name

    return {
        "kind": m.kind, "source": m.source, "path": m.path, "method": m.method,
        "base_model": name_of(m.base_model_id),
        "training_dataset": dataset_of(m.training_dataset_id),
        "training_dataset_fingerprint": m.training_dataset_fingerprint,
        "prompt": prompt_of(m.prompt_version_id), "job_id": m.job_id, "step": m.step,
        "is_best": m.is_best, "size_bytes": m.size_bytes, "fingerprint": m.fingerprint,
    }  # fmt: skip


def diff_models(store: Store, ref_a: str, ref_b: str) -> ModelDiff:
    """Descriptive fields, training configuration, metrics and lineage of two models."""
    a, b = _model(store, ref_a), _model(store, ref_b)
    lineage_a, lineage_b = lineage(store, a), lineage(store, b)
    common = next((name for name in lineage_a if name in lineage_b), None)
    return ModelDiff(
        a.name, b.name,
        dict_diff(_describe_model(store, a), _describe_model(store, b)),
        dict_diff(a.training_config, b.training_config),
        dict_diff(a.metrics, b.metrics),
        lineage_a, lineage_b, common,
    )  # fmt: skip


@dataclass(frozen=True)
class RunDiff:
    a: Run
    b: Run
    changes: list[ValueChange]
    """Prompt, model, dataset, split, scoring, row limit, seed, status and metric names."""
    settings_changes: list[ValueChange]
    prompt: PromptDiff | None
    """Only when the runs used different prompt versions."""
    model: ModelDiff | None
    """Only when the runs used different models."""
    comparison: Comparison | None = None
    comparison_error: str | None = None
    metric_changes: list[ValueChange] = field(default_factory=list)


def _describe_run(run: Run) -> dict[str, Any]:
    return {
        "prompt": run.prompt_ref, "model": run.model_name, "dataset": run.dataset_name,
        "split": run.split, "scoring": run.scoring, "row_limit": run.row_limit,
        "sample_seed": run.sample_seed, "status": run.status, "rows": run.rows_done,
        "metric_names": ", ".join(run.metric_names),
    }  # fmt: skip


def diff_runs(
    store: Store, run_a: int, run_b: int, *, seed: int = 0, n_boot: int = 2000
) -> RunDiff:
    """Two runs: their settings, prompts, models, and a comparison of their rows when possible."""
    from .compare import compare_runs

    a, b = store.get_run(run_a), store.get_run(run_b)
    prompt = None
    if a.prompt_version_id != b.prompt_version_id:
        prompt = diff_prompt_versions(
            store.get_prompt_version_by_id(a.prompt_version_id),
            store.get_prompt_version_by_id(b.prompt_version_id),
        )
    model = None
    if a.model_id != b.model_id:
        model = diff_models(store, a.model_name, b.model_name)
    comparison, error = None, None
    try:
        comparison = compare_runs(
            store, [a.id, b.id], seed=seed, n_boot=n_boot, shared_rows_only=True
        )
    except BadInputError as exc:
        error = str(exc)
    numeric = {k: v for k, v in a.metrics.items() if isinstance(v, int | float)}
    numeric_b = {k: v for k, v in b.metrics.items() if isinstance(v, int | float)}
    return RunDiff(
        a,
        b,
        dict_diff(_describe_run(a), _describe_run(b)),
        dict_diff(a.settings, b.settings),
        prompt,
        model,
        comparison,
        error,
        dict_diff(numeric, numeric_b),
    )

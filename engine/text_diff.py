"""Word and line diffs of texts and nested settings, as data each front end draws its own way."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

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

"""What differs between two prompt versions: texts, mode, reasoning and settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tunelab.engine.text_diff import TextDiff, ValueChange, dict_diff, text_diff
from tunelab.store import PromptVersion, Store


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

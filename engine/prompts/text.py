"""A plain-text form of a prompt version, for `$EDITOR` editing and unified diffs.

Sections are introduced by `=== name ===` lines, so templates can hold any text.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.store import PromptContent, PromptVersion

SECTIONS = ("message", "settings", "system", "template", "examples")
HEADER = (
    "# Edit the sections below and save; close without saving to cancel.\n"
    "# settings: TOML (mode = plain|chat, reasoning = none|cot, temperature, top_p, top_k,\n"
    '#   max_new_tokens, stop = [..], repetition_penalty, seed, logit_bias = {"yes" = 2.0},\n'
    '#   fewshot = {k = 3, split = "train", seed = 0}).\n'
    '# examples: a JSON list of objects (the row\'s columns plus "output").\n'
    "# Lines starting with '#' before the first section are ignored.\n"
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if value is None:
        return '""'
    raise BadInputError(f"cannot write setting value {value!r}")


def settings_to_toml(mode: str, reasoning: str, settings: dict[str, Any]) -> str:
    lines = [f"mode = {_toml_value(mode)}", f"reasoning = {_toml_value(reasoning)}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in sorted(settings.items()) if v is not None]
    return "\n".join(lines)


def content_to_text(content: PromptContent, message: str = "") -> str:
    """Render content as the editable text form."""
    parts = [
        HEADER,
        "=== message ===",
        message,
        "=== settings ===",
        settings_to_toml(content.mode, content.reasoning, content.settings),
        "=== system ===",
        content.system,
        "=== template ===",
        content.template,
        "=== examples ===",
        json.dumps(content.examples, indent=2, ensure_ascii=False),
    ]
    return "\n".join(parts) + "\n"


def version_to_content(version: PromptVersion) -> PromptContent:
    return PromptContent(
        template=version.template,
        system=version.system,
        examples=list(version.examples),
        mode=version.mode,
        reasoning=version.reasoning,
        settings=dict(version.settings),
    )


def text_to_content(text: str) -> tuple[PromptContent, str]:
    """Parse the text form; returns the content and the commit message."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("===") and stripped.endswith("===") and len(stripped) > 6:
            name = stripped.strip("=").strip().lower()
            if name not in SECTIONS:
                raise BadInputError(
                    f"line {number}: unknown section {name!r}; sections are {', '.join(SECTIONS)}"
                )
            current = name
            sections[current] = []
            continue
        if current is None:
            if stripped and not stripped.startswith("#"):
                raise BadInputError(f"line {number}: text before the first '=== section ===' line")
            continue
        sections[current].append(line)
    if "template" not in sections:
        raise BadInputError("the '=== template ===' section is missing")

    def body(name: str) -> str:
        return "\n".join(sections.get(name, [])).strip("\n")

    try:
        settings = tomllib.loads(body("settings"))
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"settings section is not valid TOML: {exc}") from None
    mode = str(settings.pop("mode", "chat"))
    reasoning = str(settings.pop("reasoning", "none"))
    examples_text = body("examples").strip() or "[]"
    try:
        examples = json.loads(examples_text)
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"examples section: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
        raise BadInputError("examples must be a JSON list of objects")
    content = PromptContent(
        template=body("template"),
        system=body("system"),
        examples=examples,
        mode=mode,
        reasoning=reasoning,
        settings=settings,
    )
    return content, body("message").strip()


def unified_prompt_diff(a: PromptVersion, b: PromptVersion) -> list[str]:
    """Unified diff lines of two versions (template, system, examples, then settings)."""
    from tunelab.engine.prompts.diff import diff_prompt_versions

    diff = diff_prompt_versions(a, b)
    lines = [line for text in diff.texts for line in text.unified]
    for change in diff.changes:
        if change.change != "added":
            lines.append(f"-{change.key} = {json.dumps(change.a, ensure_ascii=False)}")
        if change.change != "removed":
            lines.append(f"+{change.key} = {json.dumps(change.b, ensure_ascii=False)}")
    return lines


def validated_content(content: PromptContent, row: dict[str, Any] | None = None) -> PromptContent:
    """Check a version before it is saved and normalise its settings, so the CLI, the TUI and
    the demo store the same content (and the same hash) for the same prompt.

    Besides syntax, the template is tried once: on `row` when a dataset row is given (every
    error counts), otherwise on placeholder values (only a time or memory limit counts, as a
    real row may hold other types). Fixed few-shot examples must hold the answer and every
    variable the template reads.

    Raises:
        BadInputError: a template syntax error, a template over the render limits, a bad
            few-shot example, or a bad generation or few-shot setting.
    """
    from tunelab.engine.prompts.settings import GenerationSettings
    from tunelab.engine.prompts.templates import FewShotConfig, build_prompt, variables_of

    needed = variables_of(content.template)  # a syntax error names its line and column
    system_needs = variables_of(content.system) if content.system else []
    _check_examples(content.examples, needed)
    from tunelab.engine.prompts import calibration, retrieval
    from tunelab.engine.prompts.settings import VERSION_SECTIONS

    generation = {k: v for k, v in content.settings.items() if k not in VERSION_SECTIONS}
    settings = GenerationSettings.from_dict(generation).to_dict()
    calibrated = calibration.Calibration.from_settings(content.settings)
    if calibrated is not None:
        settings[calibration.SETTING] = calibrated.to_dict()
    retrieving = retrieval.RetrievalConfig.from_settings(content.settings)
    if retrieving is not None:
        if FewShotConfig.from_settings(content.settings).k:
            raise BadInputError(
                "settings.fewshot and settings.retrieval both choose the examples; keep one"
            )
        settings[retrieval.SETTING] = retrieving.to_dict()
    if "fewshot" in content.settings:
        settings["fewshot"] = FewShotConfig.from_settings(content.settings).to_dict()
    if "answer" in content.settings:
        # The answer rule's syntax is checked by the evaluation layer, which sits above this.
        if not isinstance(content.settings["answer"], str):
            raise BadInputError(
                f"settings.answer must be a rule name, not {content.settings['answer']!r}"
            )
        settings["answer"] = content.settings["answer"]
    if "judge" in content.settings:
        # A rubric's scale; the judge layer, which sits above this, reads and checks it.
        if not isinstance(content.settings["judge"], dict):
            raise BadInputError(
                f"settings.judge must be a mapping like {{scale = [1, 5]}}, not "
                f"{content.settings['judge']!r}"
            )
        settings["judge"] = content.settings["judge"]
    checked = PromptContent(
        template=content.template,
        system=content.system,
        examples=content.examples,
        mode=content.mode,
        reasoning=content.reasoning,
        settings=settings,
    )
    if row is not None:
        build_prompt(checked, row)
    else:
        _trial_render(content.template, needed)
        if content.system:
            _trial_render(content.system, system_needs)
    return checked


def _check_examples(examples: list[dict[str, Any]], needed: list[str]) -> None:
    """Refuse fixed few-shot examples that every render would refuse later."""
    from tunelab.engine.prompts.templates import OUTPUT_KEY

    for number, example in enumerate(examples, start=1):
        if not isinstance(example, dict):
            raise BadInputError(f"few-shot example {number} is not an object")
        if OUTPUT_KEY not in example:
            raise BadInputError(
                f"few-shot example {number} has no {OUTPUT_KEY!r} field (its answer); it has "
                f"{', '.join(sorted(example)) or 'no fields'}"
            )
        missing = [v for v in needed if v not in example]
        if missing:
            raise BadInputError(
                f"few-shot example {number} lacks {', '.join(missing)}, which the template "
                "uses; add the field to every example"
            )


def _trial_render(template: str, needed: list[str]) -> None:
    """Render once on placeholder text, so a template that can never finish is refused now."""
    from tunelab.engine.prompts.sandbox import TemplateLimitError
    from tunelab.engine.prompts.templates import render_template

    try:
        render_template(template, dict.fromkeys(needed, "x"))
    except TemplateLimitError:
        raise
    except BadInputError:
        pass  # placeholder text is not a real row: a type error here proves nothing

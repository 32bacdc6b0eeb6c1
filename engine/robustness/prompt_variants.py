"""Prompt perturbations: small changes to the prompt itself, each a child prompt version.

`paraphrase` replaces the instruction with each line of a file the user wrote; `label_order`
lists the version's labels in another (seeded) order; `shot_order` shows its fixed
demonstrations in another (seeded) order. Each is the variability the seed comparison
attributes to prompting, measured on the clean run's own rows.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from tunelab.engine.errors import BadInputError
from tunelab.engine.prompts.templates import FewShotConfig
from tunelab.store import PromptContent, PromptVersion

PROMPT_VARIANTS = ("paraphrase", "label_order", "shot_order")
_JINJA = "{{"


@dataclass(frozen=True)
class PromptVariant:
    """One changed prompt, before it is saved as a child version."""

    perturbation: str
    content: PromptContent
    detail: str
    """What changed, also the child version's commit message."""


@dataclass(frozen=True)
class PromptVariantSpec:
    """What the user asked for: a variant name and, for `paraphrase`, the file of lines."""

    name: str
    path: Path | None = None


def parse_prompt_variants(specs: list[str]) -> list[PromptVariantSpec]:
    """`paraphrase=FILE`, `label_order`, `shot_order`, each at most once."""
    parsed: list[PromptVariantSpec] = []
    for spec in (s.strip() for s in specs if s.strip()):
        name, sep, raw = spec.partition("=")
        if name not in PROMPT_VARIANTS:
            raise BadInputError(
                f"unknown prompt variant {name!r}; choose from paraphrase=FILE, label_order, "
                "shot_order"
            )
        if name == "paraphrase" and not (sep and raw.strip()):
            raise BadInputError("paraphrase needs its file: paraphrase=FILE, one per line")
        if name != "paraphrase" and sep:
            raise BadInputError(f"prompt variant {name!r} takes no value (got {raw!r})")
        if any(p.name == name for p in parsed):
            raise BadInputError(f"prompt variant {name!r} is given twice; name it once")
        parsed.append(PromptVariantSpec(name, Path(raw.strip()).expanduser() if sep else None))
    return parsed


def _content(version: PromptVersion, **changes: object) -> PromptContent:
    fields: dict[str, object] = {
        "template": version.template,
        "system": version.system,
        "examples": [dict(e) for e in version.examples],
        "mode": version.mode,
        "reasoning": version.reasoning,
        "settings": dict(version.settings),
    }
    fields.update(changes)
    return PromptContent(**fields)  # type: ignore[arg-type]


def read_paraphrases(path: Path) -> list[str]:
    """The file's non-blank lines; `\\n` in a line stands for a line break."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"cannot read the paraphrase file {path}: {exc.strerror}") from None
    lines = [line.strip().replace("\\n", "\n") for line in text.splitlines() if line.strip()]
    if not lines:
        raise BadInputError(f"the paraphrase file {path} has no lines; write one per line")
    return lines


def paraphrases(version: PromptVersion, lines: list[str]) -> list[PromptVariant]:
    """A line holding `{{` replaces the template; any other line replaces the system
    message, which the version must then have (its instruction lives there)."""
    variants: list[PromptVariant] = []
    for n, line in enumerate(lines, start=1):
        if _JINJA in line:
            content = _content(version, template=line)
        elif version.system:
            content = _content(version, system=line)
        else:
            raise BadInputError(
                f"paraphrase {n} has no {{{{ variable }}}} and prompt {version.ref} has no "
                "system message to replace; write each line as a whole template, e.g. "
                "'Emotion of this tweet? {{ text }}'"
            )
        if content.template == version.template and content.system == version.system:
            raise BadInputError(f"paraphrase {n} is prompt {version.ref}'s own text; change it")
        first = line.splitlines()[0]
        variants.append(
            PromptVariant("paraphrase", content, f"instruction paraphrase {n}: {first[:60]!r}")
        )
    return variants


def _shuffled(items: list[str], rng: random.Random) -> list[str]:
    """A seeded order different from the given one (the items are distinct, at least two)."""
    order = list(items)
    while order == items:
        rng.shuffle(order)
    return order


def _label_spans(text: str, labels: list[str]) -> list[tuple[int, int, str]] | None:
    """(start, end, label) of each label in the text when each occurs exactly once."""
    spans: list[tuple[int, int, str]] = []
    for label in labels:
        found = list(re.finditer(rf"(?<!\w){re.escape(label)}(?!\w)", text, flags=re.I))
        if len(found) != 1:
            return None
        spans.append((found[0].start(), found[0].end(), label))
    return sorted(spans)


def _like(label: str, written: str) -> str:
    """The label in the case the instruction wrote its slot in."""
    if written.isupper() and len(written) > 1:
        return label.upper()
    if written[:1].isupper():
        return label[:1].upper() + label[1:]
    return label


def label_order(version: PromptVersion, labels: list[str], seed: int) -> PromptVariant:
    """The labels listed in a seeded other order, where the instruction lists each once."""
    if len(set(labels)) < 2:
        raise BadInputError("label_order needs a classification dataset with two or more labels")
    for field_name in ("system", "template"):
        text = getattr(version, field_name)
        spans = _label_spans(text, labels)
        if spans is None:
            continue
        listed = [label for _, _, label in spans]
        order = _shuffled(listed, random.Random(f"label_order:{seed}"))
        changed = text
        for (start, end, _), label in reversed(list(zip(spans, order, strict=True))):
            changed = changed[:start] + _like(label, text[start:end]) + changed[end:]
        detail = f"labels listed as {', '.join(order)} (was {', '.join(listed)})"
        return PromptVariant("label_order", _content(version, **{field_name: changed}), detail)
    raise BadInputError(
        f"prompt {version.ref} does not list the labels ({', '.join(labels)}) once each in "
        "its system message or template; drop label_order"
    )


def shot_order(version: PromptVersion, seed: int) -> PromptVariant:
    """The fixed demonstrations in a seeded other order."""
    if FewShotConfig.from_settings(version.settings).k and not version.examples:
        raise BadInputError(
            f"prompt {version.ref} draws its demonstrations (settings.fewshot), so their order "
            "comes from its seed; shot_order needs fixed examples"
        )
    if len(version.examples) < 2:
        raise BadInputError(
            f"prompt {version.ref} has {len(version.examples)} fixed demonstration(s); "
            "shot_order needs at least 2"
        )
    keys = [str(i) for i in range(len(version.examples))]
    order = [int(i) for i in _shuffled(keys, random.Random(f"shot_order:{seed}"))]
    examples = [dict(version.examples[i]) for i in order]
    detail = f"demonstrations in the order {', '.join(str(i + 1) for i in order)}"
    return PromptVariant("shot_order", _content(version, examples=examples), detail)


def prompt_variants(
    version: PromptVersion, specs: list[PromptVariantSpec], labels: list[str], seed: int
) -> list[PromptVariant]:
    """Every variant the specs ask for, checked (bad input) before anything is saved."""
    variants: list[PromptVariant] = []
    for spec in specs:
        if spec.name == "paraphrase":
            assert spec.path is not None
            variants += paraphrases(version, read_paraphrases(spec.path))
        elif spec.name == "label_order":
            variants.append(label_order(version, labels, seed))
        else:
            variants.append(shot_order(version, seed))
    return variants

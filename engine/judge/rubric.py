"""Rubrics: prompt versions a judge model follows, with a stated score scale.

A rubric is an ordinary prompt version (versioned, labelled and diffed like any other)
whose template reads `input`, `output` and `reference` (plus the judged row's own dataset
columns) and whose `settings["judge"]` states the scale. The judge appends the reply format
it parses ("Score: N" then "Reason: ..."), so every rubric is read the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from tunelab.store import Dataset, PromptVersion, Store

JUDGE_SETTING = "judge"
"""The key of a version's settings that holds the rubric's scale: {"scale": [1, 5]}."""
RUBRIC_VARIABLES = ("input", "output", "reference")
"""What every rubric may read besides the row's dataset columns."""
DEFAULT_MAX_NEW_TOKENS = 48
"""Room for a score and a one-sentence reason; a rubric's own setting wins."""
MAX_SCALE_STEPS = 100
_SCALE_RE = re.compile(r"^\s*(-?\d+)\s*(?:-|\.\.|to|–)\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class ScoreScale:
    """The whole-number scores a rubric allows, lowest to highest (1-5 unless stated).

    Args:
        low: the worst score.
        high: the best score.
    """

    low: int = 1
    high: int = 5

    def __post_init__(self) -> None:
        for value in (self.low, self.high):
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadInputError(f"a score scale is two whole numbers, like 1-5; got {value!r}")
        if not self.low < self.high <= self.low + MAX_SCALE_STEPS:
            raise BadInputError(
                f"a score scale runs from a lower to a higher whole number at most "
                f"{MAX_SCALE_STEPS} apart, like 1-5; got {self.low}-{self.high}"
            )

    @classmethod
    def parse(cls, text: str) -> ScoreScale:
        """`1-5`, `0..10` or `1 to 7` → a scale."""
        match = _SCALE_RE.match(text)
        if match is None:
            raise BadInputError(f"write a score scale as LOW-HIGH, like 1-5; got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ScoreScale:
        """The scale in a version's `settings["judge"]`; 1-5 when the version states none."""
        section = settings.get(JUDGE_SETTING)
        if section is None:
            return cls()
        if not isinstance(section, dict) or set(section) - {"scale"}:
            raise BadInputError(
                f"settings.{JUDGE_SETTING} must be a mapping like {{'scale': [1, 5]}}, "
                f"got {section!r}"
            )
        scale = section.get("scale", [1, 5])
        if not isinstance(scale, list | tuple) or len(scale) != 2:
            raise BadInputError(
                f"settings.{JUDGE_SETTING}.scale must be [LOW, HIGH], got {scale!r}"
            )
        return cls(scale[0], scale[1])

    def contains(self, score: int) -> bool:
        return self.low <= score <= self.high

    @property
    def label(self) -> str:
        return f"{self.low}-{self.high}"

    def to_settings(self) -> dict[str, Any]:
        return {JUDGE_SETTING: {"scale": [self.low, self.high]}}


@dataclass(frozen=True)
class Rubric:
    """A prompt version read as a rubric: its text and the scale its scores use."""

    version: PromptVersion
    scale: ScoreScale

    @property
    def ref(self) -> str:
        return self.version.ref

    @classmethod
    def from_version(cls, version: PromptVersion) -> Rubric:
        """Read a version as a rubric; refuse what a rubric cannot hold."""
        if version.examples or "fewshot" in version.settings:
            raise BadInputError(
                f"rubric {version.ref} has few-shot examples; a rubric cannot use them (its "
                "`output` variable is the judged output): save a version without them"
            )
        return cls(version, ScoreScale.from_settings(version.settings))


def load_rubric(store: Store, ref: str) -> Rubric:
    """The rubric a reference (`NAME`, `NAME@2`, `NAME:label`) names."""
    if not ref or not ref.strip():
        raise BadInputError("name a rubric with --rubric NAME@VERSION")
    return Rubric.from_version(store.get_prompt_version(ref.strip()))


def known_variables(dataset: Dataset | None, row_columns: Iterable[str] = ()) -> set[str]:
    """What a rubric may read when judging rows of `dataset`: the three judge variables, the
    dataset's input and reference columns and the columns its rows hold."""
    known = set(RUBRIC_VARIABLES) | set(row_columns)
    if dataset is not None:
        known.update(dataset.input_columns)
        if dataset.reference_column:
            known.add(dataset.reference_column)
    return known


def check_variables(
    template: str, system: str, known: set[str], where: str, rubric: str = "the rubric"
) -> None:
    """Refuse, in one line, a rubric that reads a variable the judge cannot give it."""
    from tunelab.engine.prompts.templates import variables_of

    wanted = set(variables_of(template)) | (set(variables_of(system)) if system else set())
    unknown = sorted(wanted - known)
    if unknown:
        raise BadInputError(
            f"{rubric} uses {', '.join(unknown)}, which {where} does not have; a rubric may "
            f"read {', '.join(sorted(known))}"
        )


def check_rubric_for(store: Store, rubric: Rubric, dataset: Dataset, split: str) -> None:
    """Check a rubric against the dataset whose rows it will judge (before anything runs)."""
    rows = store.dataset_rows(dataset.name, split, limit=1)
    columns = rows[0].data.keys() if rows else ()
    check_variables(
        rubric.version.template,
        rubric.version.system,
        known_variables(dataset, columns),
        f"dataset {dataset.name!r}",
        f"rubric {rubric.ref}",
    )


def input_text(dataset: Dataset, row: dict[str, Any]) -> str:
    """The judged row's input: its one input column's value, or `column: value` lines."""
    columns = [c for c in dataset.input_columns if c in row] or [
        c for c in row if c != dataset.reference_column
    ]
    if len(columns) == 1:
        return str(row[columns[0]])
    return "\n".join(f"{c}: {row[c]}" for c in columns)


def rubric_values(
    row: dict[str, Any], input_value: str, output: str, reference: str | None
) -> dict[str, Any]:
    """The values a rubric renders with: the row's columns, then the judge's three (which
    win over a column of the same name)."""
    return {**row, "input": input_value, "output": output, "reference": reference or ""}


def create_rubric(
    store: Store,
    name: str,
    template: str,
    scale: ScoreScale,
    system: str = "",
    mode: str = "chat",
    message: str = "",
    dataset: str | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> tuple[PromptVersion, bool]:
    """Save a rubric as a new version of prompt `name` (no change: the latest version).

    Its variables are checked now: against the three judge variables, plus `dataset`'s
    columns when a dataset is named, so a typo fails here rather than at the first judge run.

    Returns:
        the version and whether it was created.
    """
    from tunelab.engine.prompts.text import validated_content
    from tunelab.store import PromptContent

    columns: list[str] = []
    where = "a judged row (name its dataset with --dataset to use its columns)"
    found = None
    if dataset is not None:
        found = store.get_dataset(dataset)
        rows = store.dataset_rows(found.name, found.splits[0].name, limit=1)
        columns = list(rows[0].data) if rows else []
        where = f"dataset {found.name!r}"
    known = known_variables(found, columns)
    check_variables(template, system, known, where, f"rubric {name}")
    content = PromptContent(
        template=template, system=system, mode=mode, settings={"max_new_tokens": max_new_tokens}
    )
    checked = validated_content(content)  # syntax, render limits, generation settings
    with_scale = PromptContent(
        template=checked.template,
        system=checked.system,
        mode=checked.mode,
        settings={**checked.settings, **scale.to_settings()},
    )
    saved = store.save_prompt_version(name, with_scale, message=message)
    return saved.version, saved.created

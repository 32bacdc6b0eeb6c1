"""Input perturbations: seeded, deterministic edits of a row's input text.

Each perturbation is a pure function of (text, parameter, random generator). A row's
generator is seeded from the perturbation, the suite's seed, the source row's index and the
column, so the same seed gives byte-identical perturbed rows whatever other rows are in the
run, and only input columns are ever touched (never the label or reference).
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.engine.errors import BadInputError

_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Letters next to each letter on a QWERTY keyboard (same row and the rows beside it)."""
    positions = {c: (r, i) for r, row in enumerate(_QWERTY_ROWS) for i, c in enumerate(row)}
    neighbours: dict[str, str] = {}
    for letter, (r, i) in positions.items():
        near = [
            other
            for other, (r2, i2) in positions.items()
            if other != letter and abs(r2 - r) <= 1 and abs(i2 - i) <= 1
        ]
        neighbours[letter] = "".join(sorted(near))
    return neighbours


NEIGHBOURS = _keyboard_neighbours()
TYPO_OPERATIONS = ("swap", "drop", "insert", "substitute")
CASE_MODES = ("lower", "upper", "random")
CASE_DETAILS = {
    "lower": "input lower-cased",
    "upper": "input upper-cased",
    "random": "each letter's case by a coin flip",
}
_WORD = re.compile(r"\S+")
_GAP = re.compile(r"(?<=\S)[ \t]+(?=\S)")
_HASHTAG = re.compile(r"#\w+")
_SPACES = re.compile(r"[ \t]{2,}")


def _matching_case(letter: str, like: str) -> str:
    return letter.upper() if like.isupper() else letter


def typos(text: str, rate: float, rng: random.Random) -> str:
    """Each letter, with probability `rate`, is swapped with the next letter, dropped, followed
    by a keyboard neighbour (insert) or replaced by one (substitute); other characters stay."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if not char.isalpha() or rng.random() >= rate:
            out.append(char)
            i += 1
            continue
        operation = rng.choice(TYPO_OPERATIONS)
        near = NEIGHBOURS.get(char.lower(), "")
        if operation == "swap" and i + 1 < len(text) and text[i + 1].isalpha():
            out += [text[i + 1], char]
            i += 2
            continue
        if operation == "insert" and near:
            out += [char, _matching_case(rng.choice(near), char)]
        elif operation == "substitute" and near:
            out.append(_matching_case(rng.choice(near), char))
        # A swap with no letter after it, or a letter with no keyboard neighbour: dropped.
        i += 1
    return "".join(out)


def recase(text: str, mode: str, rng: random.Random) -> str:
    """`lower` or `upper` the whole text, or `random`: each letter's case by a coin flip."""
    if mode == "lower":
        return text.lower()
    if mode == "upper":
        return text.upper()
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def widen_whitespace(text: str, probability: float, rng: random.Random) -> str:
    """Each gap between words, with the given probability, widens to 2-4 spaces; one space
    is added at each end."""

    def widen(match: re.Match[str]) -> str:
        return " " * rng.randint(2, 4) if rng.random() < probability else match.group()

    return f" {_GAP.sub(widen, text)} "


def strip_punctuation(text: str, _unused: Any, _rng: random.Random) -> str:
    """Every character of a Unicode punctuation category (P*) removed."""
    return "".join(c for c in text if not unicodedata.category(c).startswith("P"))


def strip_emoji(text: str, _unused: Any, _rng: random.Random) -> str:
    """Emoji (the `emoji` package's list) and whole #hashtags removed, spaces collapsed."""
    import emoji  # deferred: its emoji table is only needed here

    stripped = _HASHTAG.sub("", emoji.replace_emoji(text, replace=""))
    return _SPACES.sub(" ", stripped).strip()


def truncate(text: str, keep: float, _rng: random.Random) -> str:
    """The first `keep` fraction of the words (rounded up, at least one), the rest cut."""
    words = list(_WORD.finditer(text))
    if not words:
        return text
    kept = max(1, math.ceil(len(words) * keep - 1e-9))
    return text[: words[kept - 1].end()]


@dataclass(frozen=True)
class PerturbationKind:
    """One input perturbation: what it does, its parameter and how it is applied."""

    name: str
    apply: Callable[[str, Any, random.Random], str]
    default: float | str | None
    """The parameter when none is given (`name:VALUE` sets it); None: it takes none."""
    describe: Callable[[float | str | None], str]


INPUT_PERTURBATIONS: dict[str, PerturbationKind] = {
    kind.name: kind
    for kind in (
        PerturbationKind(
            "typos", typos, 0.05, lambda p: f"typos at {float(p or 0):.0%} of letters"
        ),
        PerturbationKind("case", recase, "lower", lambda p: CASE_DETAILS[str(p)]),
        PerturbationKind(
            "whitespace",
            widen_whitespace,
            0.3,
            lambda p: f"extra whitespace in {float(p or 0):.0%} of word gaps",
        ),
        PerturbationKind("punctuation", strip_punctuation, None, lambda p: "punctuation removed"),
        PerturbationKind("emoji", strip_emoji, None, lambda p: "emoji and #hashtags removed"),
        PerturbationKind(
            "truncate",
            truncate,
            0.5,
            lambda p: f"input cut to its first {float(p or 0):.0%} of words",
        ),
    )
}
"""Every input perturbation by name, in the order a default suite runs them."""


@dataclass(frozen=True)
class InputPerturbation:
    """A perturbation with its parameter fixed, ready to apply to rows."""

    name: str
    parameter: float | str | None

    @property
    def kind(self) -> PerturbationKind:
        return INPUT_PERTURBATIONS[self.name]

    def describe(self, seed: int) -> str:
        seeded = self.name in ("typos", "whitespace") or self.parameter == "random"
        text = self.kind.describe(self.parameter)
        return f"{text}, seed {seed}" if seeded else text

    def apply_text(self, text: str, rng: random.Random) -> str:
        return self.kind.apply(text, self.parameter, rng)

    def apply_row(
        self, row: dict[str, Any], columns: Sequence[str], seed: int, source_idx: int
    ) -> dict[str, Any]:
        """A copy of the row with each input column's text perturbed; everything else as is.

        Each column has its own generator, seeded by the perturbation, the seed, the source
        row and the column, so a row's result never depends on the other rows.
        """
        out = dict(row)
        for column in columns:
            value = row.get(column)
            if isinstance(value, str):
                rng = random.Random(f"{self.name}:{seed}:{source_idx}:{column}")
                out[column] = self.apply_text(value, rng)
        return out


def parse_input_perturbation(spec: str, rate: float) -> InputPerturbation:
    """`typos`, `typos:0.1`, `case:upper`, `truncate:0.3` ...; `rate` is the typo rate
    unless the spec names its own.

    Raises:
        BadInputError: an unknown name or a parameter out of range.
    """
    name, _, raw = spec.strip().partition(":")
    if name not in INPUT_PERTURBATIONS:
        raise BadInputError(
            f"unknown perturbation {name!r}; choose from {', '.join(INPUT_PERTURBATIONS)}"
        )
    kind = INPUT_PERTURBATIONS[name]
    if kind.default is None:
        if raw:
            raise BadInputError(f"perturbation {name!r} takes no parameter (got {raw!r})")
        return InputPerturbation(name, None)
    if isinstance(kind.default, str):
        mode = raw or kind.default
        if mode not in CASE_MODES:
            raise BadInputError(
                f"case mode {mode!r} is not one of {', '.join(CASE_MODES)} (e.g. case:upper)"
            )
        return InputPerturbation(name, mode)
    value = check_fraction(raw, f"{name}'s parameter") if raw else kind.default
    if name == "typos" and not raw:
        value = rate
    return InputPerturbation(name, value)


def check_fraction(raw: str | float, what: str) -> float:
    """A number in (0, 1], else bad input naming `what`."""
    try:
        value = float(raw)
    except ValueError:
        raise BadInputError(f"{what} must be a number in (0, 1], not {raw!r}") from None
    if not 0 < value <= 1:
        raise BadInputError(f"{what} must be in (0, 1], not {value:g}")
    return value

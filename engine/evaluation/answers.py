"""Final answers: pull the answer out of a worked solution or a model output, and compare two.

A rule is a name (`marker`, `answer-line`, `answer-is`, `boxed`, `last-number`), a preset
(`gsm8k`: the explicit answer forms GSM8K references and chain-of-thought outputs use, in
order; like lm-evaluation-harness's strict match, a bare last number is not an answer), or
`regex:PATTERN` with exactly one group. The dataset's rule reads its references; the prompt
version's rule (else the dataset's) reads the outputs. Numbers compare as numbers (commas,
currency, units and a trailing `.0` do not matter); other answers compare after the
normaliser lm-evaluation-harness's `exact_match` filters apply (case, punctuation, articles).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from tunelab.engine.errors import BadInputError

RULE_SETTING = "answer"
"""The key of a prompt version's `settings` that holds its answer rule."""

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
_NUMBER_RE = re.compile(rf"(?<![\w.])(?:{_NUMBER})(?![\d])")
_WHOLE_NUMBER_RE = re.compile(
    rf"^\s*[$€£¥]?\s*(?P<number>{_NUMBER})\.?\s*(?P<unit>%|[A-Za-z$€£¥][A-Za-z .$€£¥/]*)?\s*\.?\s*$"
)
_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")
_GSM8K_ANNOTATION = re.compile(r"<<[^<>]*>>")
"""GSM8K's calculator annotations (`<<48/2=24>>`), noise in a rationale meant for reading."""

Strategy = Callable[[str], str | None]


def _marker(text: str) -> str | None:
    found = list(re.finditer(r"####\s*(.+)", text))
    return found[-1].group(1).strip() if found else None


def _answer_line(text: str) -> str | None:
    # "Answer:" at the start of a line first: mid-sentence ("the final answer: ...") is weaker.
    found = list(re.finditer(r"^\s*\**answer\**\s*:\s*(.*)$", text, re.I | re.M))
    found = found or list(re.finditer(r"\banswer\s*:\s*(.*)$", text, re.I | re.M))
    for match in reversed(found):
        if match.group(1).strip():
            return match.group(1).strip()
    return None


def _answer_is(text: str) -> str | None:
    found = list(re.finditer(r"\banswer\s+is\s*:?\s*([^\n]+)", text, re.I))
    return found[-1].group(1).strip().rstrip(".") if found else None


def _boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return text[begin:i].strip()
            depth -= 1
    return None


def _last_number(text: str) -> str | None:
    found = _NUMBER_RE.findall(text)
    return found[-1] if found else None


STRATEGIES: dict[str, Strategy] = {
    "marker": _marker,
    "answer-line": _answer_line,
    "answer-is": _answer_is,
    "boxed": _boxed,
    "last-number": _last_number,
}
PRESETS: dict[str, tuple[str, ...]] = {
    # No last-number fallback: an output cut off mid-reasoning has no answer, and counting
    # its last intermediate number would hide the failure in the extraction-failure rate.
    "gsm8k": ("marker", "answer-line", "answer-is", "boxed"),
}
"""Presets try their strategies in order; a numeric preset keeps only the number found."""
NUMERIC_PRESETS = frozenset({"gsm8k"})
RULE_NAMES = (*STRATEGIES, *PRESETS, "regex:PATTERN")


@dataclass(frozen=True)
class AnswerRule:
    """A parsed answer rule; build one with `parse_rule`.

    Args:
        spec: the rule as the user wrote it (stored as is).
        strategies: the extraction strategies, tried in order.
        numeric: keep only the number in what a strategy found.
    """

    spec: str
    strategies: tuple[Strategy, ...]
    numeric: bool = False

    def extract(self, text: str) -> str | None:
        """The final answer in `text`, or None when the rule finds none (a failed extraction)."""
        for strategy in self.strategies:
            found = strategy(text)
            if found is None or not found.strip():
                continue
            if not self.numeric:
                return found.strip()
            whole = _WHOLE_NUMBER_RE.match(found)
            number = whole.group("number") if whole else _last_number(found)
            if number is not None:
                return number
        return None

    def rationale(self, text: str) -> str:
        """The worked solution in a reference with its `####` final-answer line (and, for
        GSM8K, the calculator annotations) removed: what a chain-of-thought target reasons with."""
        body = text
        if "marker" in PRESETS.get(self.spec, (self.spec,)) and "####" in body:
            body = body[: body.rfind("####")]
        if self.spec == "gsm8k":
            body = _GSM8K_ANNOTATION.sub("", body)
        return body.strip()


def _regex_strategy(pattern: str, spec: str) -> Strategy:
    try:
        compiled = re.compile(pattern, re.M)
    except re.error as exc:
        raise BadInputError(f"bad answer rule {spec!r}: {exc}") from None
    if compiled.groups != 1:
        raise BadInputError(
            f"answer rule {spec!r} needs exactly one (group) around the answer, "
            f"it has {compiled.groups}"
        )

    def extract(text: str) -> str | None:
        found = list(compiled.finditer(text))
        return found[-1].group(1) if found and found[-1].group(1) is not None else None

    return extract


def parse_rule(spec: str) -> AnswerRule:
    """Parse an answer rule; an unknown name or a regex without one group is bad input."""
    spec = spec.strip()
    if spec.startswith("regex:"):
        return AnswerRule(spec, (_regex_strategy(spec[len("regex:") :], spec),))
    if spec in PRESETS:
        names = PRESETS[spec]
        return AnswerRule(spec, tuple(STRATEGIES[n] for n in names), spec in NUMERIC_PRESETS)
    if spec in STRATEGIES:
        return AnswerRule(spec, (STRATEGIES[spec],), spec == "last-number")
    raise BadInputError(f"unknown answer rule {spec!r}; choose from {', '.join(RULE_NAMES)}")


def to_number(text: str) -> Fraction | None:
    """The value of an answer that is a number (with optional commas, currency sign, unit,
    trailing `.0` or full stop), exactly as a fraction; None when it is not a number."""
    match = _WHOLE_NUMBER_RE.match(text)
    if match is None:
        return None
    try:
        return Fraction(Decimal(match.group("number").replace(",", "")))
    except (InvalidOperation, ValueError):
        return None


def normalize_answer(text: str) -> str:
    """Case-fold, drop punctuation and articles, collapse whitespace (lm-eval's filters)."""
    lowered = text.casefold()
    no_punct = "".join(" " if ch in string.punctuation else ch for ch in lowered)
    return " ".join(_ARTICLES_RE.sub(" ", no_punct).split())


def answers_match(prediction: str, reference: str, tolerance: float = 0.0) -> bool:
    """Numbers within `tolerance` of each other, or the same normalised text."""
    predicted, expected = to_number(prediction), to_number(reference)
    if predicted is not None and expected is not None:
        return abs(predicted - expected) <= Fraction(Decimal(str(tolerance)))
    return normalize_answer(prediction) == normalize_answer(reference)


def output_rule_spec(prompt_settings: dict[str, object], dataset_rule: str | None) -> str | None:
    """The rule that reads a run's outputs: the prompt version's, else the dataset's."""
    own = prompt_settings.get(RULE_SETTING)
    return str(own) if own else dataset_rule

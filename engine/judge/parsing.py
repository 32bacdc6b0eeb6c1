"""Reading a judge model's reply: the format it is asked for, and the score or pick in it.

A reply that holds no usable score (no number, a fraction, a number off the scale, two
different scores) is unparseable: it is stored with the reason, counted, and never scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tunelab.engine.judge.rubric import ScoreScale

SCORE_LABEL = "Score:"
"""Where the judge's reply starts: local models are primed with it (see `prompts.py`)."""
PICK_LABEL = "Better: Response"
"""Where a pairwise reply starts; primed this far, a small model's next token is the pick."""
REASON_LABEL = "Reason:"
RATIONALE_CHARS = 500
"""Rationales are kept to this many characters; the whole reply is stored beside them."""

_NUMBER = r"[-+]?\d+(?:[.,]\d+)?"
_SCORE_RE = re.compile(
    rf"\bscore\b\s*(?:is|of)?\s*[:=]?\s*\**\s*({_NUMBER})(?:\s*(?:/|out\s+of)\s*(\d+))?",
    re.IGNORECASE,
)
_LEADING_NUMBER_RE = re.compile(rf"^\s*\**\s*({_NUMBER})(?:\s*(?:/|out\s+of)\s*(\d+))?\b")
_REASON_RE = re.compile(r"\b(?:reason|rationale|explanation)\b\s*:\s*", re.IGNORECASE)
_ONE_OR_TWO = r"([12])(?![.,]?\d)"
"""1 or 2 standing alone: not the start of 1.5, 12 or 2,000."""
_PICK_RE = re.compile(
    r"\b(?:better|winner|choice)\b\s*(?:is)?\s*[:=]?\s*\**\s*(?:response|output)?\s*#?\s*"
    + _ONE_OR_TWO,
    re.IGNORECASE,
)
_LEADING_PICK_RE = re.compile(
    r"^\s*\**\s*(?:response|output)?\s*#?\s*" + _ONE_OR_TWO, re.IGNORECASE
)


@dataclass(frozen=True)
class ParsedScore:
    """A reply read as a score: `score` None means unparseable, and `problem` says why."""

    score: int | None
    rationale: str
    problem: str | None = None


def format_instruction(scale: ScoreScale) -> str:
    """What the judge is told to answer; the parser reads exactly this."""
    return (
        "Answer in exactly this format:\n"
        f"{SCORE_LABEL} <a whole number from {scale.low} to {scale.high}>\n"
        f"{REASON_LABEL} <one short sentence>"
    )


def pick_instruction() -> str:
    """What a pairwise judge is told to answer."""
    return (
        "Answer in exactly this format:\n"
        f"{PICK_LABEL} <1 or 2>\n"
        f"{REASON_LABEL} <one short sentence>"
    )


def _rationale(text: str, after: int) -> str:
    reason = _REASON_RE.search(text, after)
    rest = text[reason.end() :] if reason is not None else text[after:]
    flat = " ".join(rest.split()).lstrip(" .,:;-")
    return flat[:RATIONALE_CHARS]


def _whole(number: str) -> int | None:
    value = float(number.replace(",", "."))
    return int(value) if value.is_integer() else None


def parse_score(text: str, scale: ScoreScale) -> ParsedScore:
    """Read the score (and reason) out of a judge's reply, refusing anything doubtful.

    The score is the number after "Score:" (or a number the reply starts with), optionally
    written `N/HIGH` or `N out of HIGH` with the scale's own top.
    """
    matches = list(_SCORE_RE.finditer(text))
    if not matches:
        leading = _LEADING_NUMBER_RE.match(text)
        if leading is None:
            return ParsedScore(None, _rationale(text, 0), "no score in the reply")
        matches = [leading]
    values: list[int] = []
    for match in matches:
        out_of = match.group(2)
        if out_of is not None and int(out_of) != scale.high:
            return ParsedScore(
                None, _rationale(text, match.end()), f"score out of {out_of}, not {scale.high}"
            )
        whole = _whole(match.group(1))
        if whole is None:
            return ParsedScore(
                None, _rationale(text, match.end()), f"score {match.group(1)} is not whole"
            )
        values.append(whole)
    if len(set(values)) > 1:
        shown = ", ".join(str(v) for v in dict.fromkeys(values))
        return ParsedScore(None, _rationale(text, matches[0].end()), f"several scores ({shown})")
    score = values[0]
    rationale = _rationale(text, matches[0].end())
    if not scale.contains(score):
        return ParsedScore(None, rationale, f"score {score} is off the {scale.label} scale")
    return ParsedScore(score, rationale)


def parse_pick(text: str) -> int | None:
    """Which response a pairwise reply picks: 1, 2, or None when it says neither clearly."""
    picks = {int(m.group(1)) for m in _PICK_RE.finditer(text)}
    if not picks:
        leading = _LEADING_PICK_RE.match(text)
        picks = {int(leading.group(1))} if leading is not None else set()
    return picks.pop() if len(picks) == 1 else None

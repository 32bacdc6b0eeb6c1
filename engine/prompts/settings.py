"""Generation settings: the knobs a prompt version stores in its `settings` JSON.

One typed dataclass, validated on construction, so a bad value fails when the user types it
rather than halfway through an evaluation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tunelab.engine.errors import BadInputError

MAX_NEW_TOKENS_LIMIT = 32_768
LOGIT_BIAS_LIMIT = 100.0
"""Weights beyond this swamp every other logit; the same bound for every way bias is given."""
_BARE_UNSAFE = frozenset(",=\"'")
VERSION_SECTIONS = ("fewshot", "answer", "calibration", "retrieval", "judge")
"""Keys of a version's settings that are not generation settings: drawn few-shot examples,
the answer rule, label-score calibration, retrieved demonstrations and a rubric's scale."""


@dataclass
class GenerationSettings:
    """How the model turns a rendered prompt into text.

    Args:
        temperature: 0 means greedy decoding; above 0 samples from the softened distribution.
        top_p: nucleus sampling mass (0 < top_p <= 1); 1 disables it.
        top_k: sample only from the k most likely tokens; 0 disables it.
        max_new_tokens: the most tokens to generate per row.
        stop: strings that end the output; the output is cut before the first one.
        repetition_penalty: >1 discourages repeating tokens; 1 disables it.
        seed: random seed for sampling, so sampled runs can be repeated.
        logit_bias: string → weight added to the logits of the string's tokens.
    """

    temperature: float = field(
        default=0.0,
        metadata={"help": "0 = greedy (deterministic); >0 samples, higher = more random"},
    )
    top_p: float = field(
        default=1.0, metadata={"help": "nucleus sampling mass in (0, 1]; 1 disables it"}
    )
    top_k: int = field(
        default=0, metadata={"help": "sample from the k most likely tokens; 0 disables it"}
    )
    max_new_tokens: int = field(default=64, metadata={"help": "the most tokens generated per row"})
    stop: list[str] = field(
        default_factory=list,
        metadata={"help": "stop strings; output is cut before the first one"},
    )
    repetition_penalty: float = field(
        default=1.0, metadata={"help": ">1 discourages repeated tokens; 1 disables it"}
    )
    seed: int = field(default=0, metadata={"help": "random seed for sampling"})
    logit_bias: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "string → weight added to the logits of its tokens (-100..100)"},
    )

    def __post_init__(self) -> None:
        self.temperature = _number("temperature", self.temperature, "a number >= 0")
        if self.temperature < 0:
            raise BadInputError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        self.top_p = _number("top_p", self.top_p, "a number in (0, 1]")
        if not 0 < self.top_p <= 1:
            raise BadInputError(f"top_p must be in (0, 1] (1 disables it), got {self.top_p}")
        self.top_k = _integer("top_k", self.top_k)
        if self.top_k < 0:
            raise BadInputError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        self.max_new_tokens = _integer("max_new_tokens", self.max_new_tokens)
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise BadInputError(
                f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}, "
                f"got {self.max_new_tokens}"
            )
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not isinstance(self.stop, list | tuple) or not all(
            isinstance(s, str) for s in self.stop
        ):
            raise BadInputError(f"stop must be a list of strings, got {self.stop!r}")
        if any(s == "" for s in self.stop):
            raise BadInputError("stop strings must not be empty; remove the empty string")
        self.stop = list(self.stop)
        self.repetition_penalty = _number(
            "repetition_penalty", self.repetition_penalty, "a number > 0"
        )
        if self.repetition_penalty <= 0:
            raise BadInputError(
                f"repetition_penalty must be > 0 (1 disables it), got {self.repetition_penalty}"
            )
        self.seed = _integer("seed", self.seed)
        if self.seed < 0:
            raise BadInputError(f"seed must be >= 0, got {self.seed}")
        if not isinstance(self.logit_bias, dict):
            raise BadInputError(
                f"logit_bias must be a mapping of string to weight, got {self.logit_bias!r}"
            )
        bias: dict[str, float] = {}
        for key, weight in self.logit_bias.items():
            if not isinstance(key, str) or key == "":
                raise BadInputError(f"logit_bias keys must be non-empty strings, got {key!r}")
            value = _number(f"logit_bias[{key!r}]", weight, "a number between -100 and 100")
            if not -LOGIT_BIAS_LIMIT <= value <= LOGIT_BIAS_LIMIT:
                raise BadInputError(
                    f"logit_bias[{key!r}] must be between -100 and 100, got {value}"
                )
            bias[key] = value
        self.logit_bias = bias

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic (temperature 0)."""
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, for a prompt version's `settings`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationSettings:
        """Build settings from a dict, rejecting unknown keys so typos never pass silently."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise BadInputError(f"generation settings must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInputError(
                f"unknown generation setting(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(known))}"
            )
        return cls(**data)

    @classmethod
    def from_version_settings(cls, settings: dict[str, Any] | None) -> GenerationSettings:
        """Settings from a prompt version's `settings` dict, skipping non-generation keys.

        A version's settings also carry other sections (e.g. "fewshot"); only the keys that are
        generation fields are read here, and a misspelt generation key still fails loudly.
        """
        data = {k: v for k, v in (settings or {}).items() if k not in VERSION_SECTIONS}
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> GenerationSettings:
        """A copy with some fields changed, validated again."""
        return GenerationSettings.from_dict({**self.to_dict(), **changes})

    @staticmethod
    def help() -> dict[str, str]:
        """Field name → help text, for forms and `--help` output."""
        return {f.name: str(f.metadata.get("help", "")) for f in fields(GenerationSettings)}


def _number(name: str, value: Any, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInputError(f"{name} must be {allowed}, got {value!r}")
    out = float(value)
    if math.isnan(out) or math.isinf(out):
        raise BadInputError(f"{name} must be {allowed}, got {value!r}")
    return out


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise BadInputError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise BadInputError(f"{name} must be a whole number, got {value!r}")
    return value


def parse_logit_bias(spec: str | Iterable[str]) -> dict[str, float]:
    """Logit bias from text: `yes=2, no=-2`, or from repeated `--logit-bias` items.

    Entries are `STRING=WEIGHT` separated by commas. A bare string is trimmed; quote it
    (`" yes"=2`, JSON escapes allowed, or `' yes'=2`) to keep spaces or use `,`, `=` or quotes.
    The Playground and `tunelab prompt new` both parse with this, so they accept the same text;
    `format_logit_bias` writes it back.
    """
    bias: dict[str, float] = {}
    for text in [spec] if isinstance(spec, str) else spec:
        pos = 0
        while pos < len(text):
            pos = _skip_spaces(text, pos)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos >= len(text):
                break
            key, weight, pos = _bias_entry(text, pos)
            bias[key] = weight
    return bias


def format_logit_bias(bias: dict[str, float]) -> str:
    """The text `parse_logit_bias` reads back as the same mapping."""
    return ", ".join(f"{_bias_key(key)}={_weight(weight)}" for key, weight in bias.items())


def _weight(weight: float) -> str:
    short = f"{weight:g}"
    return short if float(short) == weight else repr(weight)


def _bias_key(key: str) -> str:
    bare = key and key == key.strip() and not (_BARE_UNSAFE & set(key))
    return key if bare else json.dumps(key, ensure_ascii=False)


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _bias_entry(text: str, start: int) -> tuple[str, float, int]:
    """One `STRING=WEIGHT` entry from `start`; returns it and where the next one starts."""
    end = text.find(",", start)
    shown = text[start : end if end >= 0 else len(text)].strip()
    usage = f"logit bias {shown!r}: write STRING=WEIGHT, e.g. yes=2 (quote a string with spaces)"
    pos = start
    if text[pos] == '"':
        try:
            decoded, pos = json.JSONDecoder().raw_decode(text, pos)
        except json.JSONDecodeError:
            raise BadInputError(f"logit bias {shown!r}: the quoted string is not closed") from None
        key = str(decoded)
    elif text[pos] == "'":
        close = text.find("'", pos + 1)
        if close < 0:
            raise BadInputError(f"logit bias {shown!r}: the quoted string is not closed")
        key, pos = text[pos + 1 : close], close + 1
    else:
        stop = pos
        while stop < len(text) and text[stop] not in ",=":
            stop += 1
        key, pos = text[pos:stop].strip(), stop
    pos = _skip_spaces(text, pos)
    if not key or pos >= len(text) or text[pos] != "=":
        raise BadInputError(usage)
    comma = text.find(",", pos)
    weight_end = comma if comma >= 0 else len(text)
    shown = text[start:weight_end].strip()
    weight_text = text[pos + 1 : weight_end].strip()
    try:
        weight = float(weight_text)
    except ValueError:
        raise BadInputError(
            f"logit bias {shown!r}: the weight {weight_text!r} is not a number"
        ) from None
    if not math.isfinite(weight) or not -LOGIT_BIAS_LIMIT <= weight <= LOGIT_BIAS_LIMIT:
        raise BadInputError(
            f"logit bias {shown!r}: weights go from -{LOGIT_BIAS_LIMIT:g} to {LOGIT_BIAS_LIMIT:g}"
        )
    return key, weight, weight_end

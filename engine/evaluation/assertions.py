"""Checking a test case's assertions against an output: pass/fail per assertion, and why.

The assertions were parsed and checked when the case file was added (`engine.data.cases`);
here each one is applied to an output. Text assertions look at the output as generated
(stripped of surrounding whitespace); `numeric` reads the final answer with the prompt's
answer rule (the last number when it has none) and compares as numbers within the
tolerance; `is-json` parses the output (code fences allowed) and validates it against the
schema with `jsonschema`; `judge` asks a rubric through `engine.judge.judge_one` and passes
when the score reaches the threshold. A `not-` assertion passes exactly when its base fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.engine.data.cases import Assertion
from tunelab.engine.evaluation.answers import AnswerRule, answers_match, parse_rule

Judge = Callable[[Assertion, str], tuple[float | None, str]]
"""(assertion, output) → (the judge's score or None when unparseable, its rationale)."""


@dataclass(frozen=True)
class AssertionResult:
    assertion: Assertion
    passed: bool
    reason: str
    """Why it failed ("regex /\\d+/ did not match"), or what it found when it passed."""
    score: float | None = None
    """judge: the rubric score."""


@dataclass(frozen=True)
class CaseResult:
    results: tuple[AssertionResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def share_passed(self) -> float:
        return sum(r.passed for r in self.results) / len(self.results) if self.results else 0.0

    def scores(self) -> dict[str, float]:
        """What a run output stores: `pass`, `assertion_pass`, one 0/1 per assertion
        (`assert_1`, ...) and each judge assertion's score (`assert_2_score`)."""
        out = {"pass": float(self.passed), "assertion_pass": self.share_passed}
        for i, r in enumerate(self.results, start=1):
            out[f"assert_{i}"] = float(r.passed)
            if r.score is not None:
                out[f"assert_{i}_score"] = float(r.score)
        return out


def _strip_fences(text: str) -> str:
    fenced = re.match(r"^```[\w-]*\s*\n(.*?)\n?```\s*$", text.strip(), re.DOTALL)
    return fenced.group(1) if fenced else text.strip()


def _base_check(
    assertion: Assertion, output: str, rule: AnswerRule | None, judge: Judge | None
) -> tuple[bool, str, float | None]:
    """(passed, reason, score) of the assertion without its negation."""
    text = output.strip()
    kind, value = assertion.type, assertion.value
    if kind == "equals":
        ok = text == value
        return ok, "equal" if ok else f"output is {_short(text)}, not {_short(value)}", None
    if kind == "contains":
        ok = value in text
        return ok, f"{'contains' if ok else 'does not contain'} {_short(value)}", None
    if kind == "icontains":
        ok = value.casefold() in text.casefold()
        return ok, f"{'contains' if ok else 'does not contain'} {_short(value)} (any case)", None
    if kind == "regex":
        ok = re.search(value, text) is not None
        return ok, f"regex /{value}/ {'matched' if ok else 'did not match'}", None
    if kind == "is-json":
        return (*_json_check(text, value), None)
    if kind == "numeric":
        found = (rule or parse_rule("last-number")).extract(output)
        if found is None:
            return False, "no number found in the output", None
        ok = answers_match(found, str(value), assertion.tolerance)
        within = f"within {assertion.tolerance:g} of" if assertion.tolerance else "equal to"
        return ok, f"{found} is {'' if ok else 'not '}{within} {value:g}", None
    if judge is None:
        return False, "no judge available", None
    score, rationale = judge(assertion, output)
    if score is None:
        return False, f"the judge's reply had no score ({_short(rationale)})", None
    assert assertion.threshold is not None  # parse_assertion requires one for judge
    ok = score >= assertion.threshold
    return ok, f"judge score {score:g} {'>=' if ok else '<'} {assertion.threshold:g}", score


def _json_check(text: str, schema: Any) -> tuple[bool, str]:
    try:
        parsed = json.loads(_strip_fences(text))
    except json.JSONDecodeError as exc:
        return False, f"not JSON ({exc.msg} at column {exc.colno})"
    if schema is None:
        return True, "valid JSON"
    import jsonschema  # deferred: only schema assertions need it

    error = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(parsed)
    )
    if error is None:
        return True, "valid JSON matching the schema"
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return False, f"JSON does not match the schema at {where}: {error.message}"


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def check_assertion(
    assertion: Assertion,
    output: str,
    rule: AnswerRule | None = None,
    judge: Judge | None = None,
) -> AssertionResult:
    """Apply one assertion to an output."""
    ok, reason, score = _base_check(assertion, output, rule, judge)
    if assertion.negate:
        return AssertionResult(
            assertion, not ok, f"not expected, but {reason}" if ok else reason, score
        )
    return AssertionResult(assertion, ok, reason, score)


def check_case(
    assertions: Sequence[Assertion],
    output: str,
    rule: AnswerRule | None = None,
    judge: Judge | None = None,
) -> CaseResult:
    """Every assertion of a case against its output."""
    return CaseResult(tuple(check_assertion(a, output, rule, judge) for a in assertions))

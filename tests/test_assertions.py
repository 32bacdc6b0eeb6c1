"""Per-case assertions: each type and its not- variant, JSON Schema, test-case files and their
one-line refusals, a real evaluation of a case file with the built-in model, the flips between
two case runs in compare, and a judge assertion."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tunelab.engine.compare.runs import compare_runs
from tunelab.engine.data.cases import Assertion, add_cases_dataset, case_rows, parse_assertion
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.assertions import check_assertion, check_case
from tunelab.engine.evaluation.case_report import case_verdicts
from tunelab.engine.evaluation.request import EvalRequest
from tunelab.engine.evaluation.run import evaluate
from tunelab.store import NewModel, NewRunOutput, PromptContent, Store, Workspace

CASES_YAML = """\
- description: anything at all
  vars: {topic: cats}
  assert:
    - type: regex
      value: "\\\\S"
    - type: not-contains
      value: "zq-never-said-zq"
- description: an impossible exact answer
  vars: {topic: dogs}
  assert:
    - type: equals
      value: "zq-never-said-zq"
- description: JSON it will not write
  vars: {topic: birds}
  assert:
    - type: is-json
      value: {type: object, required: [name]}
"""


def one(spec: dict[str, Any]) -> Assertion:
    return parse_assertion(spec, "test")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30), st.text(min_size=1, max_size=5))
def test_contains_and_its_negation_are_opposites(text: str, needle: str) -> None:
    plain = check_assertion(one({"type": "contains", "value": needle}), text)
    negated = check_assertion(one({"type": "not-contains", "value": needle}), text)
    assert plain.passed == (needle in text.strip())
    assert negated.passed != plain.passed
    anycase = check_assertion(one({"type": "icontains", "value": needle.upper()}), text)
    assert anycase.passed == (needle.upper().casefold() in text.strip().casefold())


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[a-z]{1,4}\d{0,3}", fullmatch=True), st.text(max_size=20))
def test_regex_matches_as_re_search_does(pattern_text: str, text: str) -> None:
    pattern = re.escape(pattern_text)
    result = check_assertion(one({"type": "regex", "value": pattern}), text)
    assert result.passed == (re.search(pattern, text.strip()) is not None)
    assert ("did not match" in result.reason) != result.passed


@pytest.mark.parametrize(
    ("spec", "output", "passed", "reason"),
    [
        ({"type": "equals", "value": "Paris"}, " Paris\n", True, "equal"),
        ({"type": "not-equals", "value": "Paris"}, "Paris", False, "not expected"),
        ({"type": "numeric", "value": 18, "tolerance": 0.5}, "so 18.4 eggs", True, "within"),
        ({"type": "numeric", "value": 18}, "The answer is 1,800.", False, "not equal"),
        ({"type": "numeric", "value": 3}, "no digits here", False, "no number"),
        ({"type": "is-json"}, '```json\n{"a": 1}\n```', True, "valid JSON"),
        ({"type": "is-json"}, "{'a': 1}", False, "not JSON"),
        (
            {"type": "is-json", "value": {"type": "object", "required": ["name"]}},
            '{"age": 3}',
            False,
            "'name' is a required property",
        ),
        ({"type": "not-is-json"}, "plain words", True, "not JSON"),
    ],
)
def test_each_assertion_type(spec: dict[str, Any], output: str, passed: bool, reason: str) -> None:
    result = check_assertion(one(spec), output)
    assert result.passed is passed
    assert reason in result.reason


def test_a_judge_assertion_passes_at_its_threshold() -> None:
    judge = one({"type": "judge", "rubric": "r@1", "threshold": 4})
    scores = iter([(4.0, "ok"), (3.0, "meh"), (None, "no score in it")])
    results = [check_assertion(judge, "x", judge=lambda a, out: next(scores)) for _ in range(3)]
    assert [r.passed for r in results] == [True, False, False]
    assert results[0].score == 4.0 and "4 >= 4" in results[0].reason
    assert "no score" in results[2].reason


def test_case_scores_name_each_assertion() -> None:
    case = check_case(
        [one({"type": "contains", "value": "a"}), one({"type": "contains", "value": "z"})], "abc"
    )
    assert case.scores() == {"pass": 0.0, "assertion_pass": 0.5, "assert_1": 1.0, "assert_2": 0.0}


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        ([{"vars": {}, "assert": [{"type": "regex", "value": "(("}]}], "does not compile"),
        ([{"vars": {}, "assert": [{"type": "similar", "value": "x"}]}], "unknown assertion type"),
        ([{"vars": {}, "assert": []}], "non-empty list"),
        ([{"vars": {"a": 1}, "assert": [{"type": "contains", "value": "x"}]},
          {"vars": {"b": 1}, "assert": [{"type": "contains", "value": "x"}]}], "same ones"),
        ([{"vars": {}, "assert": [{"type": "is-json", "value": {"type": 7}}]}], "JSON Schema"),
        ([{"vars": {}, "assert": [{"type": "numeric", "value": "many"}]}], "a number"),
        ([{"vars": {}, "assert": [{"type": "judge", "rubric": "nope@1", "threshold": 3}]}],
         "not in this workspace"),
    ],
)  # fmt: skip
def test_bad_cases_are_refused_with_what_to_fix(
    store: Store, cases: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(BadInputError, match=message):
        case_rows(cases, store)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("name: not a list\n", ".yaml", "non-empty list of cases"),
        ("- vars: {a: 1}\n  assert: [{type: regex, value: '[oops'}]\n", ".yaml", "compile"),
        ("- [unclosed\n", ".yaml", "not valid YAML"),
        ('{"vars": {}, "assert": [{"type": "nope"}]}\n', ".jsonl", "unknown assertion type"),
    ],
)
def test_cli_refuses_a_bad_case_file_in_one_line(
    workspace: Workspace, tmp_path: Path, text: str, suffix: str, message: str
) -> None:
    path = tmp_path / f"cases{suffix}"
    path.write_text(text)
    done = run_cli("dataset", "add", str(path), "--name", "cases", workspace=workspace)
    assert done.returncode == 2
    assert message in _one_line(done.stderr)
    assert "cases" not in run_cli("dataset", "list", workspace=workspace).stdout


def test_case_variables_must_match_the_prompt(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(CASES_YAML)
    add_cases_dataset(store, path, "animals")
    store.save_prompt_version("wrong", PromptContent(template="About {{ subject }}:"))
    store.add_model(NewModel("builtin", "base", "builtin", "builtin"), exist_ok=True)
    with pytest.raises(BadInputError, match="subject"):
        evaluate(store, EvalRequest(prompt="wrong", model="builtin", dataset="animals"))
    assert store.list_runs() == []


@pytest.mark.model
def test_a_case_file_evaluated_with_the_builtin_model(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "animals.yaml"
    path.write_text(CASES_YAML)
    added = run_cli("dataset", "add", str(path), "--name", "animals", workspace=workspace)
    assert added.returncode == 0, added.stderr
    assert "3 cases" in added.stdout
    template = tmp_path / "fact.j2"
    template.write_text("One short fact about {{ topic }}:")
    made = run_cli(
        "prompt", "new", "fact", "--template-file", str(template), "--mode", "plain",
        "--max-tokens", "12", workspace=workspace,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    done = run_cli(
        "eval", "--prompt", "fact", "--model", "builtin", "--dataset", "animals",
        "--no-latency-probe", "--json", workspace=workspace,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    run_id = run["run_id"]
    shown = run_cli("run", "show", str(run_id), "--json", workspace=workspace)
    payload = json.loads(shown.stdout)
    cases = payload["cases"]
    assert [c["passed"] for c in cases] == [True, False, False]
    assert payload["run"]["metrics"]["pass"] == pytest.approx(1 / 3)
    assert payload["run"]["metrics"]["assertion_pass"] == pytest.approx((1 + 0 + 0) / 3)
    assert "not" in cases[1]["assertions"][0]["reason"]
    text = run_cli("run", "show", str(run_id), workspace=workspace, env={"COLUMNS": "200"}).stdout
    assert "cases: 1 of 3 passed" in text, text
    assert "an impossible exact answer" in text and "is-json (with schema)" in text


def test_compare_shows_the_cases_that_flipped(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(CASES_YAML)
    dataset = add_cases_dataset(store, path, "animals")
    model = store.add_model(NewModel("m", "base", "builtin", "/m"))
    version = store.save_prompt_version("fact", PromptContent(template="{{ topic }}")).version
    rows = store.dataset_rows("animals", "test")
    run_ids = []
    for outputs in (["a", "zq-never-said-zq", "{}"], ["", "nope", '{"name": "x"}']):
        run = store.create_run(
            version.id, model.id, dataset.id, "test", 3, {}, metric_names=["pass"]
        )
        scored = []
        for row, text in zip(rows, outputs, strict=True):
            from tunelab.engine.data.cases import assertions_of

            case = check_case(assertions_of(row.data), text)
            scored.append(
                NewRunOutput(row_idx=row.idx, rendered_prompt="p", output=text, prediction=text,
                             scores=case.scores(), latency_ms=1.0, tokens_out=1)
            )  # fmt: skip
        store.add_run_outputs(run.id, scored)
        store.finish_run(run.id, "succeeded", {"pass": sum(o.scores["pass"] for o in scored) / 3})
        run_ids.append(run.id)
    comparison = compare_runs(store, run_ids)
    counts = comparison.pairs[0].counts
    assert counts is not None and counts.score == "pass"
    assert counts.fixed_rows == [2] and counts.broken_rows == [0, 1]
    verdicts = case_verdicts(store, run_ids[1])
    assert verdicts is not None and [v.passed for v in verdicts] == [False, False, True]


@pytest.mark.model
def test_a_judge_assertion_asks_the_rubric_with_the_builtin_model(
    store: Store, tmp_path: Path
) -> None:
    from tunelab.engine.judge.rubric import ScoreScale, create_rubric

    create_rubric(
        store, "kind", "Reply: {{ output }}\nIs the reply polite? Score 1 to 5.", ScoreScale(1, 5)
    )
    path = tmp_path / "polite.yaml"
    path.write_text(
        "- vars: {name: Ada}\n  assert:\n    - {type: judge, rubric: kind@1, threshold: 1}\n"
        "    - {type: not-judge, rubric: kind@1, threshold: 6}\n"
    )
    add_cases_dataset(store, path, "polite")
    store.save_prompt_version(
        "greet", PromptContent(template="Say hello to {{ name }}.", settings={"max_new_tokens": 8})
    )
    store.add_model(NewModel("builtin", "base", "builtin", "builtin"), exist_ok=True)
    result = evaluate(store, EvalRequest(prompt="greet", model="builtin", dataset="polite",
                                         latency_probe=0))  # fmt: skip
    [out] = store.run_outputs(result.run.id)
    if "assert_1_score" in out.scores:  # a parsed score on the 1-5 scale passes threshold 1
        assert out.scores["assert_1"] == 1.0 and 1 <= out.scores["assert_1_score"] <= 5
        assert out.scores["assert_2"] == 1.0  # nothing reaches 6, so not-judge passes
    else:  # an unparseable reply fails the judge assertion and says so
        assert out.scores["assert_1"] == 0.0
    again = evaluate(store, EvalRequest(prompt="greet", model="builtin", dataset="polite",
                                        latency_probe=0))  # fmt: skip
    assert store.run_outputs(again.run.id)[0].scores == out.scores

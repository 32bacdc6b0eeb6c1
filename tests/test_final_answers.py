"""Final-answer tasks (#15): answer rules, numeric and text normalisers, per-row extracted
answers, the extraction-failure rate, and chain-of-thought training targets."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import run_cli, shared_dataset
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.answers import (
    answers_match,
    normalize_answer,
    parse_rule,
    to_number,
)
from tunelab.engine.evaluation.metrics import Example, aggregate_metrics, get_metric, score_example
from tunelab.store import NewDataset, NewSplit, PromptContent, Store, Workspace

COT_TEMPLATE = "Question: {{ question }}"


def _gsm8k_rows(n: int) -> list[dict[str, Any]]:
    path = shared_dataset("gsm8k-test.jsonl")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(n)]


# ------------------------------------------------------------------------ numeric normaliser


def _with_commas(digits: str) -> str:
    head = len(digits) % 3 or 3
    groups = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return ",".join(groups)


@st.composite
def formatted_numbers(draw: st.DrawFn) -> tuple[Fraction, str]:
    """A number and one way a person or a model might write it."""
    whole = draw(st.integers(min_value=0, max_value=10**9))
    cents = draw(st.none() | st.integers(min_value=0, max_value=99))
    negative = draw(st.booleans()) and draw(st.booleans())
    value = Fraction(whole) + (Fraction(cents, 100) if cents is not None else 0)
    digits = str(whole)
    text = _with_commas(digits) if draw(st.booleans()) else digits
    if cents is not None:
        text += f".{cents:02d}"
    elif draw(st.booleans()):
        text += ".0"
    if negative:
        value, text = -value, "-" + text
    elif draw(st.booleans()):
        text = "$" + text
    text += draw(st.sampled_from(["", " dollars", " apples", "%", ".", " km/h"]))
    return value, text


@given(formatted_numbers())
def test_a_written_number_reads_as_its_value(case: tuple[Fraction, str]) -> None:
    value, text = case
    assert to_number(text) == value
    assert answers_match(text, str(Decimal(value.numerator) / Decimal(value.denominator)))


@given(formatted_numbers(), formatted_numbers())
def test_numbers_match_exactly_when_equal(a: tuple[Fraction, str], b: tuple[Fraction, str]) -> None:
    assert answers_match(a[1], b[1]) == (a[0] == b[0])


@given(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=1, max_value=1000),
)
def test_tolerance_is_an_absolute_difference(base: int, offset_hundredths: int) -> None:
    other = Fraction(base) + Fraction(offset_hundredths, 100)
    written = str(Decimal(other.numerator) / Decimal(other.denominator))
    tolerance = offset_hundredths / 100
    assert answers_match(str(base), written, tolerance)
    assert not answers_match(str(base), written, tolerance / 2)


@pytest.mark.parametrize("text", ["", "about 5 or 6", "5 + 3", "x2", "eighteen", "1/2"])
def test_what_is_not_a_number(text: str) -> None:
    assert to_number(text) is None


def test_text_answers_compare_after_the_exact_match_filters() -> None:
    assert normalize_answer("  The Eiffel-Tower! ") == "eiffel tower"
    assert answers_match("the cat.", "A CAT")
    assert not answers_match("cat", "cats")


# ----------------------------------------------------------------------------- answer rules


@pytest.mark.parametrize(
    ("rule", "text", "expected"),
    [
        ("marker", "48 / 2 = 24\n#### 72", "72"),
        ("answer-line", "Step 1: 3 + 4 = 7\nAnswer: seven apples", "seven apples"),
        ("answer-line", "the final answer: first\nAnswer:\n", None),
        ("answer-is", "So the answer is Paris.", "Paris"),
        ("boxed", r"so $\boxed{\frac{1}{2}}$", r"\frac{1}{2}"),
        ("last-number", "3 eggs, then 5, then 1,200.", "1,200"),
        ("last-number", "no digits at all", None),
        ("regex:Result=(\\w+)", "Result=ok ... Result=done", "done"),
        ("gsm8k", "16 - 3 = 13\nAnswer: $18.00 per day", "18.00"),
        ("gsm8k", "she has 5, then 7 more. The answer is 12 eggs.", "12"),
        ("gsm8k", "5 then 7 and finally 9", None),  # cut off mid-reasoning: no answer
        ("gsm8k", "Janet sells <<16-3-4=9>>9 eggs.\n#### 18", "18"),
        ("gsm8k", "I do not know", None),
    ],
)
def test_rules_extract_the_final_answer(rule: str, text: str, expected: str | None) -> None:
    assert parse_rule(rule).extract(text) == expected


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ("regex:answer \\d+", "exactly one (group)"),
        ("regex:(a)(b)", "exactly one (group)"),
        ("regex:(", "bad answer rule"),
        ("gsm9k", "unknown answer rule 'gsm9k'"),
    ],
)
def test_bad_rules_are_one_line_bad_input(rule: str, needle: str) -> None:
    with pytest.raises(BadInputError) as caught:
        parse_rule(rule)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_every_gsm8k_reference_yields_its_number() -> None:
    rule = parse_rule("gsm8k")
    for row in _gsm8k_rows(200):
        expected = row["answer"].rsplit("####", 1)[1].strip()
        found = rule.extract(row["answer"])
        assert found is not None and to_number(found) == to_number(expected)
        rationale = rule.rationale(row["answer"])
        assert "####" not in rationale and "<<" not in rationale and rationale


# ------------------------------------------------------------------------------ the metric


def test_final_answer_metric_and_extraction_failure_rate() -> None:
    metric = get_metric("final_answer")
    examples = [
        Example("Answer: 18", "18", "18.0", True),
        Example("Answer: 17", "17", "18", True),
        Example("no idea", "", "18", False),
        Example("#### 1,000", "1,000", "1000", True),
    ]
    scores = [score_example([metric], e) for e in examples]
    assert [s["final_answer"] for s in scores] == [1.0, 0.0, 0.0, 1.0]
    result = aggregate_metrics([metric], examples, scores)
    assert result["final_answer"] == 0.5
    assert result["extraction_failure_rate"] == 0.25


def test_final_answer_tolerance_option() -> None:
    loose = get_metric("final_answer:0.5")
    assert score_example([loose], Example("", "3.4", "3", True))["final_answer:0.5"] == 1.0
    assert score_example([loose], Example("", "3.6", "3", True))["final_answer:0.5"] == 0.0
    for bad in ("final_answer:-1", "final_answer:lots", "final_answer:nan"):
        with pytest.raises(BadInputError, match="tolerance"):
            get_metric(bad)


# ------------------------------------------------------------------ dataset detection, store


def test_gsm8k_references_are_detected_at_import() -> None:
    from tunelab.engine.data.importing import DatasetOptions, build_dataset

    new = build_dataset({"test": _gsm8k_rows(20)}, "gsm8k", DatasetOptions(name="g"))
    assert new.task == "generation" and new.reference_column == "answer"
    assert new.answer_rule == "gsm8k" and new.metrics == ["final_answer"]
    rows = [{"question": "q", "answer": "plain words"}, {"question": "r", "answer": "#### 3"}]
    plain = build_dataset({"test": rows}, "x", DatasetOptions(name="p"))
    assert plain.answer_rule is None and "final_answer" not in plain.metrics
    chosen = build_dataset({"test": rows}, "x", DatasetOptions(name="p", answer_rule="last-number"))
    assert chosen.answer_rule == "last-number" and chosen.metrics == ["final_answer"]


def test_answer_rule_and_extracted_answers_are_stored(store: Store) -> None:
    from tunelab.store import NewRunOutput

    dataset = _add_gsm8k(store, 2)
    assert store.get_dataset("gsm8k").answer_rule == "gsm8k" == dataset.answer_rule
    version = store.save_prompt_version("p", PromptContent(template=COT_TEMPLATE)).version
    from tunelab.engine.models.sources import resolve_model

    run = store.create_run(
        prompt_version_id=version.id,
        model_id=resolve_model(store, "builtin").id,
        dataset_id=dataset.id,
        split="test",
        row_limit=None,
        sample_seed=None,
        settings={},
        scoring="generate",
        metric_names=["final_answer"],
        rows_total=3,
    )
    store.add_run_outputs(
        run.id,
        [
            NewRunOutput(
                0, "p", "Answer: 18", "18", "...#### 18", reference_answer="18", answer_found=True
            ),
            NewRunOutput(1, "p", "hm", "", "...#### 3", reference_answer="3", answer_found=False),
            NewRunOutput(2, "p", "x", "x", "x"),
        ],
    )
    got = store.run_outputs(run.id)
    assert [(o.reference_answer, o.answer_found) for o in got] == [
        ("18", True),
        ("3", False),
        (None, None),
    ]


def _add_gsm8k(store: Store, n: int, answer_rule: str | None = "gsm8k") -> Any:
    return store.add_dataset(
        NewDataset(
            name="gsm8k",
            source="gsm8k-test.jsonl",
            fingerprint="t",
            splits=[NewSplit("test", _gsm8k_rows(n), "t")],
            task="generation",
            input_columns=["question"],
            reference_column="answer",
            metrics=["final_answer"],
            answer_rule=answer_rule,
        )
    )


# ------------------------------------------------------- chain-of-thought extraction, target


def test_cot_extraction_prefers_an_answer_line() -> None:
    from tunelab.engine.prompts.templates import extract_answer

    cot = PromptContent(template="{{ q }}", reasoning="cot")
    output = "The final answer: Step one is to add.\n3 + 4 = 7\nAnswer: 7"
    assert extract_answer(cot, output) == "7"
    assert extract_answer(cot, "first the answer: 9 is wrong") == "9 is wrong"


def test_cot_training_target_is_the_rationale_then_the_final_answer() -> None:
    from tunelab.engine.prompts.templates import ANSWER_PREFIX
    from tunelab.engine.training.data import answer_text

    reference = _gsm8k_rows(1)[0]["answer"]
    cot = PromptContent(template=COT_TEMPLATE, reasoning="cot")
    target = answer_text(reference, cot, parse_rule("gsm8k"))  # type: ignore[arg-type]
    assert target.endswith(f"\n{ANSWER_PREFIX} 18") and "####" not in target
    assert target.startswith("Janet sells 16 - 3 - 4 = 9 duck eggs") and "<<" not in target
    # What evaluation extracts from this target is what it extracts from the reference.
    assert parse_rule("gsm8k").extract(target) == parse_rule("gsm8k").extract(reference) == "18"
    plain = PromptContent(template=COT_TEMPLATE)
    assert answer_text(reference, plain, parse_rule("gsm8k")) == reference  # type: ignore[arg-type]
    assert answer_text(reference, cot) == f"{ANSWER_PREFIX} {reference}"  # type: ignore[arg-type]


# ---------------------------------------------------------------------- with the real model


@pytest.mark.model
@pytest.mark.parametrize("prompt_rule", [None, "last-number", "regex:(\\d+)\\D*$"])
def test_cot_eval_stores_extracted_answers_and_the_failure_rate(
    store: Store, prompt_rule: str | None
) -> None:
    from tunelab.engine.evaluation.run import EvalRequest, evaluate

    _add_gsm8k(store, 3)
    settings: dict[str, Any] = {"max_new_tokens": 24}
    if prompt_rule:
        settings["answer"] = prompt_rule
    store.save_prompt_version(
        "cot", PromptContent(template=COT_TEMPLATE, reasoning="cot", settings=settings)
    )
    result = evaluate(
        store,
        EvalRequest(prompt="cot", dataset="gsm8k", limit=3, batch_size=3, latency_probe=0),
    )
    outputs = store.run_outputs(result.run.id)
    rule = parse_rule(prompt_rule or "gsm8k")
    assert [o.reference_answer for o in outputs] == ["18", "3", "70000"]
    for out in outputs:
        expected = rule.extract(out.output)
        assert out.answer_found == (expected is not None)
        assert out.prediction == (expected or "")
        correct = bool(out.answer_found) and answers_match(
            out.prediction or "", out.reference_answer or ""
        )
        assert out.scores["final_answer"] == float(correct)
    failed = sum(1 for o in outputs if not o.answer_found) / 3
    assert result.metrics["extraction_failure_rate"] == pytest.approx(failed)
    assert result.metrics["final_answer"] == pytest.approx(
        sum(o.scores["final_answer"] for o in outputs) / 3
    )


@pytest.mark.model
def test_cli_gsm8k_end_to_end_and_bad_rules_exit_2(workspace: Workspace, tmp_path: Path) -> None:
    rows = _gsm8k_rows(2)
    data = tmp_path / "gsm8k-test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    bad = run_cli(
        "dataset", "add", str(data), "--name", "g", "--answer-rule", "regex:x", workspace=workspace
    )
    assert bad.returncode == 2 and "exactly one (group)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    added = run_cli("dataset", "add", str(data), "--name", "g", "--json", workspace=workspace)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["answer_rule"] == "gsm8k"
    template = tmp_path / "t.txt"
    template.write_text(COT_TEMPLATE, encoding="utf-8")
    unknown = run_cli(
        "prompt",
        "new",
        "p",
        "-t",
        str(template),
        "--cot",
        "--answer-rule",
        "nope",
        workspace=workspace,
    )
    assert unknown.returncode == 2 and "unknown answer rule 'nope'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    saved = run_cli(
        "prompt",
        "new",
        "p",
        "-t",
        str(template),
        "--cot",
        "--max-tokens",
        "16",
        workspace=workspace,
    )
    assert saved.returncode == 0, saved.stderr
    ran = run_cli("eval", "-p", "p", "-d", "g", "--no-latency-probe", "--json", workspace=workspace)
    assert ran.returncode == 0, ran.stderr
    metrics = json.loads(ran.stdout)["metrics"]
    assert {"final_answer", "extraction_failure_rate"} <= set(metrics)
    shown = run_cli("run", "show", "1", "--outputs", workspace=workspace, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    header = next(line for line in shown.stdout.splitlines() if "reference answer" in line)
    assert "answer" in header.replace("reference answer", "") and " 18 " in shown.stdout


def test_prompt_answer_rule_round_trips_through_the_text_form() -> None:
    from tunelab.engine.prompts.settings import GenerationSettings
    from tunelab.engine.prompts.text import content_to_text, text_to_content, validated_content

    content = validated_content(
        PromptContent(template=COT_TEMPLATE, reasoning="cot", settings={"answer": "boxed"})
    )
    assert content.settings["answer"] == "boxed"
    again, _ = text_to_content(content_to_text(content, ""))
    assert again.settings == content.settings
    # The rule is no generation setting: generation reads the version without it.
    assert GenerationSettings.from_version_settings(content.settings) == GenerationSettings()
    with pytest.raises(BadInputError, match=r"settings\.answer"):
        validated_content(PromptContent(template=COT_TEMPLATE, settings={"answer": 3}))


@pytest.mark.model
def test_a_prompt_rule_alone_scores_plain_references(store: Store) -> None:
    from tunelab.engine.evaluation.run import EvalRequest, evaluate

    rows = [
        {"question": r["question"], "answer": r["answer"].rsplit("####", 1)[1].strip()}
        for r in _gsm8k_rows(2)
    ]
    store.add_dataset(
        NewDataset(
            name="plain",
            source="-",
            fingerprint="p",
            splits=[NewSplit("test", rows, "p")],
            input_columns=["question"],
            reference_column="answer",
            metrics=["exact_match"],
        )
    )
    store.save_prompt_version(
        "last",
        PromptContent(
            template=COT_TEMPLATE, settings={"max_new_tokens": 16, "answer": "last-number"}
        ),
    )
    result = evaluate(store, EvalRequest(prompt="last", dataset="plain", latency_probe=0))
    outputs = store.run_outputs(result.run.id)
    assert [o.reference_answer for o in outputs] == ["18", "3"]
    assert "final_answer" in result.run.metric_names and "exact_match" in result.metrics
    for out in outputs:
        assert out.answer_found == (parse_rule("last-number").extract(out.output) is not None)


@pytest.mark.model
def test_fine_tune_examples_learn_the_worked_solution_then_the_answer(store: Store) -> None:
    from tunelab.engine.models.loading import load_builtin
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.engine.training.data import IGNORE_INDEX, ExampleBuilder

    dataset = _add_gsm8k(store, 2)
    version = store.save_prompt_version(
        "cot", PromptContent(template=COT_TEMPLATE, reasoning="cot")
    ).version
    tokenizer = load_builtin().tokenizer
    builder = ExampleBuilder(
        store, dataset, version, tokenizer, TrainingConfig(train_split="test", max_seq_len=512)
    )
    example = builder.example(store.dataset_rows("gsm8k", "test", indices=[0])[0])
    target = tokenizer.decode([t for t in example.labels if t != IGNORE_INDEX])
    assert target.strip().startswith("Janet sells 16 - 3 - 4 = 9 duck eggs")
    assert target.rstrip(tokenizer.eos_token).strip().endswith("Answer: 18")
    assert "####" not in target and "<<" not in target
    # Evaluating the fine-tune reads its output with the dataset's rule: the same answer.
    assert parse_rule("gsm8k").extract(target.replace(tokenizer.eos_token, "")) == "18"

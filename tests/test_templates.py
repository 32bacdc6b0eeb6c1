"""Prompt rendering: sandboxed, strict about variables, few-shot and chain-of-thought."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunelab.engine.errors import BadInputError
from tunelab.engine.prompts.templates import (
    COT_INSTRUCTION,
    FewShotConfig,
    FewShotSampler,
    build_prompt,
    extract_answer,
    render_preview,
    render_prompt,
    render_template,
    variables_of,
)
from tunelab.store import NewDataset, NewSplit, PromptVersion, Store


def version(template: str, **kwargs: Any) -> PromptVersion:
    return PromptVersion(id=1, prompt_id=1, prompt_name="p", version=1, template=template, **kwargs)


def test_plain_mode_with_system_and_examples() -> None:
    v = version(
        "Tweet: {{ text }}\nLabel:",
        system="Classify tweets.",
        examples=[{"text": "great, rain again", "output": "irony"}],
        mode="plain",
    )
    text, messages, shots = build_prompt(v, {"text": "I love sunny days"})
    assert text == (
        "Classify tweets.\n\nTweet: great, rain again\nLabel: irony\n\n"
        "Tweet: I love sunny days\nLabel:"
    )
    assert messages == [] and len(shots) == 1


def test_chat_mode_turns_examples_into_user_assistant_pairs() -> None:
    v = version("{{ q }}", system="Be brief.", examples=[{"q": "2+2?", "output": "4"}])
    _, messages, _ = build_prompt(v, {"q": "3+3?"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "4" and messages[3]["content"] == "3+3?"


def test_example_without_output_key_is_refused() -> None:
    v = version("{{ q }}", examples=[{"q": "2+2?", "answer": "4"}], mode="plain")
    with pytest.raises(BadInputError, match="'output'"):
        build_prompt(v, {"q": "x"})


def test_unknown_variable_names_it_and_lists_columns() -> None:
    with pytest.raises(BadInputError, match=r"tweet.*available columns: label, text"):
        render_template("Tweet: {{ tweet }}", {"text": "hi", "label": "irony"})


def test_syntax_error_reports_line_and_column() -> None:
    with pytest.raises(BadInputError, match=r"line 2, column 5"):
        variables_of("ok {{ a }}\nbad {{ b + }}")


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ text.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_sandbox_escape_is_refused(escape: str) -> None:
    with pytest.raises(BadInputError, match="Python internals"):
        render_template(escape, {"text": "hi"})


def test_variables_of_lists_what_a_template_reads() -> None:
    assert variables_of("{{ b }} {% for x in a %}{{ x }}{% endfor %}") == ["a", "b"]


def test_chain_of_thought_instruction_and_answer_extraction() -> None:
    v = version("Q: {{ q }}", mode="plain", reasoning="cot")
    text, _, _ = build_prompt(v, {"q": "2+3?"})
    assert COT_INSTRUCTION in text
    assert extract_answer(v, "2 plus 3 is 5.\nAnswer: 5\nmore text") == "5"
    assert extract_answer(v, "first answer: 4, wait.\nANSWER: 5") == "5"
    assert extract_answer(v, "no marker\n  7  ") == "7"
    assert extract_answer(version("x"), "  irony \n") == "irony"


def test_cot_examples_show_reasoning_then_answer() -> None:
    v = version(
        "Q: {{ q }}",
        mode="plain",
        reasoning="cot",
        examples=[{"q": "1+1?", "reasoning": "One and one make two.", "output": "2"}],
    )
    text, _, _ = build_prompt(v, {"q": "2+2?"})
    assert "Q: 1+1? One and one make two.\nAnswer: 2" in text


def test_bad_mode_and_reasoning_are_refused() -> None:
    with pytest.raises(BadInputError, match="mode"):
        build_prompt(version("x", mode="json"), {})
    with pytest.raises(BadInputError, match="reasoning"):
        build_prompt(version("x", reasoning="tot"), {})


def test_preview_without_model_has_no_token_count() -> None:
    rendered = render_preview(version("{{ a }}", mode="plain"), {"a": "hello"})
    assert rendered.text == "hello" and rendered.token_count is None and rendered.fits
    assert render_prompt(version("{{ a }}", mode="plain"), {"a": "x"}).text == "x"


def test_fewshot_config_is_strict() -> None:
    assert FewShotConfig.from_settings({"fewshot": {"k": 2, "split": "train"}}).k == 2
    assert FewShotConfig.from_settings({}).k == 0
    with pytest.raises(BadInputError, match="kk"):
        FewShotConfig.from_settings({"fewshot": {"kk": 2}})
    with pytest.raises(BadInputError, match=r"fewshot\.k"):
        FewShotConfig(k=-1)


def _dataset(store: Store) -> Any:
    rows = [{"text": f"tweet {i}", "label": "irony" if i % 2 else "non_irony"} for i in range(6)]
    return store.add_dataset(
        NewDataset(
            name="tiny",
            source="test",
            fingerprint="fp",
            splits=[NewSplit("train", rows, "fp-train"), NewSplit("val", rows[:2], "fp-val")],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=["irony", "non_irony"],
        )
    )


def test_fewshot_sampler_is_seeded_and_excludes_the_evaluated_row(store: Store) -> None:
    dataset = _dataset(store)
    config = FewShotConfig(k=3, split="train", seed=7)
    sampler = FewShotSampler(store, dataset, config, eval_split="train")
    again = FewShotSampler(store, dataset, config, eval_split="train")
    base = sampler.examples_for(None)
    assert base == again.examples_for(None) and len(base) == 3
    for example in base:
        assert example["output"] == example["label"]
    for idx in range(6):
        shots = sampler.examples_for(idx)
        assert len(shots) == 3
        assert all(s["text"] != f"tweet {idx}" for s in shots)
    other_split = FewShotSampler(store, dataset, config, eval_split="val")
    assert other_split.examples_for(int(base[0]["text"].split()[-1])) == base


text_values = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=0, max_size=60)


@given(value=text_values, other=text_values)
def test_arbitrary_values_render_verbatim(value: str, other: str) -> None:
    v = version("A={{ a }}|B={{ b }}", mode="plain")
    text, _, _ = build_prompt(v, {"a": value, "b": other})
    assert text == f"A={value}|B={other}"


@given(value=text_values)
def test_values_never_execute_as_template_code(value: str) -> None:
    rendered = render_template("{{ a }}", {"a": "{{ 7 * 7 }}" + value})
    assert rendered == "{{ 7 * 7 }}" + value

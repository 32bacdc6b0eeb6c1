"""Generation and label scoring on the real built-in model (offline, a few rows, few tokens)."""

from __future__ import annotations

from typing import Any

import pytest

from tunelab.engine.errors import BadInputError
from tunelab.engine.generation.batched import generate_batch, stream_generate
from tunelab.engine.generation.controls import tokenize_bias
from tunelab.engine.generation.likelihood import continuation, score_labels
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.engine.prompts.templates import prompt_token_ids, render_prompt
from tunelab.store import PromptVersion

pytest_plugins = ["tests.model_fixtures"]

IRONY = PromptVersion(
    id=1,
    prompt_id=1,
    prompt_name="irony",
    version=1,
    template="Is this tweet ironic? Answer irony or non_irony.\nTweet: {{ text }}",
    mode="chat",
)


def _prompts(loaded: Any, rows: list[dict[str, Any]], n: int) -> list[str]:
    return [render_prompt(IRONY, row, loaded, max_new_tokens=8).text for row in rows[:n]]


def test_string_with_no_tokens_is_refused_for_bias() -> None:
    class NoTokens:
        def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
            return {"input_ids": []}

    with pytest.raises(BadInputError, match="'\\\\u200b' has no tokens"):
        tokenize_bias(NoTokens(), {"\u200b": 5.0})


@pytest.mark.model
def test_batched_greedy_equals_one_at_a_time(builtin_model: Any, irony_rows: list[Any]) -> None:
    prompts = _prompts(builtin_model, irony_rows, 4)
    settings = GenerationSettings(max_new_tokens=8)
    batched = generate_batch(builtin_model, prompts, settings, batch_size=4)
    single = [generate_batch(builtin_model, [p], settings)[0] for p in prompts]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.tokens_out for r in batched] == [r.tokens_out for r in single]
    assert all(r.text for r in batched)
    assert batched[0].tokens_in == len(prompt_token_ids(builtin_model.tokenizer, prompts[0]))
    assert {r.finish_reason for r in batched} <= {"eos", "length"}


@pytest.mark.model
def test_stop_sequence_cuts_output_and_ends_generation(builtin_model: Any) -> None:
    prompt = render_prompt(IRONY, {"text": "Great, another Monday."}, builtin_model).text
    free = generate_batch(builtin_model, [prompt], GenerationSettings(max_new_tokens=12))[0]
    words = free.text.split()
    assert len(words) >= 3
    stop = " " + words[2]
    cut = generate_batch(
        builtin_model, [prompt], GenerationSettings(max_new_tokens=12, stop=[stop])
    )[0]
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[: free.text.index(stop)]
    assert cut.tokens_out < free.tokens_out


@pytest.mark.model
def test_logit_bias_changes_the_output(builtin_model: Any) -> None:
    prompt = render_prompt(IRONY, {"text": "Love waiting in line for hours."}, builtin_model).text
    plain = generate_batch(builtin_model, [prompt], GenerationSettings(max_new_tokens=4))[0]
    biased = generate_batch(
        builtin_model,
        [prompt],
        GenerationSettings(max_new_tokens=4, logit_bias={"banana": 30.0}),
    )[0]
    assert "banana" not in plain.text.lower()
    assert "banana" in biased.text.lower()
    entries = tokenize_bias(builtin_model.tokenizer, {"banana": 30.0})
    assert entries[0].token_ids and "".join(entries[0].token_strings).endswith("ana")


@pytest.mark.model
def test_stream_matches_batch_and_reports_first_token(builtin_model: Any) -> None:
    prompt = render_prompt(IRONY, {"text": "What a lovely traffic jam."}, builtin_model).text
    settings = GenerationSettings(max_new_tokens=8)
    expected = generate_batch(builtin_model, [prompt], settings)[0]
    chunks = list(stream_generate(builtin_model, prompt, settings))
    assert "".join(c.text for c in chunks) == expected.text
    last = chunks[-1]
    assert last.done and last.finish_reason == expected.finish_reason
    assert last.tokens_out == expected.tokens_out
    assert last.time_to_first_token_s is not None
    assert 0 < last.time_to_first_token_s <= last.elapsed_s


@pytest.mark.model
def test_should_stop_cancels_rows(builtin_model: Any, irony_rows: list[Any]) -> None:
    prompts = _prompts(builtin_model, irony_rows, 2)
    results = generate_batch(
        builtin_model, prompts, GenerationSettings(max_new_tokens=8), should_stop=lambda: True
    )
    assert [r.finish_reason for r in results] == ["cancelled", "cancelled"]


@pytest.mark.model
def test_prompt_over_the_context_window_is_refused_before_generating(builtin_model: Any) -> None:
    long_row = {"text": "word " * 9000}
    with pytest.raises(BadInputError, match=r"tokens \+ 8 new tokens.*context window of 8192"):
        render_prompt(IRONY, long_row, builtin_model, max_new_tokens=8)
    with pytest.raises(BadInputError, match="context window"):
        generate_batch(builtin_model, ["word " * 9000], GenerationSettings(max_new_tokens=8))


def _brute_force(loaded: Any, prompt: str, label: str) -> float:
    import torch

    ids = prompt_token_ids(loaded.tokenizer, prompt)
    cont = loaded.tokenizer(continuation(prompt, label), add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([ids + cont])).logits[0].float()
    logprobs = logits.log_softmax(-1)
    return sum(float(logprobs[len(ids) - 1 + j, t]) for j, t in enumerate(cont))


@pytest.mark.model
def test_label_scores_agree_with_brute_force(builtin_model: Any, irony_rows: list[Any]) -> None:
    # Chat prompts share a long prefix (the system turn), which is scored once and reused.
    prompts = _prompts(builtin_model, irony_rows, 3)
    prompts.append("The capital of France is")
    labels = ["irony", "non_irony", "Paris"]
    for batch in (prompts[:3], prompts):
        scores = score_labels(builtin_model, batch, labels)
        assert len(scores) == len(batch)
        for prompt, row in zip(batch, scores, strict=True):
            for label in labels:
                expected = _brute_force(builtin_model, prompt, label)
                assert row[label] == pytest.approx(expected, abs=2e-3)
            assert row.prediction == max(labels, key=lambda lab: row[lab])
    assert scores[-1].prediction == "Paris"
    assert scores[0].label_tokens["non_irony"] > scores[0].label_tokens["irony"]


@pytest.mark.model
def test_label_scores_do_not_depend_on_batching(builtin_model: Any) -> None:
    prompts = ["On a clear day the sky is", "On a clear day the sun is", "Fresh snow is"]
    labels = ["blue", "bright", "white"]
    together = score_labels(builtin_model, prompts, labels)
    alone = [score_labels(builtin_model, [p], labels, batch_size=1)[0] for p in prompts]
    for a, b in zip(together, alone, strict=True):
        assert dict(a) == pytest.approx(dict(b), abs=2e-3)
    assert together[0].prediction == "blue" and together[2].prediction == "white"


def test_label_scoring_needs_two_distinct_labels() -> None:
    with pytest.raises(BadInputError, match="two or more distinct labels"):
        score_labels(None, ["x"], ["yes", "yes"])  # type: ignore[arg-type]

"""Label likelihood on endpoint models: the completions API's echoed prompt log-probabilities
(`tunelab serve` answers them) score labels as the local scorer does, and an endpoint that
gives none is refused in one line."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_endpoint import _add_data, _register, _request, server, tiny  # noqa: F401
from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.evaluation.run import evaluate
from tunelab.engine.generation.endpoint import EndpointModel
from tunelab.engine.generation.endpoint_likelihood import (
    NoPromptLogprobs,
    continuation_logprob,
    score_labels_endpoint,
)
from tunelab.engine.generation.likelihood import score_labels
from tunelab.engine.models.endpoint import EndpointConfig
from tunelab.engine.serving.server import ModelServer, ServeConfig
from tunelab.store import Store

pytest_plugins = ["tests.model_fixtures"]

PROMPTS = ["Tweet: so fun, a flat tyre\nLabel:", "Tweet: lovely sunny day\nLabel:"]
LABELS = ["irony", "non_irony"]


def _reply(offsets: list[int], values: list[float | None]) -> Any:
    logprobs = SimpleNamespace(text_offset=offsets, token_logprobs=values)
    return SimpleNamespace(choices=[SimpleNamespace(logprobs=logprobs)])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-20, 0), min_size=1, max_size=6),
    st.lists(st.floats(-20, 0), min_size=1, max_size=4),
    st.integers(0, 3),
)
def test_only_tokens_starting_inside_the_continuation_are_summed(
    prompt_values: list[float], label_values: list[float], generated: int
) -> None:
    prompt = "p" * len(prompt_values)
    text = prompt + "l" * len(label_values)
    offsets = list(range(len(text))) + [len(text)] * generated
    values: list[float | None] = [None, *prompt_values[1:], *label_values] + [-1.0] * generated
    total, count = continuation_logprob(_reply(offsets, values), prompt, text)
    assert count == len(label_values)
    assert total == pytest.approx(sum(label_values))


def test_a_reply_without_logprobs_is_refused() -> None:
    empty = SimpleNamespace(choices=[SimpleNamespace(logprobs=None)])
    with pytest.raises(NoPromptLogprobs):
        continuation_logprob(empty, "a", "ab")
    with pytest.raises(EngineError, match="merged"):
        continuation_logprob(_reply([0], [None]), "ab", "abc")


def _endpoint(server: ModelServer) -> EndpointModel:  # noqa: F811
    return EndpointModel(EndpointConfig(base_url=server.base_url, model="tiny"), "tiny")


def test_endpoint_scores_equal_local_scores(server: ModelServer, tiny: Any) -> None:  # noqa: F811
    remote = score_labels_endpoint(_endpoint(server), PROMPTS, LABELS)
    local = score_labels(tiny, PROMPTS, LABELS)
    for r, loc in zip(remote, local, strict=True):
        assert r.prediction == loc.prediction
        for label in LABELS:
            assert r[label] == pytest.approx(loc[label], abs=1e-3)
        assert r.label_tokens == loc.label_tokens


def test_likelihood_eval_on_an_endpoint_equals_the_local_one(
    store: Store,
    server: ModelServer,  # noqa: F811
    tiny: Any,  # noqa: F811
) -> None:
    from tests.test_endpoint import _local_record

    _add_data(store)
    local = store.add_model(_local_record(tiny))
    _register(store, server.base_url)
    local_run = evaluate(store, _request(model=local.name, scoring="likelihood"))
    remote_run = evaluate(store, _request(model="tiny", scoring="likelihood"))
    local_rows = store.run_outputs(local_run.run.id)
    remote_rows = store.run_outputs(remote_run.run.id)
    assert [r.prediction for r in remote_rows] == [r.prediction for r in local_rows]
    assert all(r.tokens_in > 0 for r in remote_rows)
    again = evaluate(store, _request(model="tiny", scoring="likelihood"))
    assert all(r.cached for r in store.run_outputs(again.run.id))


def test_chat_mode_likelihood_on_an_endpoint_is_refused(
    store: Store,
    server: ModelServer,  # noqa: F811
) -> None:
    _add_data(store, mode="chat")
    _register(store, server.base_url)
    with pytest.raises(BadInputError, match="scores plain text"):
        evaluate(store, _request(scoring="likelihood"))
    assert store.list_runs() == []


@pytest.fixture
def generating_only(tiny: Any) -> Iterator[ModelServer]:  # noqa: F811
    """A server that answers completions but drops their log-probabilities (as hosted chat
    APIs do): likelihood must be refused, not scored another way."""
    import tunelab.engine.serving.server as served

    original = served.echo_request
    served.echo_request = lambda body: None  # type: ignore[assignment]
    try:
        with ModelServer(tiny, "tiny", ServeConfig(port=0)) as running:
            yield running
    finally:
        served.echo_request = original


def test_an_endpoint_without_prompt_logprobs_is_refused_in_one_line(
    generating_only: ModelServer,
) -> None:
    with pytest.raises(NoPromptLogprobs, match="--scoring generate") as raised:
        score_labels_endpoint(_endpoint(generating_only), PROMPTS[:1], LABELS)
    assert "\n" not in str(raised.value)


@pytest.mark.model
def test_builtin_model_served_scores_labels_as_it_does_locally(
    builtin_model: Any,
) -> None:
    with ModelServer(builtin_model, "builtin", ServeConfig(port=0)) as running:
        endpoint = EndpointModel(EndpointConfig(base_url=running.base_url, model="builtin"), "b")
        remote = score_labels_endpoint(endpoint, PROMPTS, LABELS)
    local = score_labels(builtin_model, PROMPTS, LABELS)
    assert [r.prediction for r in remote] == [r.prediction for r in local]
    for r, loc in zip(remote, local, strict=True):
        assert r["irony"] - r["non_irony"] == pytest.approx(
            loc["irony"] - loc["non_irony"], abs=0.05
        )


def test_a_chat_only_endpoint_gets_plain_prompts_as_one_user_message() -> None:
    from tunelab.engine.generation.endpoint import EndpointPrompt, routed

    plain = EndpointPrompt("Tweet: x\nLabel:")
    assert routed(plain, "chat").messages == [{"role": "user", "content": plain.text}]
    assert routed(plain, "auto") == plain and routed(plain, "completions") == plain
    chat = EndpointPrompt("t", [{"role": "user", "content": "hi"}])
    assert routed(chat, "chat") == chat


def test_api_kind_decides_what_an_endpoint_evaluation_may_do(
    store: Store,
    server: ModelServer,  # noqa: F811
) -> None:
    _add_data(store)
    _register(store, server.base_url, api="chat")
    with pytest.raises(BadInputError, match="chat-only"):
        evaluate(store, _request(scoring="likelihood"))
    chat_only = evaluate(store, _request())  # a plain prompt, sent as one user message
    assert len(store.run_outputs(chat_only.run.id)) == 3
    with pytest.raises(BadInputError, match="--api must be one of"):
        _register(store, server.base_url, api="grpc")


def test_a_completions_only_endpoint_refuses_chat_prompts(
    store: Store,
    server: ModelServer,  # noqa: F811
) -> None:
    _add_data(store, mode="chat")
    _register(store, server.base_url, api="completions")
    with pytest.raises(BadInputError, match="only the completions API"):
        evaluate(store, _request())
    assert store.list_runs() == []

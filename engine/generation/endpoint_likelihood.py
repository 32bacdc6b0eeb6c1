"""Label likelihood on endpoint models, from the prompt log-probabilities the API echoes.

An OpenAI-compatible completions API scores text when asked with `echo=true, logprobs=0,
max_tokens=1`: it returns every prompt token's log-probability and where each token starts
(`text_offset`). Sending prompt + " label" and summing the log-probabilities of the tokens
that start inside the label gives the same quantity the local scorer computes (vLLM, the
llama.cpp server and `tunelab serve` answer this; most hosted chat APIs do not, and then the
evaluation is refused in one line rather than silently scored another way). One request per
(row, label), at most `max_concurrency` in flight, with the generation path's retries.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.generation.endpoint import EndpointModel, open_client, with_retries
from tunelab.engine.generation.likelihood import LabelScores, continuation


def continuation_logprob(reply: Any, prompt: str, text: str) -> tuple[float, int]:
    """Sum of the log-probabilities of the echoed tokens inside `text[len(prompt):]`.

    Args:
        reply: the completions reply to an echo request for `text`.
        prompt: the prompt the continuation follows.
        text: prompt + continuation, as sent.

    Returns:
        (summed log-probability, how many tokens it covers).
    """
    choice = reply.choices[0]
    logprobs = getattr(choice, "logprobs", None)
    offsets = getattr(logprobs, "text_offset", None) if logprobs is not None else None
    values = getattr(logprobs, "token_logprobs", None) if logprobs is not None else None
    if not offsets or not values or len(offsets) != len(values):
        raise NoPromptLogprobs("the endpoint returned no prompt log-probabilities")
    start, end = len(prompt), len(text)
    total, count = 0.0, 0
    for offset, value in zip(offsets, values, strict=True):
        # A token that starts inside the continuation belongs to it; the echoed generated
        # token (max_tokens=1) starts at or after its end and is left out.
        if start <= offset < end:
            if value is None:
                raise NoPromptLogprobs("the endpoint gave no log-probability for a label token")
            total += float(value)
            count += 1
    if count == 0:
        raise EngineError(
            "no echoed token starts inside the label; the endpoint's tokenizer merged it with "
            "the prompt (end the prompt with a space or newline)"
        )
    return total, count


class NoPromptLogprobs(BadInputError):
    """The endpoint does not echo prompt log-probabilities: likelihood cannot be scored."""


def score_labels_endpoint(
    endpoint: EndpointModel, prompts: Sequence[str], labels: Sequence[str]
) -> list[LabelScores]:
    """Log-likelihood of each label after each prompt, scored by the endpoint.

    Args:
        endpoint: the endpoint model (completions API with echo and logprobs).
        prompts: rendered prompts (plain text; chat-mode versions are refused by the plan).
        labels: the candidate labels (two or more, distinct).

    Returns:
        One `LabelScores` per prompt, in order; prediction = argmax, ties to the first label.
    """
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise BadInputError(f"likelihood scoring needs two or more distinct labels, got {labels}")
    if not prompts:
        return []
    client = open_client(endpoint)
    model = endpoint.config.model
    scores: dict[tuple[int, int], tuple[float, int]] = {}
    tokens_in: dict[int, int] = {}
    lock = threading.Lock()

    def work(row: int, k: int) -> None:
        prompt = prompts[row]
        text = prompt + continuation(prompt, labels[k])
        try:
            reply, _ = with_retries(
                endpoint,
                lambda: client.completions.create(
                    model=model, prompt=text, echo=True, logprobs=0, max_tokens=1, temperature=0
                ),
            )
        except EngineError as exc:
            # A 400/404/422 to an echo request: the API has no scoring mode (hosted chat APIs).
            if any(f"({code})" in str(exc) for code in (400, 404, 422)):
                raise NoPromptLogprobs(str(exc)) from exc
            raise
        value = continuation_logprob(reply, prompt, text)
        usage = getattr(reply, "usage", None)
        with lock:
            scores[(row, k)] = value
            if usage is not None:
                tokens_in[row] = max(tokens_in.get(row, 0), int(usage.prompt_tokens) - value[1])

    pairs = [(row, k) for row in range(len(prompts)) for k in range(len(labels))]
    try:
        with ThreadPoolExecutor(
            endpoint.config.max_concurrency, thread_name_prefix="tunelab-api"
        ) as pool:
            futures = [pool.submit(work, row, k) for row, k in pairs]
            for future in futures:
                error = future.exception()
                if error is not None:
                    for other in futures:
                        other.cancel()
                    if isinstance(error, NoPromptLogprobs):
                        raise NoPromptLogprobs(
                            f"{endpoint.config.base_url} does not return prompt log-probabilities "
                            "(completions with echo and logprobs), so labels cannot be scored "
                            "by likelihood there: use --scoring generate"
                        ) from error
                    raise error
    finally:
        client.close()
    results = []
    for row in range(len(prompts)):
        row_scores = {label: scores[(row, k)][0] for k, label in enumerate(labels)}
        best = max(range(len(labels)), key=lambda k: scores[(row, k)][0])
        results.append(
            LabelScores(
                row_scores,
                labels[best],
                {label: scores[(row, k)][1] for k, label in enumerate(labels)},
                tokens_in.get(row, 0),
            )
        )
    return results

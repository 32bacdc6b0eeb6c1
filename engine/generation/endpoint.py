"""Generation on endpoint models: concurrent requests to an OpenAI-compatible API.

Local batching has no meaning here, so rows go out as separate requests, at most
`max_concurrency` at once, each with its own timeout. A 429, a 5xx, a timeout or a dropped
connection is retried with exponential backoff (honouring Retry-After); an auth failure or a
4xx stops the run with one line. Token counts are the API's own `usage`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.generation.batched import GenerationProgress, GenerationResult, TokenChunk
from tunelab.engine.models.endpoint import EndpointConfig, is_endpoint, short_cause

if TYPE_CHECKING:
    from tunelab.engine.prompts.settings import GenerationSettings
    from tunelab.store import Model

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
FINISH = {"stop": "stop", "length": "length", "content_filter": "stop", "tool_calls": "stop"}
"""OpenAI finish reasons → tunelab's (an endpoint cannot tell eos from a stop string)."""


@dataclass(frozen=True)
class EndpointPrompt:
    """One request: chat messages (chat mode) or the rendered text (plain mode)."""

    text: str
    messages: list[dict[str, str]] = field(default_factory=list)


@dataclass
class EndpointModel:
    """An endpoint model ready to take requests; stands where a `LoadedModel` does."""

    config: EndpointConfig
    name: str
    fingerprint: str = ""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    """How retries wait (tests pass a recorder)."""

    def __post_init__(self) -> None:
        self.fingerprint = self.fingerprint or self.config.fingerprint


def check_settings(settings: GenerationSettings) -> None:
    """Refuse, in one line, what an OpenAI-compatible API cannot be asked for."""
    if settings.logit_bias:
        raise BadInputError(
            "logit_bias cannot be sent to an endpoint model (the API keys it by token id of a "
            "tokenizer tunelab does not have); remove it from the settings"
        )
    if settings.top_k or settings.repetition_penalty != 1.0:
        raise BadInputError(
            "top_k and repetition_penalty are not part of the OpenAI API; reset them "
            "(top_k=0, repetition_penalty=1) for an endpoint model"
        )


def _request_args(
    prompt: EndpointPrompt, model: str, settings: GenerationSettings
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": model,
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
    }
    if settings.stop:
        args["stop"] = list(settings.stop)
    if not settings.greedy:
        args["seed"] = settings.seed
    if prompt.messages:
        args["messages"] = prompt.messages
    else:
        args["prompt"] = prompt.text
    return args


def routed(prompt: EndpointPrompt, api: str) -> EndpointPrompt:
    """The request as the endpoint's API takes it: a chat-only endpoint gets a plain prompt
    as one user message (its chat template then wraps it); the plan refuses chat prompts for
    a completions-only endpoint before any request."""
    if api == "chat" and not prompt.messages:
        return EndpointPrompt(prompt.text, [{"role": "user", "content": prompt.text}])
    return prompt


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def with_retries(endpoint: EndpointModel, call: Callable[[], Any]) -> tuple[Any, float]:
    """Run one API call, retrying 429s, 5xx, timeouts and dropped connections with backoff.

    Returns:
        (the reply, the successful attempt's wall time in ms). An auth failure or another
        4xx is one line at once; the last failure after `max_retries` retries is one line.
    """
    import openai  # deferred: only endpoint models need the client

    config = endpoint.config
    for attempt in range(config.max_retries + 1):
        began = time.perf_counter()
        try:
            reply = call()
        except openai.AuthenticationError as exc:
            raise EngineError(
                f"{config.base_url} refused the API key ({exc.status_code}); check "
                + (config.api_key_env or "--api-key-env")
            ) from exc
        except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError) as exc:
            failure: Exception = exc
            wait = _retry_after(exc)
        except openai.InternalServerError as exc:
            failure, wait = exc, _retry_after(exc)
        except openai.APIStatusError as exc:
            message = getattr(exc, "message", "") or str(exc)
            raise EngineError(
                f"{config.base_url} rejected the request ({exc.status_code}): "
                f"{message.splitlines()[0] if message else 'no message'}"
            ) from exc
        else:
            return reply, (time.perf_counter() - began) * 1000
        if attempt == config.max_retries:
            break
        endpoint.sleep(
            min(BACKOFF_CAP_S, wait if wait is not None else BACKOFF_BASE_S * 2**attempt)
        )
    what = "timed out" if isinstance(failure, openai.APITimeoutError) else short_cause(failure)
    raise EngineError(
        f"{config.base_url} failed {config.max_retries + 1} times ({what}); "
        "check the server or raise max_retries"
    )


def _one(
    client: Any, endpoint: EndpointModel, prompt: EndpointPrompt, settings: GenerationSettings
) -> GenerationResult:
    """One request with retries; the latency is the successful attempt's wall time."""
    prompt = routed(prompt, endpoint.config.api)
    args = _request_args(prompt, endpoint.config.model, settings)
    if prompt.messages:
        reply, elapsed_ms = with_retries(endpoint, lambda: client.chat.completions.create(**args))
        text = reply.choices[0].message.content or ""
    else:
        reply, elapsed_ms = with_retries(endpoint, lambda: client.completions.create(**args))
        text = reply.choices[0].text or ""
    usage = reply.usage
    finish = FINISH.get(str(reply.choices[0].finish_reason), "stop")
    return GenerationResult(
        text,
        int(usage.prompt_tokens) if usage else 0,
        int(usage.completion_tokens) if usage else 0,
        elapsed_ms,
        finish,
        elapsed_ms,
        1,
    )


def open_client(endpoint: EndpointModel) -> Any:
    """The official client for an endpoint, with our retries instead of its own."""
    import openai  # deferred: only endpoint models need the client

    config = endpoint.config
    return openai.OpenAI(
        base_url=config.base_url,
        api_key=config.api_key(),
        max_retries=0,  # retried here, with backoff we control and test
        timeout=config.timeout_s,
    )


def generate_endpoint(
    endpoint: EndpointModel,
    prompts: Sequence[EndpointPrompt],
    settings: GenerationSettings,
    on_progress: Callable[[GenerationProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[GenerationResult]:
    """Generate for many prompts, `max_concurrency` requests at a time.

    Args:
        endpoint: the endpoint model.
        prompts: one request per row, in order.
        settings: generation settings (checked by `check_settings`).
        on_progress: called after each finished row.
        should_stop: polled before each request; rows not sent come back "cancelled".

    Returns:
        One result per prompt, in the order given.
    """
    check_settings(settings)
    config = endpoint.config
    client = open_client(endpoint)
    results: list[GenerationResult | None] = [None] * len(prompts)
    lock = threading.Lock()
    done = [0]

    def work(i: int) -> None:
        if should_stop is not None and should_stop():
            return
        result = _one(client, endpoint, prompts[i], settings)
        with lock:
            results[i] = result
            done[0] += 1
            if on_progress is not None:
                on_progress(GenerationProgress(done[0], len(prompts), [i], [result]))

    try:
        with ThreadPoolExecutor(config.max_concurrency, thread_name_prefix="tunelab-api") as pool:
            futures = [pool.submit(work, i) for i in range(len(prompts))]
            for future in futures:
                error = future.exception()
                if error is not None:
                    for other in futures:
                        other.cancel()
                    raise error
    finally:
        client.close()
    return [r if r is not None else GenerationResult("", 0, 0, 0.0, "cancelled") for r in results]


def stream_endpoint(
    endpoint: EndpointModel,
    prompt: EndpointPrompt,
    settings: GenerationSettings,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[TokenChunk]:
    """One streamed request (the Playground, `tunelab generate`): text as the API sends it,
    then a last chunk with the API's output token count and finish reason.

    A stream is not retried once it has started (its text is already shown); a failure
    before or during it is one line.
    """
    import openai  # deferred: only endpoint models need the client

    check_settings(settings)
    config = endpoint.config
    client = openai.OpenAI(
        base_url=config.base_url, api_key=config.api_key(), max_retries=0, timeout=config.timeout_s
    )
    prompt = routed(prompt, config.api)
    args = {
        **_request_args(prompt, config.model, settings),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    began = time.perf_counter()
    first: float | None = None
    tokens_out = 0
    finish = "stop"
    try:
        create = client.chat.completions.create if prompt.messages else client.completions.create
        stream = create(**args)
        for event in stream:
            if event.usage is not None:
                tokens_out = int(event.usage.completion_tokens)
            for choice in event.choices:
                piece = choice.delta.content if prompt.messages else choice.text  # type: ignore[union-attr]
                if choice.finish_reason is not None:
                    finish = FINISH.get(str(choice.finish_reason), "stop")
                if piece:
                    now = time.perf_counter() - began
                    first = now if first is None else first
                    yield TokenChunk(piece, now, first)
            if should_stop is not None and should_stop():
                stream.close()
                finish = "cancelled"
                break
    except openai.AuthenticationError as exc:
        raise EngineError(
            f"{config.base_url} refused the API key ({exc.status_code}); check "
            + (config.api_key_env or "--api-key-env")
        ) from exc
    except openai.APIStatusError as exc:
        raise EngineError(f"{config.base_url} rejected the request ({exc.status_code})") from exc
    except (openai.APITimeoutError, openai.APIConnectionError) as exc:
        raise EngineError(f"{config.base_url} failed: {short_cause(exc)}") from exc
    finally:
        client.close()
    yield TokenChunk("", time.perf_counter() - began, first, tokens_out, True, finish)


def endpoint_of(model: Model) -> EndpointModel | None:
    """The endpoint behind a model record, or None for a model loaded here."""
    if not is_endpoint(model):
        return None
    return EndpointModel(EndpointConfig.from_model(model), model.name)

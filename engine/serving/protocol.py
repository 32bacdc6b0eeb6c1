"""OpenAI request bodies → the prompt text and settings tunelab generates with, and back.

Kept apart from the HTTP plumbing so the mapping (the part clients depend on) is testable
without sockets. Unknown OpenAI fields that change nothing here (user, n=1, ...) are ignored,
as vLLM does; fields we cannot honour are refused with a 400 rather than silently dropped.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.engine.prompts.templates import render_prompt, variables_of

if TYPE_CHECKING:
    from tunelab.engine.generation.batched import GenerationResult
    from tunelab.engine.models.loading import LoadedModel
    from tunelab.store import PromptVersion

FINISH = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "stop"}
"""tunelab finish reasons → OpenAI's."""


@dataclass(frozen=True)
class ServeRequest:
    """One completion request, resolved: what the model sees and how it decodes."""

    kind: str
    """"chat" or "completion"."""
    prompt: str
    settings: GenerationSettings
    stream: bool
    include_usage: bool
    model: str


def _text_of(content: Any) -> str:
    """A chat message's content: a string, or OpenAI's list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise BadInputError("message content must be a string or a list of text parts")


def _settings(body: dict[str, Any], version: PromptVersion | None) -> GenerationSettings:
    base = GenerationSettings.from_version_settings(version.settings if version else None)
    changes: dict[str, Any] = {}
    if body.get("logit_bias"):
        # OpenAI keys logit_bias by token id of the server's tokenizer; tunelab's is by string.
        raise BadInputError("logit_bias is not supported by tunelab serve; remove it")
    if body.get("n", 1) not in (1, None):
        raise BadInputError("n must be 1; tunelab serve returns one choice")
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if tokens is not None:
        changes["max_new_tokens"] = tokens
    for name in ("temperature", "top_p", "seed"):
        if body.get(name) is not None:
            changes[name] = body[name]
    if body.get("stop") is not None:
        changes["stop"] = [body["stop"]] if isinstance(body["stop"], str) else body["stop"]
    return base.replace(**changes) if changes else base


def _apply_version(version: PromptVersion, text: str, loaded: LoadedModel) -> str:
    """The request text bound to the version's one template variable, rendered as eval does."""
    names = variables_of(version.template)
    if len(names) != 1:
        raise BadInputError(
            f"prompt {version.ref} has {len(names)} template variables; tunelab serve --prompt "
            "needs exactly one, which each request's text fills"
        )
    return render_prompt(version, {names[0]: text}, loaded).text


def parse_request(
    kind: str, body: Any, loaded: LoadedModel, served_name: str, version: PromptVersion | None
) -> ServeRequest:
    """Resolve a /v1/chat/completions or /v1/completions body; BadInputError becomes a 400.

    Without a prompt version a chat request goes through the model's chat template and a
    completion request's prompt is used as it is (so an evaluation rendered locally and sent
    here sees exactly the text a local run sees).
    """
    if not isinstance(body, dict):
        raise BadInputError("the request body must be a JSON object")
    model = body.get("model")
    if model not in (None, served_name):
        raise BadInputError(
            f"model {model!r} is not served here; this server serves {served_name!r}"
        )
    settings = _settings(body, version)
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadInputError("messages must be a non-empty list")
        chat = [
            {"role": str(m.get("role", "user")), "content": _text_of(m.get("content", ""))}
            for m in messages
            if isinstance(m, dict)
        ]
        if version is not None:
            users = [m["content"] for m in chat if m["role"] == "user"]
            if not users:
                raise BadInputError("--prompt serving needs a user message to fill the template")
            prompt = _apply_version(version, users[-1], loaded)
        elif getattr(loaded.tokenizer, "chat_template", None):
            prompt = str(
                loaded.tokenizer.apply_chat_template(
                    chat, tokenize=False, add_generation_prompt=True
                )
            )
        else:
            prompt = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in chat) + "<|assistant|>\n"
    else:
        raw = body.get("prompt")
        if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], str):
            raw = raw[0]
        if not isinstance(raw, str):
            raise BadInputError("prompt must be one string")
        prompt = _apply_version(version, raw, loaded) if version is not None else raw
    options = body.get("stream_options") or {}
    return ServeRequest(
        kind,
        prompt,
        settings,
        bool(body.get("stream", False)),
        bool(isinstance(options, dict) and options.get("include_usage")),
        served_name,
    )


def new_id(kind: str) -> str:
    """An OpenAI-style response id."""
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    """OpenAI's usage block."""
    return {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }


def response_body(request: ServeRequest, result: GenerationResult) -> dict[str, Any]:
    """The non-streaming response for one generated result."""
    finish = FINISH.get(result.finish_reason, "stop")
    if request.kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "finish_reason": finish,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": result.text, "finish_reason": finish, "logprobs": None}
        obj = "text_completion"
    return {
        "id": new_id(request.kind),
        "object": obj,
        "created": int(time.time()),
        "model": request.model,
        "choices": [choice],
        "usage": usage(result.tokens_in, result.tokens_out),
    }


def chunk_body(
    request: ServeRequest, response_id: str, text: str | None, finish: str | None
) -> dict[str, Any]:
    """One streamed chunk: a piece of text, or (with `finish`) the closing chunk."""
    reason = FINISH.get(finish, "stop") if finish is not None else None
    if request.kind == "chat":
        delta: dict[str, str] = {} if text is None else {"content": text}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": reason}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None}
        obj = "text_completion"
    return {
        "id": response_id,
        "object": obj,
        "created": int(time.time()),
        "model": request.model,
        "choices": [choice],
    }

"""`/v1/completions` with `echo` and `logprobs`: the log-probability of every prompt token.

This is how clients score a continuation through an OpenAI-compatible API (lm-evaluation-
harness's `local-completions` loglikelihood, tunelab's own endpoint likelihood scoring): send
prompt + continuation with `echo=true, logprobs=K, max_tokens=0 or 1` and sum the echoed
token log-probabilities that fall inside the continuation, located by `text_offset`. The
answer follows the legacy OpenAI shape (and vLLM's): `tokens`, `token_logprobs` (None for the
first token, which has no context), `top_logprobs` and `text_offset`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.prompts.templates import prompt_token_ids

if TYPE_CHECKING:
    from tunelab.engine.models.loading import LoadedModel

MAX_TOP_LOGPROBS = 5
"""As OpenAI's legacy completions API: at most five alternatives per token."""


def echo_request(body: dict[str, Any]) -> int | None:
    """The `logprobs` count of an echo request (0 is allowed), or None for an ordinary one.

    Echo is answered only as a scoring request: at most one new token, greedy.
    """
    if not body.get("echo"):
        return None
    count = body.get("logprobs")
    if count is None or isinstance(count, bool) or not isinstance(count, int):
        raise BadInputError("echo needs logprobs (an integer 0-5): tunelab serve echoes to score")
    if not 0 <= count <= MAX_TOP_LOGPROBS:
        raise BadInputError(f"logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {count}")
    tokens = body.get("max_tokens", 16)
    if tokens not in (0, 1):
        raise BadInputError("echo with logprobs scores the prompt: set max_tokens to 0 or 1")
    if body.get("stream"):
        raise BadInputError("echo with logprobs is not streamed; drop stream")
    return count


def score_prompt(loaded: LoadedModel, text: str, top: int, new_tokens: int) -> dict[str, Any]:
    """The echoed tokens of `text` with their log-probabilities, plus `new_tokens` greedy ones.

    Args:
        loaded: the served model.
        text: the prompt, exactly as the client sent it.
        top: alternatives per token in `top_logprobs` (0: none).
        new_tokens: 0 or 1 greedy tokens appended after the echo.

    Returns:
        `{"logprobs": {...}, "text": ..., "tokens_in": n, "tokens_out": m}`.
    """
    import torch  # heavy import

    tokenizer = loaded.tokenizer
    ids = prompt_token_ids(tokenizer, text)
    if not ids:
        raise BadInputError("the prompt has no tokens")
    if len(ids) + new_tokens > loaded.context_window:
        raise BadInputError(
            f"the prompt is {len(ids)} tokens, over the model's context window of "
            f"{loaded.context_window}"
        )
    with loaded.lock, torch.inference_mode():
        inputs = torch.tensor([ids], device=loaded.device)
        logits = loaded.model(input_ids=inputs).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
    all_ids = list(ids)
    token_logprobs: list[float | None] = [None]
    top_logprobs: list[dict[str, float] | None] = [None]
    for position in range(1, len(ids) + new_tokens):
        row = logprobs[position - 1]
        if position == len(ids):
            all_ids.append(int(row.argmax()))
        token_logprobs.append(float(row[all_ids[position]]))
        if top:
            values, indices = row.topk(top)
            top_logprobs.append(
                {
                    tokenizer.decode([int(i)]): float(v)
                    for v, i in zip(values.tolist(), indices.tolist(), strict=True)
                }
            )
        else:
            top_logprobs.append(None)
    tokens, offsets = _pieces(tokenizer, all_ids)
    echoed = "".join(tokens)
    return {
        "logprobs": {
            "tokens": tokens,
            "token_logprobs": token_logprobs,
            "top_logprobs": top_logprobs if top else None,
            "text_offset": offsets,
        },
        "text": echoed,
        "tokens_in": len(ids),
        "tokens_out": new_tokens,
    }


def _pieces(tokenizer: Any, ids: list[int]) -> tuple[list[str], list[int]]:
    """Each token's text and where it starts, such that the pieces join to the decoded text.

    Decoding token by token can split a multi-byte character; decoding growing prefixes and
    taking differences keeps the offsets exact for byte-level tokenizers. Special tokens
    (the BOS the tokenizer added) decode to their own text and are not part of the prompt.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    tokens: list[str] = []
    offsets: list[int] = []
    decoded = ""
    start = 1 if ids and bos is not None and ids[0] == bos else 0
    if start:
        tokens.append("")
        offsets.append(0)
    for end in range(start + 1, len(ids) + 1):
        text = tokenizer.decode(ids[start:end])
        piece = text[len(decoded) :] if text.startswith(decoded) else text
        offsets.append(len(decoded))
        tokens.append(piece)
        decoded = text if text.startswith(decoded) else decoded + piece
    return tokens, offsets

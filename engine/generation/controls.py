"""Generation settings → Hugging Face generate() controls, and stop-string text handling.

`batched.py` runs the model; this module translates a `GenerationSettings` into what
`model.generate()` takes (keyword arguments, a logit-bias processor, stopping criteria for
stop strings and cancellation) and cuts or holds back output text at stop strings. Kept apart
so the runners read as runners. Heavy imports stay inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.prompts.settings import GenerationSettings

if TYPE_CHECKING:
    from tunelab.engine.models.loading import LoadedModel


@dataclass(frozen=True)
class BiasEntry:
    """How one logit-bias string tokenizes, for previews."""

    string: str
    token_ids: list[int]
    token_strings: list[str]
    weight: float


def tokenize_bias(tokenizer: Any, logit_bias: dict[str, float]) -> list[BiasEntry]:
    """Token ids of each logit-bias string (no special tokens); refuse strings with no tokens."""
    entries = []
    for string, weight in logit_bias.items():
        ids = list(tokenizer(string, add_special_tokens=False)["input_ids"])
        if not ids:
            raise BadInputError(
                f"logit_bias string {string!r} has no tokens for this model; use visible text"
            )
        entries.append(
            BiasEntry(string, ids, list(tokenizer.convert_ids_to_tokens(ids)), float(weight))
        )
    return entries


def processors(loaded: LoadedModel, settings: GenerationSettings) -> list[Any]:
    if not settings.logit_bias:
        return []
    import torch  # heavy import
    from transformers import LogitsProcessor

    bias = torch.zeros(_vocab_size(loaded), dtype=torch.float32)
    for entry in tokenize_bias(loaded.tokenizer, settings.logit_bias):
        for token_id in set(entry.token_ids):
            bias[token_id] += entry.weight

    class LogitBias(LogitsProcessor):
        """Adds a fixed weight to chosen token ids before sampling or argmax."""

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            width = scores.shape[-1]
            row = bias[:width].to(device=scores.device, dtype=scores.dtype)
            return scores + row

    return [LogitBias()]


def _vocab_size(loaded: LoadedModel) -> int:
    embeddings = loaded.model.get_output_embeddings()
    if embeddings is not None and hasattr(embeddings, "weight"):
        return int(embeddings.weight.shape[0])
    return int(loaded.model.config.vocab_size)


def stop_string_check(loaded: LoadedModel, stops: list[str]) -> Callable[[list[int]], bool]:
    """Whether a row's generated tokens contain a stop string yet (only their last few tokens
    are decoded: a stop string ends within the tokens that made it)."""
    tokenizer = loaded.tokenizer
    if not stops:
        return lambda generated: False
    window = 4 + max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stops)

    def stopped(generated: list[int]) -> bool:
        text = tokenizer.decode(generated[-window:], skip_special_tokens=True)
        return any(stop in text for stop in stops)

    return stopped


def stopping(
    loaded: LoadedModel, prompt_len: int, stops: list[str], cancel: Callable[[], bool] | None
) -> list[Any]:
    """Stopping criteria for `generate()`: per-row stop strings and a cancel flag. Each call
    looks only at the rows it is given, so a batch may shrink between calls."""
    import torch  # heavy import
    from transformers import StoppingCriteria

    stopped = stop_string_check(loaded, stops)

    class StopOnStrings(StoppingCriteria):
        """Marks a row finished once its generated text contains a stop string."""

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            rows = input_ids[:, prompt_len:].tolist()
            return torch.tensor(
                [stopped(row) for row in rows], dtype=torch.bool, device=input_ids.device
            )

    class Cancel(StoppingCriteria):
        """Ends every row when the caller asks to stop."""

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            flag = bool(cancel and cancel())
            return torch.full(
                (input_ids.shape[0],), flag, dtype=torch.bool, device=input_ids.device
            )

    criteria: list[Any] = []
    if stops:
        criteria.append(StopOnStrings())
    if cancel is not None:
        criteria.append(Cancel())
    return criteria


def decode_processors(loaded: LoadedModel, settings: GenerationSettings) -> Any:
    """The processors `generate()` would apply, in its order, for tunelab's own decoding loop
    (prompt-learning adapters): repetition penalty, logit bias, then the sampling warpers."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    chain = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    chain.extend(processors(loaded, settings))
    if not settings.greedy:
        if settings.temperature != 1.0:
            chain.append(TemperatureLogitsWarper(settings.temperature))
        if settings.top_k > 0:
            chain.append(TopKLogitsWarper(settings.top_k))
        if settings.top_p < 1.0:
            chain.append(TopPLogitsWarper(settings.top_p))
    return chain


def generate_kwargs(loaded: LoadedModel, settings: GenerationSettings) -> dict[str, Any]:
    tokenizer = loaded.tokenizer
    eos = loaded.model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": eos,
        "repetition_penalty": settings.repetition_penalty,
        "do_sample": not settings.greedy,
    }
    if settings.greedy:
        # Unset sampling knobs a model's generation_config may carry, so greedy stays greedy.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k if settings.top_k > 0 else None,
        )
    return kwargs


def eos_ids(kwargs: dict[str, Any]) -> set[int]:
    eos = kwargs["eos_token_id"]
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, list | tuple) else {int(eos)}


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    positions = [text.find(stop) for stop in stops if stop in text]
    if not positions:
        return text, False
    return text[: min(positions)], True


def held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters could still become a stop string, so are not shown yet."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return hold

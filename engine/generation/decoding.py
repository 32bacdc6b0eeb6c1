"""Batched decoding in which finished rows leave the batch.

`generate()` keeps decoding a row after its stop string or end of sequence, feeding it padding
until the longest row is done; in an evaluation most rows finish within a few tokens while a
few run to the token limit, so most of that work is wasted. This loop prefills and decodes as
`generate()` does (same position ids, same mask, same processors, last-token logits only) and,
after each step, index-selects the rows still running out of the inputs, the attention mask,
the positions and the key/value cache. Dropping a row costs one copy of the cache, which
`generate()` pays on every step anyway (its cache grows by concatenation). A row's computation
never depends on the other rows, so greedy output is `generate()`'s.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from tunelab.engine.generation import controls
from tunelab.engine.prompts.settings import GenerationSettings

if TYPE_CHECKING:
    from tunelab.engine.models.loading import LoadedModel


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def decode_shrinking(
    loaded: LoadedModel,
    input_ids: Any,
    mask: Any,
    settings: GenerationSettings,
    kwargs: dict[str, Any],
    criteria: list[Any],
    cache: Any = None,
    cache_kwarg: str = "cache",
) -> Any:
    """Left-padded prompts → prompts followed by their generated tokens, padded after each
    row's end, exactly the tensor `generate()` returns.

    Args:
        loaded: the model to run (not a prompt-learning adapter; see `batched._decode_virtual`).
        input_ids: [rows, width] token ids; with `cache`, its first tokens are the cached ones.
        mask: [rows, width] attention mask, 0 on padding.
        settings: the generation settings (greedy or sampled, penalties, token limit).
        kwargs: `controls.generate_kwargs` for these settings (pad and end-of-sequence ids).
        criteria: `controls.stopping` criteria (stop strings, cancellation), called per step.
        cache: a key/value cache of the first tokens of every row, already one copy per row.
        cache_kwarg: what the model's forward calls its cache argument.
    """
    import torch  # heavy import

    model = loaded.model
    rows = input_ids.shape[0]
    device = input_ids.device
    pad = int(kwargs["pad_token_id"])
    eos = torch.tensor(sorted(controls.eos_ids(kwargs)), dtype=torch.long, device=device)
    chain = controls.decode_processors(loaded, settings)
    params = set(inspect.signature(type(model).forward).parameters)
    extra: dict[str, Any] = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    # generate()'s positions: count of real tokens so far, 0 on padding.
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    # generate() drops an all-ones mask (no padding anywhere), which picks the causal kernel.
    attention = None if bool((mask == 1).all()) else mask
    cached = 0 if cache is None else int(cache.get_seq_length())
    step_ids, step_positions = input_ids[:, cached:], positions[:, cached:]
    following = positions[:, -1:] + 1
    sequences = input_ids
    live = torch.arange(rows, device=device)  # the original row of each row still running
    finished: dict[int, Any] = {}
    for _ in range(settings.max_new_tokens):
        if cache is not None:
            extra[cache_kwarg] = cache
        out = model(
            input_ids=step_ids,
            attention_mask=attention,
            position_ids=step_positions,
            use_cache=True,
            **extra,
        )
        cache = _cache_of(out)
        scores = chain(sequences, out.logits[:, -1, :].to(dtype=torch.float32))
        if settings.greedy:
            chosen = scores.argmax(dim=-1)
        else:
            chosen = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[:, 0]
        sequences = torch.cat([sequences, chosen[:, None]], dim=-1)
        done = torch.isin(chosen, eos)
        for criterion in criteria:
            done |= criterion(sequences, scores)
        if bool(done.any()):
            for i in done.nonzero()[:, 0].tolist():
                finished[int(live[i])] = sequences[i]
            keep = (~done).nonzero()[:, 0]
            if keep.numel() == 0:
                break
            live, sequences, following = live[keep], sequences[keep], following[keep]
            attention = attention[keep] if attention is not None else None
            cache.batch_select_indices(keep)
            chosen = chosen[keep]
        if attention is not None:
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=-1)
        step_ids, step_positions = chosen[:, None], following
        following = following + 1
    for i, row in zip(live.tolist(), sequences, strict=True):
        finished[int(i)] = row
    length = max(len(row) for row in finished.values())
    output = torch.full((rows, length), pad, dtype=input_ids.dtype, device=device)
    for i, row in finished.items():
        output[i, : len(row)] = row
    return output

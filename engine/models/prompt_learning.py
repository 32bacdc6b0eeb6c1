"""Prefix and prompt tuning adapters run on their base model, with the virtual tokens explicit.

peft's own `generate` for prompt-learning adapters does not survive transformers' rename of
`past_key_values` to `cache` (the prefix is dropped) nor left padding (prompt tuning puts the
padding between the virtual tokens and the prompt, and positions follow the padding). So
inference never calls the peft wrapper: both methods become a cache of `count` slots in
front of every row (the prefix key/values themselves, or the key/values of the learned
embeddings run through the model), and real token j of a row sits at position `count + j`,
which is where peft's training forward puts it on right-padded rows.
torch and peft are imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.engine.errors import BadInputError

KINDS = ("prefix", "prompt")
_PEFT_TYPES = {"PREFIX_TUNING": "prefix", "PROMPT_TUNING": "prompt"}


@dataclass(frozen=True)
class VirtualTokens:
    """A prompt-learning adapter split into its base model and its virtual tokens."""

    kind: str
    """prefix | prompt."""
    count: int
    """Virtual tokens in front of every row."""
    adapter: Any
    """The peft model: only its `get_prompt` is used."""
    base: Any
    """The transformers model every forward pass runs on."""


def virtual_tokens(model: Any) -> VirtualTokens | None:
    """The virtual tokens of a peft prompt-learning model; None for any other model.

    Raises BadInputError for prompt-learning methods other than prefix and prompt tuning,
    whose inputs tunelab cannot make explicit.
    """
    config = getattr(model, "active_peft_config", None)
    if config is None or not getattr(config, "is_prompt_learning", False):
        return None
    peft_type = str(getattr(config.peft_type, "value", config.peft_type))
    kind = _PEFT_TYPES.get(peft_type)
    if kind is None:
        raise BadInputError(
            f"peft method {peft_type} is not supported for evaluation; "
            "use a lora, prefix or prompt tuning adapter"
        )
    return VirtualTokens(kind, int(config.num_virtual_tokens), model, model.get_base_model())


def virtual_cache(virtual: VirtualTokens, batch_size: int, device: Any) -> Any:
    """A DynamicCache holding the virtual tokens for `batch_size` rows (positions 0..count-1)."""
    import torch  # heavy import
    from transformers import DynamicCache

    base = virtual.base
    if virtual.kind == "prompt":
        embeds = virtual.adapter.get_prompt(batch_size=batch_size)
        embeds = embeds.to(device=device, dtype=base.get_input_embeddings().weight.dtype)
        positions = torch.arange(virtual.count, device=device).expand(batch_size, -1)
        out = base(
            inputs_embeds=embeds,
            attention_mask=torch.ones(positions.shape, dtype=torch.long, device=device),
            position_ids=positions,
            cache=DynamicCache(config=base.config),
            use_cache=True,
            logits_to_keep=1,
        )
        return output_cache(out)
    prompt = virtual.adapter.get_prompt(batch_size)
    if isinstance(prompt, DynamicCache):
        cache = prompt
    else:  # the legacy per-layer (key, value) pairs
        cache = DynamicCache(config=base.config)
        for layer, (key, value) in enumerate(prompt):
            cache.update(key, value, layer)
    layers = base.config.get_text_config(decoder=True).num_hidden_layers
    if len(cache.layers) != layers or cache.get_seq_length() != virtual.count:
        raise BadInputError(
            f"this model's architecture does not take a prefix-tuning cache ({len(cache.layers)} "
            f"of {layers} layers); use lora or prompt tuning"
        )
    return cache


def output_cache(out: Any) -> Any:
    """The key/value cache a forward pass returned, whichever name this transformers gives it
    (`cache`; `past_key_values` before the rename)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def check_supported(model: Any, device: Any) -> None:
    """Refuse, at launch, a prompt-learning adapter whose virtual tokens cannot be built."""
    virtual = virtual_tokens(model)
    if virtual is None:
        return
    import torch  # heavy import

    with torch.no_grad():
        virtual_cache(virtual, 1, device)

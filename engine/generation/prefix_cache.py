"""The prompt prefix every row of a generation shares, run once and reused by every batch.

A few-shot prompt with fixed examples repeats hundreds of tokens in every row; prefilling
them once and handing `generate()` a copy of their key/value cache per batch removes that
work from every row of every batch (the label-likelihood scorer does the same). Each batch
is then laid out as prefix · left padding · row suffix: the attention mask hides the padding
in the middle, and `generate()` derives position ids from that mask (cumulative sum), so
suffix token j of a row sits at position prefix + j exactly as it does on the plain path.
Greedy output is therefore the plain path's. Prompt-learning adapters keep the plain path:
their virtual tokens head their own cache (see `batched._decode_virtual`).

An evaluation hands rows over a chunk at a time, so the last few prefixes run are remembered
per model (`remembered`/`remember`) and a later chunk with the same prefix reuses its cache:
the prefix is prefilled once per evaluation, not once per chunk. A remembered cache is never
modified (callers copy it), and an in-place change to the weights (a training step) forgets it.
"""

from __future__ import annotations

import copy
import inspect
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.models.prompt_learning import output_cache, virtual_tokens

if TYPE_CHECKING:
    from tunelab.engine.models.loading import LoadedModel

MIN_SHARED_TOKENS = 16
"""Shorter shared prefixes are not worth a cache copy per batch."""
REMEMBERED_PER_MODEL = 4
"""Prefix caches kept per model for later calls (a 400-token one of the built-in model: 18 MB)."""

_MEMO_LOCK = threading.Lock()
_MEMO: weakref.WeakKeyDictionary[Any, list[tuple[tuple[int, ...], tuple[Any, ...], Any]]] = (
    weakref.WeakKeyDictionary()
)


def _weights_version(model: Any) -> tuple[Any, ...]:
    """The parameters' summed in-place version counters (a training step changes it), device
    and dtype: a remembered cache is only valid while all three are unchanged."""
    params = list(model.parameters())
    first = params[0] if params else None
    where = (str(first.device), str(first.dtype)) if first is not None else ()
    return (sum(int(p._version) for p in params), *where)


def remembered(model: Any, rows: list[list[int]], shared: int) -> tuple[list[int], Any] | None:
    """The longest remembered prefix (and its cache) that starts every row, leaves each row at
    least one token of its own and falls short of the `shared` tokens the rows have in common
    by fewer than `MIN_SHARED_TOKENS`; None if there is none."""
    with _MEMO_LOCK:
        entries = list(_MEMO.get(model, ()))
    if not entries or not rows:
        return None
    version = _weights_version(model)
    shortest = min(len(r) for r in rows)
    best: tuple[list[int], Any] | None = None
    for tokens, weights, cache in entries:
        n = len(tokens)
        if weights != version or n >= shortest or shared - n >= MIN_SHARED_TOKENS:
            continue
        if best is not None and n <= len(best[0]):
            continue
        if all(tuple(r[:n]) == tokens for r in rows):
            best = (list(tokens), cache)
    return best


def remember(model: Any, tokens: list[int], cache: Any) -> None:
    """Keep `cache` (of `tokens`, batch 1) for later calls on `model`; the oldest goes first."""
    entry = (tuple(tokens), _weights_version(model), cache)
    with _MEMO_LOCK:
        entries = [e for e in _MEMO.get(model, []) if e[0] != entry[0]]
        _MEMO[model] = [*entries, entry][-REMEMBERED_PER_MODEL:]


def forget_prefixes() -> None:
    """Drop every remembered prefix (for tests and benchmarks)."""
    with _MEMO_LOCK:
        _MEMO.clear()


def common_prefix(rows: list[list[int]]) -> int:
    """Tokens shared by the start of every row, leaving each row at least one of its own
    (generation needs a last prompt token to compute the first new token from)."""
    if not rows:
        return 0
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n


@dataclass(frozen=True)
class SharedPrefix:
    """The shared tokens and their key/value cache for one row."""

    tokens: list[int]
    cache: Any
    cache_kwarg: str
    """What `generate()` calls its cache argument in this transformers ("cache" or
    "past_key_values")."""

    @property
    def length(self) -> int:
        return len(self.tokens)

    def for_batch(self, rows: int) -> Any:
        """A fresh copy of the cache for `rows` rows (generate() extends the one it gets)."""
        cache = copy.deepcopy(self.cache)
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        return cache

    def layout(self, rows: list[list[int]], pad: int) -> tuple[list[list[int]], list[list[int]]]:
        """(input ids, attention mask) for full rows: prefix, then left padding, then suffix."""
        n = self.length
        width = max(len(r) for r in rows) - n
        ids = [self.tokens + [pad] * (width - len(r) + n) + r[n:] for r in rows]
        mask = [[1] * n + [0] * (width - len(r) + n) + [1] * (len(r) - n) for r in rows]
        return ids, mask


def cache_kwarg(model: Any) -> str:
    """What the model's forward calls its key/value cache argument in this transformers."""
    params = set(inspect.signature(type(model).forward).parameters)
    return "cache" if "cache" in params else "past_key_values"


def shared_prefix(loaded: LoadedModel, encoded: list[list[int]]) -> SharedPrefix | None:
    """Prefill the tokens every row starts with, or None where it would not pay (one row, a
    short shared prefix) or not apply (prompt-learning adapters)."""
    if len(encoded) < 2 or virtual_tokens(loaded.model) is not None:
        return None
    n = common_prefix(encoded)
    if n < MIN_SHARED_TOKENS:
        return None
    model = loaded.model
    kwarg = cache_kwarg(model)
    known = remembered(model, encoded, n)
    if known is not None:
        return SharedPrefix(known[0], known[1], kwarg)
    import torch  # heavy import

    params = set(inspect.signature(type(model).forward).parameters)
    extra: dict[str, Any] = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    device = loaded.device
    with loaded.lock, torch.inference_mode():
        out = model(
            input_ids=torch.tensor([encoded[0][:n]], device=device),
            attention_mask=torch.ones((1, n), dtype=torch.long, device=device),
            use_cache=True,
            **extra,
        )
    cache = output_cache(out)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        return None
    remember(model, encoded[0][:n], cache)
    return SharedPrefix(list(encoded[0][:n]), cache, kwarg)

"""Batched decoding in which finished rows leave the batch and waiting rows take their place.

`generate()` keeps decoding a row after its stop string or end of sequence, feeding it padding
until the longest row of its batch is done; in an evaluation most rows finish within a few
tokens while a few run to the token limit, so most of that work is wasted, and a batch whose
rows have nearly all finished runs its last steps for one or two rows (a decoding step of the
built-in model on CPU costs 68 ms for one row, 167 ms for 32: it reads every weight either
way). So rows decode in a pool: a finished row leaves it at once (its cache rows are
index-selected out), and once half the pool is free the next waiting rows are
prefilled and joined to it, their caches left-padded to the pool's length and the padding
masked. Rows wait in the order given (longest first), so the rows prefilled together are of
about one length and pad little.

Each row is computed as `generate()` computes it: the same position ids (counted over its
own real tokens), the same mask over its own tokens, the same processors, last-token logits
only. Its attention never sees another row's tokens or the padding, so greedy output does not
depend on which rows shared the pool. Caches that are not plain per-layer key/value tensors
(sliding windows, quantized caches) are not joined: their pool refills only once empty.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.generation import controls
from tunelab.engine.generation.prefix_cache import SharedPrefix, cache_kwarg
from tunelab.engine.models.prompt_learning import output_cache
from tunelab.engine.prompts.settings import GenerationSettings

if TYPE_CHECKING:
    from tunelab.engine.models.loading import LoadedModel

REFILL_SHARE = 2
"""Waiting rows join once 1/REFILL_SHARE of the pool is free. Prefilling a few rows at a time
runs the model on few tokens per pass (on the built-in model, 8 rows prefilled at 440 tokens/s
against 600-650 for 16 or 32), and a pool that refills late decodes short: 2 (half) was the
fastest of 4/3, 3, 2 and 4 on 256 zero-shot rows in pools of 32."""


@dataclass(frozen=True)
class FinishedRow:
    """One row out of the pool: its generated tokens (the end-of-sequence token that ended it
    included) and when it finished."""

    index: int
    tokens: list[int]
    cancelled: bool
    finished_at: float
    """`time.perf_counter()` when it left the pool."""
    shared: bool
    """Whether another row was in the pool at any step of this one (False: it ran alone)."""


def _joinable(cache: Any) -> bool:
    """Plain per-layer [rows, heads, positions, dim] tensors, which left-padding keeps valid."""
    from transformers.cache_utils import DynamicLayer

    layers = list(getattr(cache, "layers", None) or [])
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@dataclass
class _Rows:
    """Rows decoding together: the original index of each, its cache rows, its mask over the
    cached positions, the position id and token it feeds next, and its sequence so far
    (prompt, left-padded, then generated tokens) for the logits processors."""

    index: list[int]
    cache: Any
    attention: Any
    following: Any
    last: Any
    sequences: Any

    def keep(self, keep: list[int], trim: bool) -> None:
        """Only the rows at `keep`; with `trim` (plain per-layer tensors, see `_joinable`),
        positions no remaining row attends to (left padding of rows that left) are dropped."""
        import torch  # heavy import

        rows = torch.tensor(keep, dtype=torch.long, device=self.attention.device)
        self.index = [self.index[i] for i in keep]
        self.cache.batch_select_indices(rows)
        self.attention = self.attention[rows]
        self.following, self.last = self.following[rows], self.last[rows]
        self.sequences = self.sequences[rows]
        if trim:
            used = self.attention.any(dim=0).nonzero()
            lead = int(used[0, 0]) if used.numel() else 0
            if lead:
                self._trim(lead)

    def _trim(self, lead: int) -> None:
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, lead:], layer.values[:, :, lead:]
        self.attention = self.attention[:, lead:]
        self.sequences = self.sequences[:, lead:]

    def join(self, other: _Rows, pad: int) -> None:
        """Append `other`'s rows; the shorter side's positions are left-padded and masked."""
        import torch  # heavy import
        from torch.nn.functional import pad as left_pad

        mine, theirs = self.attention.shape[1], other.attention.shape[1]
        width = max(mine, theirs)

        def stacked(a: Any, b: Any, axis: int, value: float = 0.0) -> Any:
            """`a` over `b`, each left-padded on dimension `axis` (from the end) to `width`."""
            before = [0, 0] * (axis - 1)
            return torch.cat(
                [
                    left_pad(a, (*before, width - mine, 0), value=value),
                    left_pad(b, (*before, width - theirs, 0), value=value),
                ]
            )

        for a, b in zip(self.cache.layers, other.cache.layers, strict=True):
            a.keys, a.values = stacked(a.keys, b.keys, 2), stacked(a.values, b.values, 2)
        self.attention = stacked(self.attention, other.attention, 1)
        self.sequences = stacked(self.sequences, other.sequences, 1, value=pad)
        self.following = torch.cat([self.following, other.following])
        self.last = torch.cat([self.last, other.last])
        self.index = self.index + other.index


def decode_pool(
    loaded: LoadedModel,
    encoded: list[list[int]],
    waiting: list[int],
    settings: GenerationSettings,
    capacity: Callable[[int], int],
    prefix: SharedPrefix | None,
    should_stop: Callable[[], bool] | None,
    on_finished: Callable[[FinishedRow], None],
) -> None:
    """Generate for the rows `waiting` names (indices into `encoded`), at most `capacity(n)`
    at a time where n is the length of the next row to join; each row is handed to
    `on_finished` as it finishes. On `should_stop` the rows running come back cancelled with
    what they had; rows still waiting do not come back.

    Args:
        loaded: the model (not a prompt-learning adapter; see `batched._decode_virtual`).
        encoded: every row's prompt token ids.
        waiting: the rows to run, in the order they join (longest first pads least).
        settings: the generation settings (greedy or sampled, penalties, token limit, stops).
        capacity: the pool's size for a next row of the given length (at least 1).
        prefix: the tokens every row starts with, prefilled once, or None.
        should_stop: polled before every step.
        on_finished: called with each row as it leaves the pool.
    """
    import torch  # heavy import

    model, device = loaded.model, loaded.device
    kwargs = controls.generate_kwargs(loaded, settings)
    pad = int(kwargs["pad_token_id"])
    eos = torch.tensor(sorted(controls.eos_ids(kwargs)), dtype=torch.long, device=device)
    chain = controls.decode_processors(loaded, settings)
    stopped_by = controls.stop_string_check(loaded, settings.stop)
    params = set(inspect.signature(type(model).forward).parameters)
    extra: dict[str, Any] = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    kwarg = prefix.cache_kwarg if prefix is not None else cache_kwarg(model)
    queue = list(waiting)
    generated: dict[int, list[int]] = {i: [] for i in queue}
    pool: _Rows | None = None
    joinable: bool | None = None
    company: set[int] = set()  # rows that were in the pool with another at some step

    def choose(rows: _Rows, logits: Any) -> None:
        """Pick each row's next token, record it, and let finished rows leave `rows`."""
        scores = chain(rows.sequences, logits.to(dtype=torch.float32))
        if settings.greedy:
            chosen = scores.argmax(dim=-1)
        else:
            chosen = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[:, 0]
        rows.sequences = torch.cat([rows.sequences, chosen[:, None]], dim=-1)
        rows.last = chosen
        ended = torch.isin(chosen, eos).tolist()
        keep: list[int] = []
        now = time.perf_counter()
        if len(rows.index) > 1:
            company.update(rows.index)
        for j, (i, token) in enumerate(zip(rows.index, chosen.tolist(), strict=True)):
            tokens = generated[i]
            tokens.append(int(token))
            if ended[j] or len(tokens) >= settings.max_new_tokens or stopped_by(tokens):
                on_finished(FinishedRow(i, tokens, False, now, i in company))
            else:
                keep.append(j)
        if len(keep) < len(rows.index) and keep:
            rows.keep(keep, trim=bool(joinable))
        elif not keep:
            rows.index = []

    def prefill(group: list[int]) -> _Rows:
        nonlocal joinable
        rows = [encoded[i] for i in group]
        cache = None
        cached = 0
        if prefix is not None:
            id_rows, mask_rows = prefix.layout(rows, pad)
            cache, cached = prefix.for_batch(len(rows)), prefix.length
        else:
            width = max(len(r) for r in rows)
            id_rows = [[pad] * (width - len(r)) + r for r in rows]
            mask_rows = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        ids = torch.tensor(id_rows, dtype=torch.long, device=device)
        mask = torch.tensor(mask_rows, dtype=torch.long, device=device)
        # generate()'s positions: count of real tokens so far, 0 on padding.
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        step = dict(extra)
        if cache is not None:
            step[kwarg] = cache
        out = model(
            input_ids=ids[:, cached:],
            # generate() drops an all-ones mask (no padding anywhere): the causal kernel.
            attention_mask=None if bool((mask == 1).all()) else mask,
            position_ids=positions[:, cached:],
            use_cache=True,
            **step,
        )
        kept = output_cache(out)
        if joinable is None:  # the first pass says what kind of cache this model keeps
            joinable = _joinable(kept)
        joined = _Rows(list(group), kept, mask, positions[:, -1:] + 1, None, ids)
        choose(joined, out.logits[:, -1, :])
        return joined

    while queue or (pool is not None and pool.index):
        if should_stop is not None and should_stop():
            now = time.perf_counter()
            for i in pool.index if pool is not None else []:
                on_finished(FinishedRow(i, generated[i], True, now, i in company))
            return
        running = len(pool.index) if pool is not None else 0
        free = max(1, capacity(len(encoded[queue[0]]))) - running if queue else 0
        if free > 0 and (not running or (joinable and free * REFILL_SHARE >= running + free)):
            group, queue = queue[:free], queue[free:]
            joined = prefill(group)
            if not joined.index:
                continue
            if pool is None or not pool.index:
                pool = joined
            else:
                pool.join(joined, pad)
            continue
        assert pool is not None
        pool.attention = torch.cat([pool.attention, torch.ones_like(pool.attention[:, :1])], dim=-1)
        out = model(
            input_ids=pool.last[:, None],
            attention_mask=None if bool(pool.attention.all()) else pool.attention,
            position_ids=pool.following,
            use_cache=True,
            **{**extra, kwarg: pool.cache},
        )
        pool.cache = output_cache(out)
        pool.following = pool.following + 1
        choose(pool, out.logits[:, -1, :])

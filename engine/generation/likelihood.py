"""Score classification labels by their log-likelihood as the continuation of each prompt.

No generation: the prompt tokens shared by every row are run once (and remembered for the
next chunk of an evaluation, see `prefix_cache.remembered`), then each batch takes one
forward pass over its rows' own tokens followed by the label tokens. The labels' tokens are
laid out as a tree (labels that start alike share those tokens), each attending to its row
and its own earlier tokens through a 4D attention mask, so every label of every row is scored
in that same pass, with no copy of the cache per label. A label is continued with a space
when the prompt does not end in whitespace, the same rule the templates use to join a
few-shot prompt and its answer. A prefix or prompt tuning adapter's virtual tokens head that
shared cache, with the positions peft trains with.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.generation import threads
from tunelab.engine.generation.prefix_cache import (
    MIN_SHARED_TOKENS,
    common_prefix,
    remember,
    remembered,
)
from tunelab.engine.models.prompt_learning import output_cache, virtual_cache, virtual_tokens
from tunelab.engine.prompts.templates import prompt_token_ids

if TYPE_CHECKING:
    from tunelab.engine.models.loading import LoadedModel

CPU_BATCH_TOKENS = 8192
GPU_BATCH_TOKENS = 131072
MAX_BATCH = 64


@dataclass(frozen=True)
class LabelScores(Mapping[str, float]):
    """Label → summed token log-probability for one prompt; iterates like a dict of scores."""

    scores: dict[str, float]
    prediction: str
    """The label with the highest log-likelihood."""
    label_tokens: dict[str, int] = field(default_factory=dict)
    """Tokens per label continuation, e.g. to normalise by length."""
    tokens_in: int = 0

    def __getitem__(self, label: str) -> float:
        return self.scores[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)


def continuation(prompt: str, label: str) -> str:
    """The text scored after a prompt: the label, after a space unless the prompt ends in one."""
    if not prompt or prompt[-1].isspace():
        return label
    return f" {label}"


def _label_ids(tokenizer: Any, labels: list[str], spaced: bool) -> list[list[int]]:
    out = []
    for label in labels:
        ids = list(
            tokenizer(f" {label}" if spaced else label, add_special_tokens=False)["input_ids"]
        )
        if not ids:
            raise BadInputError(f"label {label!r} has no tokens for this model; check the labels")
        out.append(ids)
    return out


@dataclass(frozen=True)
class _LabelTree:
    """One label set's tokens as a tree: labels that start with the same tokens share them.

    Node n is a label token fed to the model (every label token but each label's last), at
    `depths[n]` past the prompt; `visible[n]` are the nodes it attends to (its ancestors and
    itself). Logit row 0 is the prompt's last token, row 1 + n is node n's.
    """

    tokens: list[int]
    depths: list[int]
    visible: list[list[int]]
    picks: list[list[tuple[int, int]]]
    """Per label, the (logit row, token) pairs whose log-probabilities sum to its score."""

    @classmethod
    def of(cls, label_ids: list[list[int]]) -> _LabelTree:
        index: dict[tuple[int, ...], int] = {}
        tokens: list[int] = []
        depths: list[int] = []
        visible: list[list[int]] = []
        picks: list[list[tuple[int, int]]] = []
        for ids in label_ids:
            pairs = [(0, ids[0])]
            seen: list[int] = []
            for j in range(1, len(ids)):
                key = tuple(ids[:j])
                if key not in index:
                    index[key] = len(tokens)
                    tokens.append(ids[j - 1])
                    depths.append(j - 1)
                    visible.append([*seen, len(tokens) - 1])
                node = index[key]
                seen = visible[node]
                pairs.append((1 + node, ids[j]))
            picks.append(pairs)
        return cls(tokens, depths, visible, picks)


def score_labels(
    loaded: LoadedModel,
    prompts: list[str],
    labels: list[str],
    batch_size: int | None = None,
) -> list[LabelScores]:
    """Log-likelihood of each label as the continuation of each prompt; prediction = argmax.

    Args:
        loaded: the model to score with.
        prompts: rendered prompts.
        labels: the candidate labels (at least two, distinct).
        batch_size: prompts per forward pass; None picks one from a token budget and halves it
            on out-of-memory.
    """
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise BadInputError(f"likelihood scoring needs two or more distinct labels, got {labels}")
    if not prompts:
        return []
    tokenizer = loaded.tokenizer
    encoded = [prompt_token_ids(tokenizer, p) for p in prompts]
    if any(not ids for ids in encoded):
        raise BadInputError("a prompt rendered to no tokens; check the template")
    label_sets = {
        spaced: _label_ids(tokenizer, labels, spaced)
        for spaced in {continuation(p, "x") != "x" for p in prompts}
    }
    trees = {spaced: _LabelTree.of(ids) for spaced, ids in label_sets.items()}
    spaced_rows = [continuation(p, "x") != "x" for p in prompts]
    longest_label = max(len(ids) for sets in label_sets.values() for ids in sets)
    virtual = virtual_tokens(loaded.model)
    offset = virtual.count if virtual is not None else 0
    # The peft wrapper would add its virtual tokens a second time on top of the shared cache.
    model = virtual.base if virtual is not None else loaded.model
    for i, ids in enumerate(encoded):
        if offset + len(ids) + longest_label > loaded.context_window:
            raise BadInputError(
                f"prompt {i} is {offset + len(ids)} tokens + {longest_label} label tokens, over "
                f"the model's context window of {loaded.context_window}; shorten it"
            )
    import torch  # heavy import

    threads.apply_once()
    one_pass = _takes_tree_mask(model)
    with loaded.lock, torch.inference_mode():
        prefix_len, prefix_cache = _shared_prefix(model, loaded.device, encoded, virtual, offset)
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
        budget = CPU_BATCH_TOKENS if loaded.device == "cpu" else GPU_BATCH_TOKENS
        nodes = max(len(tree.tokens) for tree in trees.values())
        # Cached tokens per row (the one pass holds each row's copy of the prefix cache).
        width = offset + len(encoded[order[0]]) + (nodes if one_pass else longest_label)
        most = budget // (width if one_pass else width * len(labels))
        size = batch_size or _even(len(order), max(1, min(MAX_BATCH, most)))
        results: list[LabelScores | None] = [None] * len(prompts)
        start = 0
        while start < len(order):
            chunk = order[start : start + size]
            try:
                if one_pass:
                    scored = _score_chunk(
                        model,
                        loaded,
                        [encoded[i] for i in chunk],
                        [trees[spaced_rows[i]] for i in chunk],
                        prefix_len,
                        prefix_cache,
                        offset,
                    )
                else:
                    scored = _score_chunk_two_passes(
                        model,
                        loaded,
                        [encoded[i] for i in chunk],
                        [label_sets[spaced_rows[i]] for i in chunk],
                        prefix_len,
                        prefix_cache,
                        offset,
                    )
            except (RuntimeError, MemoryError) as exc:
                oom = isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
                if not oom or size == 1:
                    raise EngineError(f"label scoring failed: {str(exc).splitlines()[0]}") from exc
                if loaded.device.startswith("cuda"):
                    torch.cuda.empty_cache()
                size = max(1, size // 2)
                continue
            for i, row_scores in zip(chunk, scored, strict=True):
                sets = label_sets[spaced_rows[i]]
                best = max(range(len(labels)), key=lambda k: row_scores[k])
                results[i] = LabelScores(
                    {label: row_scores[k] for k, label in enumerate(labels)},
                    labels[best],
                    {label: len(sets[k]) for k, label in enumerate(labels)},
                    len(encoded[i]),
                )
            start += len(chunk)
    return [r for r in results if r is not None]


def _even(total: int, most: int) -> int:
    """The batch size that splits `total` rows into as few batches as `most` allows, evenly."""
    batches = -(-total // most)
    return -(-total // batches)


def _takes_tree_mask(model: Any) -> bool:
    """Whether the model's attention takes a custom 4D mask (sdpa and eager attention do);
    remote-code models and fused kernels are scored in two passes instead."""
    config = getattr(model, "config", None)
    implementation = getattr(config, "_attn_implementation", None)
    return implementation in (None, "sdpa", "eager") and not getattr(config, "auto_map", None)


def _shared_prefix(
    model: Any, device: str, encoded: list[list[int]], virtual: Any, offset: int
) -> tuple[int, Any]:
    """(tokens the cache holds after the virtual ones, that cache), remembered across calls
    on a plain model."""
    prefix_len = common_prefix(encoded)
    if virtual is not None:
        cache = virtual_cache(virtual, 1, device)
        if prefix_len:
            cache = _prefix_cache(model, device, encoded[0][:prefix_len], cache, offset)
        return prefix_len, cache
    if not prefix_len:
        return 0, None
    known = remembered(model, encoded, prefix_len)
    if known is not None:
        return len(known[0]), known[1]
    cache = _prefix_cache(model, device, encoded[0][:prefix_len], None, 0)
    if len(encoded) > 1 and prefix_len >= MIN_SHARED_TOKENS:
        remember(model, encoded[0][:prefix_len], cache)
    return prefix_len, cache


def _forward_params(model: Any) -> set[str]:
    """Keyword names the model's forward accepts (unwrapping a peft model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(type(base).forward).parameters)


def _forward(model: Any, cache: Any, keep: int = 0, **kwargs: Any) -> tuple[Any, Any]:
    """One forward pass that returns (logits, cache), across transformers' cache-kwarg renames;
    `keep` > 0 computes logits for the last `keep` positions only."""
    params = _forward_params(model)
    if cache is not None:
        kwargs["cache" if "cache" in params else "past_key_values"] = cache
    if keep:
        for name in ("logits_to_keep", "num_logits_to_keep"):
            if name in params:
                kwargs[name] = keep
                break
    out = model(**kwargs)
    new_cache = output_cache(out)
    logits = out.logits[:, -keep:] if keep else out.logits
    return logits, new_cache


def _prefix_cache(model: Any, device: str, prefix: list[int], cache: Any, offset: int) -> Any:
    """The cache after the shared prompt tokens, on top of `offset` virtual tokens if any."""
    import torch  # heavy import

    ids = torch.tensor([prefix], device=device)
    return _forward(
        model,
        cache,
        keep=1,
        input_ids=ids,
        attention_mask=torch.ones((1, offset + len(prefix)), dtype=torch.long, device=device),
        position_ids=torch.arange(offset, offset + len(prefix), device=device)[None],
        use_cache=True,
    )[1]


def _score_chunk_two_passes(
    model: Any,
    loaded: LoadedModel,
    rows: list[list[int]],
    label_ids: list[list[list[int]]],
    prefix_len: int,
    prefix_cache: Any,
    offset: int,
) -> list[list[float]]:
    """Scores [row][label] for one batch: one pass over the prompts, one over the labels
    (each row's cache copied per label), for attention that takes no 4D mask.

    `prefix_cache` holds `offset` virtual tokens then the first `prefix_len` prompt tokens;
    token j of a row sits at position offset + j, padded or not.
    """
    import torch  # heavy import

    device = loaded.device
    pad = loaded.tokenizer.pad_token_id or 0
    batch = len(rows)
    suffixes = [r[prefix_len:] for r in rows]
    width = max(len(s) for s in suffixes)
    input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes], device=device)
    held = offset + prefix_len
    mask_rows = [[1] * held + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
    attention = torch.tensor(mask_rows, dtype=torch.long, device=device)
    positions = torch.tensor(
        [
            [held] * (width - len(s)) + list(range(held, offset + len(r)))
            for s, r in zip(suffixes, rows, strict=True)
        ],
        device=device,
    )
    cache = None
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(batch)
    logits, cache = _forward(
        model,
        cache,
        keep=1,
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=True,
    )
    first = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
    n_labels = len(label_ids[0])
    scores = [[float(first[b, label_ids[b][k][0]]) for k in range(n_labels)] for b in range(batch)]
    rest = max(len(ids) for per_row in label_ids for ids in per_row) - 1
    if rest == 0:
        return scores
    cache.batch_repeat_interleave(n_labels)
    feed = []
    label_mask = []
    label_pos = []
    for b in range(batch):
        for k in range(n_labels):
            tokens = label_ids[b][k][:-1]
            feed.append(tokens + [pad] * (rest - len(tokens)))
            label_mask.append(mask_rows[b] + [1] * len(tokens) + [0] * (rest - len(tokens)))
            label_pos.append([offset + len(rows[b]) + j for j in range(rest)])
    label_logits, _ = _forward(
        model,
        cache,
        input_ids=torch.tensor(feed, device=device),
        attention_mask=torch.tensor(label_mask, dtype=torch.long, device=device),
        position_ids=torch.tensor(label_pos, device=device),
        use_cache=False,
    )
    logprobs = torch.log_softmax(label_logits.float(), dim=-1)
    for b in range(batch):
        for k in range(n_labels):
            tokens = label_ids[b][k]
            row = b * n_labels + k
            for j in range(1, len(tokens)):
                scores[b][k] += float(logprobs[row, j - 1, tokens[j]])
    return scores


def _score_chunk(
    model: Any,
    loaded: LoadedModel,
    rows: list[list[int]],
    trees: list[_LabelTree],
    prefix_len: int,
    prefix_cache: Any,
    offset: int,
) -> list[list[float]]:
    """Scores [row][label] for one batch in one forward pass: each row's own tokens (left
    padded), then its label tree (right padded), under a 4D mask.

    `prefix_cache` holds `offset` virtual tokens then the first `prefix_len` prompt tokens;
    token j of a row sits at position offset + j, a tree node at offset + len(row) + depth.
    """
    import torch  # heavy import

    device = loaded.device
    pad = loaded.tokenizer.pad_token_id or 0
    batch = len(rows)
    suffixes = [r[prefix_len:] for r in rows]
    width = max(len(s) for s in suffixes)
    nodes = max(len(t.tokens) for t in trees)
    held = offset + prefix_len
    ids, positions = [], []
    for suffix, row, tree in zip(suffixes, rows, trees, strict=True):
        gap, spare = width - len(suffix), nodes - len(tree.tokens)
        end = offset + len(row)
        ids.append([pad] * gap + suffix + tree.tokens + [pad] * spare)
        positions.append(
            [held] * gap
            + list(range(held, end))
            + [end + depth for depth in tree.depths]
            + [end] * spare
        )
    span = width + nodes
    allowed = torch.zeros((batch, span, held + span), dtype=torch.bool)
    allowed[:, :, :held] = True
    lengths = torch.tensor([len(s) for s in suffixes])
    real = torch.arange(width)[None, :] >= (width - lengths)[:, None]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    allowed[:, :width, held : held + width] = causal[None] & real[:, None, :]
    allowed[:, width:, held : held + width] = real[:, None, :]
    for b, tree in enumerate(trees):
        for n, seen in enumerate(tree.visible):
            allowed[b, width + n, [held + width + m for m in seen]] = True
    # Every position sees itself, so a padding position never attends to nothing.
    every = torch.arange(span)
    allowed[:, every, held + every] = True
    dtype = model.get_input_embeddings().weight.dtype
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    cache = None
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        if batch > 1:
            cache.batch_repeat_interleave(batch)
    logits, _ = _forward(
        model,
        cache,
        keep=nodes + 1,
        input_ids=torch.tensor(ids, device=device),
        attention_mask=mask[:, None].to(device),
        position_ids=torch.tensor(positions, device=device),
        use_cache=cache is not None,
    )
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    rows_at, logits_at, tokens_at = [], [], []
    for b, tree in enumerate(trees):
        for pairs in tree.picks:
            for r, t in pairs:
                rows_at.append(b)
                logits_at.append(r)
                tokens_at.append(t)
    picked = iter(logprobs[rows_at, logits_at, tokens_at].tolist())
    scores = []
    for tree in trees:
        per_label = []
        for pairs in tree.picks:
            total = 0.0
            for _ in pairs:
                total += next(picked)
            per_label.append(total)
        scores.append(per_label)
    return scores

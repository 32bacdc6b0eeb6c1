"""Generate text: batched for evaluations, streamed for the playground.

Rows run longest first in a pool that finished rows leave and waiting rows join (see
`decoding.py`), so rows prefilled together are of about one length and little compute goes
to padding; greedy output does not depend on which rows ran together. Stop strings and
logit bias are applied per row inside generation, not after it (the controls that do so are
built in `controls.py`). Prefix and prompt tuning adapters are decoded by a loop of our own on their
base model (see `models/prompt_learning.py`), since peft's `generate` gets them wrong.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.generation import controls as controls
from tunelab.engine.generation import threads
from tunelab.engine.generation.decoding import FinishedRow, decode_pool
from tunelab.engine.generation.prefix_cache import shared_prefix
from tunelab.engine.models.prompt_learning import (
    VirtualTokens,
    output_cache,
    virtual_cache,
    virtual_tokens,
)
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.engine.prompts.templates import prompt_token_ids

if TYPE_CHECKING:
    from tunelab.engine.models.loading import LoadedModel

FINISH_REASONS = ("eos", "stop", "length", "cancelled")
CPU_BATCH_TOKENS = 6144
"""Auto batch size on CPU: rows × (prompt + new tokens) kept under this many tokens."""
GPU_BATCH_TOKENS = 65536
MAX_BATCH = 64


@dataclass(frozen=True)
class GenerationResult:
    """One row's output and what it cost."""

    text: str
    tokens_in: int
    tokens_out: int
    latency_ms: float
    """Wall time of the row's batch divided by the batch's rows (amortized cost per row); a
    batch is the rows that ran through one pool together, or one row that ran alone."""
    finish_reason: str
    """eos | stop | length | cancelled."""
    batch_ms: float = 0.0
    """Wall time of the row's whole batch."""
    batch_rows: int = 1
    """Rows in that batch."""


@dataclass(frozen=True)
class GenerationProgress:
    """Reported after each batch: the rows just finished, so callers can save them as produced."""

    done: int
    total: int
    indices: list[int]
    results: list[GenerationResult]


@dataclass(frozen=True)
class TokenChunk:
    """A piece of streamed output; the last chunk has done=True and the finish reason."""

    text: str
    elapsed_s: float
    time_to_first_token_s: float | None
    tokens_out: int = 0
    done: bool = False
    finish_reason: str | None = None


def _auto_batch_size(loaded: LoadedModel, longest: int, settings: GenerationSettings) -> int:
    budget = CPU_BATCH_TOKENS if loaded.device == "cpu" else GPU_BATCH_TOKENS
    return max(1, min(MAX_BATCH, budget // max(1, longest + settings.max_new_tokens)))


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def generate_batch(
    loaded: LoadedModel,
    prompts: list[str],
    settings: GenerationSettings,
    on_progress: Callable[[GenerationProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    batch_size: int | None = None,
    batch_limit: int | None = None,
) -> list[GenerationResult]:
    """Generate for many prompts, longest first, at most `batch_size` rows at a time; a row
    that finishes leaves the batch and a waiting one takes its place (see `decoding.py`).

    Args:
        loaded: the model to run.
        prompts: rendered prompts (see `templates.render_prompt`).
        settings: generation settings; with temperature 0 the output equals one-at-a-time.
        on_progress: called with the rows finished, once they all are (or on cancellation).
        should_stop: polled during generation; unfinished rows come back "cancelled".
        batch_size: rows decoded together; None picks the most that fit a token budget, and
            out-of-memory halves it either way.
        batch_limit: with `batch_size` None, never more rows at a time than this.

    Returns:
        One result per prompt, in the order given.
    """
    if batch_size is not None and batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
    encoded = [prompt_token_ids(loaded.tokenizer, p) for p in prompts]
    for i, ids in enumerate(encoded):
        if len(ids) + settings.max_new_tokens > loaded.context_window:
            raise BadInputError(
                f"prompt {i} is {len(ids)} tokens + {settings.max_new_tokens} new tokens, over "
                f"the model's context window of {loaded.context_window}; shorten it"
            )
    threads.apply_once()
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    if not settings.greedy:
        import torch  # heavy import

        torch.manual_seed(settings.seed)
    if virtual_tokens(loaded.model) is not None:
        results = _generate_in_batches(loaded, encoded, order, settings, should_stop, batch_size)
    else:
        results = _generate_pooled(
            loaded, encoded, order, settings, should_stop, batch_size, batch_limit
        )
    done = [i for i in range(len(prompts)) if results[i] is not None]
    if on_progress is not None and done:
        finished = [r for r in results if r is not None]
        on_progress(GenerationProgress(len(done), len(prompts), done, finished))
    return [
        r if r is not None else GenerationResult("", len(encoded[i]), 0, 0.0, "cancelled")
        for i, r in enumerate(results)
    ]


def _generate_pooled(
    loaded: LoadedModel,
    encoded: list[list[int]],
    order: list[int],
    settings: GenerationSettings,
    should_stop: Callable[[], bool] | None,
    batch_size: int | None,
    batch_limit: int | None,
) -> list[GenerationResult | None]:
    """Every row through one refilling pool; on out-of-memory the rows not yet finished run
    again in a pool half the size."""
    import torch  # heavy import

    prefix = shared_prefix(loaded, encoded)
    cap = batch_size or batch_limit or MAX_BATCH
    results: list[GenerationResult | None] = [None] * len(encoded)

    def capacity(longest: int) -> int:
        # `cap` starts at the rows asked for (or allowed) and only halves on out-of-memory.
        if batch_size is not None:
            return cap
        return min(cap, _auto_batch_size(loaded, longest, settings))

    waiting = list(order)
    while waiting:
        began = time.perf_counter()
        ran: list[FinishedRow] = []
        try:
            with loaded.lock, torch.inference_mode():
                decode_pool(
                    loaded, encoded, waiting, settings, capacity, prefix, should_stop, ran.append
                )
            waiting = []
        except (RuntimeError, MemoryError) as exc:
            if not _is_oom(exc) or capacity(len(encoded[waiting[0]])) == 1:
                raise EngineError(f"generation failed: {str(exc).splitlines()[0]}") from exc
            _empty_cache(loaded)
            cap = max(1, capacity(len(encoded[waiting[0]])) // 2)
            left = {row.index for row in ran}
            waiting = [i for i in waiting if i not in left]
        _record(loaded, encoded, settings, ran, began, results)
    return results


def _record(
    loaded: LoadedModel,
    encoded: list[list[int]],
    settings: GenerationSettings,
    ran: list[FinishedRow],
    began: float,
    results: list[GenerationResult | None],
) -> None:
    """Results of one pool's rows, in the order they finished. A row that never shared the
    pool ran alone from the previous row's end to its own: that is its latency (batch of 1).
    The others share what is left of the pool's wall time equally."""
    if not ran:
        return
    eos = controls.eos_ids(controls.generate_kwargs(loaded, settings))
    alone_ms: dict[int, float] = {}
    previous = began
    for row in ran:
        if not row.shared:
            alone_ms[row.index] = (row.finished_at - previous) * 1000
        previous = row.finished_at
    together = [row for row in ran if row.shared]
    shared_ms = (ran[-1].finished_at - began) * 1000 - sum(alone_ms.values())
    for row in ran:
        batch_ms, rows = (alone_ms[row.index], 1) if not row.shared else (shared_ms, len(together))
        results[row.index] = _result(
            loaded, len(encoded[row.index]), row.tokens, eos, settings, row.cancelled,
            max(batch_ms, 0.0), rows,
        )  # fmt: skip


def _result(
    loaded: LoadedModel,
    tokens_in: int,
    generated: list[int],
    eos_ids: set[int],
    settings: GenerationSettings,
    cancelled: bool,
    batch_ms: float,
    batch_rows: int,
) -> GenerationResult:
    """A row's text and why it ended, from the tokens generated for it."""
    finish = "length"
    kept: list[int] = []
    for token in generated:
        if token in eos_ids:
            finish = "eos"
            break
        kept.append(token)
    text = loaded.tokenizer.decode(kept, skip_special_tokens=True)
    text, stopped = controls.cut_at_stop(text, settings.stop)
    if stopped:
        finish = "stop"
    elif cancelled and finish == "length" and len(kept) < settings.max_new_tokens:
        finish = "cancelled"
    return GenerationResult(
        text, tokens_in, len(kept), batch_ms / batch_rows, finish, batch_ms, batch_rows
    )


def _generate_in_batches(
    loaded: LoadedModel,
    encoded: list[list[int]],
    order: list[int],
    settings: GenerationSettings,
    should_stop: Callable[[], bool] | None,
    batch_size: int | None,
) -> list[GenerationResult | None]:
    """Prompt-learning adapters: length-bucketed batches through `_decode_virtual`, halving
    the batch on out-of-memory."""
    results: list[GenerationResult | None] = [None] * len(encoded)
    size = batch_size or _auto_batch_size(loaded, len(encoded[order[0]]) if order else 1, settings)
    start = 0
    while start < len(order):
        if should_stop is not None and should_stop():
            break
        chunk = order[start : start + size]
        try:
            batch = _run_batch(loaded, [encoded[i] for i in chunk], settings, should_stop)
        except (RuntimeError, MemoryError) as exc:
            if not _is_oom(exc) or size == 1:
                raise EngineError(f"generation failed: {str(exc).splitlines()[0]}") from exc
            _empty_cache(loaded)
            size = max(1, size // 2)
            continue
        for i, result in zip(chunk, batch, strict=True):
            results[i] = result
        start += len(chunk)
        if batch_size is None and start < len(order):
            size = max(size, _auto_batch_size(loaded, len(encoded[order[start]]), settings))
    return results


def _empty_cache(loaded: LoadedModel) -> None:
    import torch  # heavy import

    if loaded.device.startswith("cuda"):
        torch.cuda.empty_cache()


def _run_batch(
    loaded: LoadedModel,
    rows: list[list[int]],
    settings: GenerationSettings,
    should_stop: Callable[[], bool] | None,
) -> list[GenerationResult]:
    """One left-padded batch of a prompt-learning adapter's rows."""
    import torch  # heavy import

    tokenizer = loaded.tokenizer
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    kwargs = controls.generate_kwargs(loaded, settings)
    id_rows = [[pad] * (width - len(r)) + r for r in rows]
    mask_rows = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    input_ids = torch.tensor(id_rows, dtype=torch.long).to(loaded.device)
    mask = torch.tensor(mask_rows, dtype=torch.long).to(loaded.device)
    criteria = controls.stopping(loaded, width, settings.stop, should_stop)
    from transformers import StoppingCriteriaList

    began = time.perf_counter()
    with loaded.lock, torch.inference_mode():
        output = _generate(
            loaded,
            input_ids,
            mask,
            settings,
            kwargs,
            StoppingCriteriaList(criteria) if criteria else None,
        )
    batch_ms = (time.perf_counter() - began) * 1000
    cancelled = bool(should_stop and should_stop())
    eos_ids = controls.eos_ids(kwargs)
    results = []
    for i, row in enumerate(rows):
        generated = output[i, width:].tolist()
        ended = next((n for n, token in enumerate(generated) if token in eos_ids), None)
        if ended is None and pad not in eos_ids and len(generated) < settings.max_new_tokens:
            # Padding after a row that stopped on a stop string while others went on.
            while generated and generated[-1] == pad:
                generated.pop()
        results.append(
            _result(loaded, len(row), generated, eos_ids, settings, cancelled, batch_ms, len(rows))
        )
    return results


def generate_tokens(
    loaded: LoadedModel, input_ids: Any, attention_mask: Any, settings: GenerationSettings
) -> Any:
    """Left-padded token rows → rows followed by their generated tokens (as `generate()`
    returns them), right for every method; for callers that hold token ids, not prompts."""
    kwargs = controls.generate_kwargs(loaded, settings)
    return _generate(loaded, input_ids, attention_mask, settings, kwargs, None)


def _generate(
    loaded: LoadedModel,
    input_ids: Any,
    mask: Any,
    settings: GenerationSettings,
    kwargs: dict[str, Any],
    criteria: Any,
    streamer: Any = None,
) -> Any:
    """Left-padded prompts → prompts followed by the generated tokens, as `generate()` returns."""
    virtual = virtual_tokens(loaded.model)
    if virtual is not None:
        return _decode_virtual(
            loaded, virtual, input_ids, mask, settings, kwargs, criteria, streamer
        )
    return loaded.model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        logits_processor=controls.processors(loaded, settings) or None,
        stopping_criteria=criteria,
        streamer=streamer,
        **kwargs,
    )


def _decode_virtual(
    loaded: LoadedModel,
    virtual: VirtualTokens,
    input_ids: Any,
    mask: Any,
    settings: GenerationSettings,
    kwargs: dict[str, Any],
    criteria: Any,
    streamer: Any,
) -> Any:
    """Decode on the base model behind a cache of the virtual tokens; real token j of each row
    sits at position count + j whatever its padding, so batching cannot change the output."""
    import torch  # heavy import

    rows = input_ids.shape[0]
    device = input_ids.device
    cache = virtual_cache(virtual, rows, device)
    attention = torch.cat(
        [torch.ones((rows, virtual.count), dtype=mask.dtype, device=device), mask], dim=1
    )
    positions = virtual.count + (mask.cumsum(-1) - 1).clamp(min=0)
    chain = controls.decode_processors(loaded, settings)
    eos = torch.tensor(sorted(controls.eos_ids(kwargs)), dtype=torch.long, device=device)
    pad = kwargs["pad_token_id"]
    sequences = input_ids
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    following = positions[:, -1:] + 1
    if streamer is not None:
        streamer.put(input_ids.cpu())
    step_ids, step_positions = input_ids, positions
    for _ in range(settings.max_new_tokens):
        out = virtual.base(
            input_ids=step_ids,
            attention_mask=attention,
            position_ids=step_positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = output_cache(out)
        scores = chain(sequences, out.logits[:, -1, :].float())
        if settings.greedy:
            chosen = scores.argmax(dim=-1)
        else:
            chosen = torch.multinomial(torch.softmax(scores, dim=-1), 1)[:, 0]
        chosen = torch.where(unfinished, chosen, torch.full_like(chosen, pad))
        sequences = torch.cat([sequences, chosen[:, None]], dim=1)
        if streamer is not None:
            streamer.put(chosen.cpu())
        unfinished &= ~torch.isin(chosen, eos)
        if criteria is not None:
            unfinished &= ~criteria(sequences, scores)
        if not bool(unfinished.any()):
            break
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
        step_ids, step_positions = chosen[:, None], following
        following = following + 1
    if streamer is not None:
        streamer.end()
    return sequences


def stream_generate(
    loaded: LoadedModel,
    prompt: str,
    settings: GenerationSettings,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[TokenChunk]:
    """Generate one output, yielding text as it is produced (the last chunk says why it ended).

    Generation runs in a thread that feeds a TextIteratorStreamer; closing the iterator early
    stops it. Stop strings are never shown: text that might start one is held back.
    """
    import torch  # heavy import
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    ids = prompt_token_ids(loaded.tokenizer, prompt)
    if len(ids) + settings.max_new_tokens > loaded.context_window:
        raise BadInputError(
            f"prompt is {len(ids)} tokens + {settings.max_new_tokens} new tokens, over the "
            f"model's context window of {loaded.context_window}; shorten it"
        )
    threads.apply_once()
    closed = threading.Event()

    def cancel() -> bool:
        return closed.is_set() or bool(should_stop and should_stop())

    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = controls.generate_kwargs(loaded, settings)
    criteria = controls.stopping(loaded, len(ids), settings.stop, cancel)
    failure: list[BaseException] = []
    produced: list[Any] = []

    def run() -> None:
        try:
            if not settings.greedy:
                torch.manual_seed(settings.seed)
            with loaded.lock, torch.inference_mode():
                produced.append(
                    _generate(
                        loaded,
                        torch.tensor([ids], device=loaded.device),
                        torch.ones((1, len(ids)), dtype=torch.long, device=loaded.device),
                        settings,
                        kwargs,
                        StoppingCriteriaList(criteria),
                        streamer,
                    )
                )
        except BaseException as exc:  # re-raised in the consumer's thread
            failure.append(exc)
            streamer.end()

    began = time.perf_counter()
    thread = threading.Thread(target=run, name="tunelab-stream", daemon=True)
    thread.start()
    first: float | None = None
    full = ""
    shown = 0
    stopped = False
    try:
        for piece in streamer:
            if stopped:
                continue
            full += piece
            cut, stopped = controls.cut_at_stop(full, settings.stop)
            if stopped:
                closed.set()
            end = len(cut) if stopped else len(full) - controls.held_back(full, settings.stop)
            if end > shown:
                now = time.perf_counter() - began
                first = now if first is None else first
                yield TokenChunk(full[shown:end], now, first)
                shown = end
    finally:
        closed.set()
        thread.join()
    if failure:
        exc = failure[0]
        if isinstance(exc, BadInputError | EngineError):
            raise exc
        raise EngineError(f"generation failed: {str(exc).splitlines()[0]}") from exc
    tokens_out, finish = _stream_finish(loaded, produced, len(ids), kwargs, settings)
    if stopped:
        finish = "stop"
    elif cancel() and finish == "length" and tokens_out < settings.max_new_tokens:
        finish = "cancelled"
    if not stopped and len(full) > shown:
        now = time.perf_counter() - began
        first = now if first is None else first
        yield TokenChunk(full[shown:], now, first)
    yield TokenChunk("", time.perf_counter() - began, first, tokens_out, True, finish)


def _stream_finish(
    loaded: LoadedModel,
    produced: list[Any],
    prompt_len: int,
    kwargs: dict[str, Any],
    settings: GenerationSettings,
) -> tuple[int, str]:
    if not produced:
        return 0, "cancelled"
    generated = produced[0][0, prompt_len:].tolist()
    eos_ids = controls.eos_ids(kwargs)
    for n, token in enumerate(generated):
        if token in eos_ids:
            return n, "eos"
    return len(generated), "length"

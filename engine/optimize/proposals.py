"""Instruction variants proposed by a workspace model from a few training examples.

Each proposal shows the model a different seeded handful of training rows (input and label)
and asks for one instruction; decoding is greedy and replies go through the response cache,
so the same seed proposes the same instructions again for free. Local and endpoint models
both work, through the ordinary generation path. Weak models write weak instructions: the
proposals only join the user's list, and replies that are not a usable instruction (empty,
a copy of an example, too short) are dropped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.plan import cache_key, resolve_model_arg
from tunelab.engine.models.endpoint import is_endpoint
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.engine.prompts.templates import render_prompt
from tunelab.store import CachedResponse, Dataset, PromptContent, Store

MAX_PROPOSALS = 32
SHOTS = 4
META_PROMPT = (
    "Here are examples of a task: each input with its correct answer.\n\n"
    "{{ examples }}\n\n"
    "Write one instruction, a single sentence, that tells someone how to do this task"
    "{{ answers }}. Reply with the instruction only."
)
SETTINGS = GenerationSettings(max_new_tokens=48, stop=["\n"])
MIN_WORDS = 4


@dataclass(frozen=True)
class Proposals:
    """What the proposer wrote: the usable instructions and how many replies were dropped."""

    proposer: str
    instructions: tuple[str, ...]
    dropped: int


def _meta_prompt(dataset: Dataset, rows: list[dict[str, object]]) -> PromptContent:
    reference = dataset.reference_column or ""
    blocks = []
    for row in rows:
        shown = "\n".join(f"{c}: {row.get(c, '')}" for c in dataset.input_columns)
        blocks.append(f"{shown}\nanswer: {row.get(reference, '')}")
    answers = f" (answers: {', '.join(dataset.labels)})" if dataset.labels else ""
    text = META_PROMPT.replace("{{ examples }}", "\n\n".join(blocks)).replace(
        "{{ answers }}", answers
    )
    # A template without variables: the examples are already in the text, rendered as is.
    return PromptContent(template=text.replace("{", "{{ '{' }}"), mode="chat")


def clean_proposal(reply: str, examples: list[str]) -> str | None:
    """The instruction in a reply: its first line without quotes or a leading label; None
    when that is not an instruction (too short, or it repeats an example's input)."""
    line = reply.strip().splitlines()[0].strip() if reply.strip() else ""
    for prefix in ("Instruction:", "instruction:"):
        line = line.removeprefix(prefix).strip()
    line = line.strip("\"'` ").strip()
    if len(line.split()) < MIN_WORDS or any(line in e or e in line for e in examples if e):
        return None
    return line


def propose_instructions(
    store: Store,
    dataset: Dataset,
    train_split: str,
    proposer: str,
    count: int,
    seed: int,
) -> Proposals:
    """Ask `proposer` for `count` instructions, each from its own `SHOTS` training rows.

    Args:
        store: the workspace (its response cache included).
        dataset: the task's dataset; only `train_split` is read.
        train_split: where the example rows come from.
        proposer: a model argument (`builtin`, a workspace model, an endpoint model).
        count: how many to ask for (1 to 32).
        seed: draws each proposal's example rows.
    """
    if not 1 <= count <= MAX_PROPOSALS:
        raise BadInputError(
            f"--propose-instructions must be from 1 to {MAX_PROPOSALS}, got {count}"
        )
    if not dataset.reference_column:
        raise BadInputError(
            f"dataset {dataset.name!r} has no reference column to show the proposer answers"
        )
    total = dataset.split(train_split).row_count
    if total == 0:
        raise BadInputError(f"split {train_split!r} of dataset {dataset.name!r} has no rows")
    record = resolve_model_arg(store, proposer)
    endpoint = None
    loaded = None
    if is_endpoint(record):
        from tunelab.engine.generation.endpoint import endpoint_of

        endpoint = endpoint_of(record)
        assert endpoint is not None
    else:
        from tunelab.engine.models.loading import load_model  # loads torch and transformers

        loaded = load_model(store, record)
    texts: list[str] = []
    messages: list[list[dict[str, str]]] = []
    inputs: list[str] = []
    for i in range(count):
        chosen = random.Random(f"{seed}:{i}").sample(range(total), min(SHOTS, total))
        rows = [r.data for r in store.dataset_rows(dataset.name, train_split, indices=chosen)]
        rendered = render_prompt(_meta_prompt(dataset, rows), {}, loaded, max_new_tokens=48)
        texts.append(rendered.text)
        messages.append(rendered.messages)
        inputs.extend(str(r.get(c, "")) for r in rows for c in dataset.input_columns)
    fingerprint = (
        endpoint.fingerprint if endpoint is not None else str(getattr(loaded, "fingerprint", ""))
    )
    keys = [cache_key(fingerprint, t, SETTINGS.to_dict(), "generate", []) for t in texts]
    hits = store.cached_responses(keys)
    missing = [i for i, key in enumerate(keys) if key not in hits]
    if missing:
        if endpoint is not None:
            from tunelab.engine.generation.endpoint import EndpointPrompt, generate_endpoint

            requests = [EndpointPrompt(texts[i], list(messages[i])) for i in missing]
            results = generate_endpoint(endpoint, requests, SETTINGS)
        else:
            from tunelab.engine.generation.batched import generate_batch

            assert loaded is not None
            results = generate_batch(loaded, [texts[i] for i in missing], SETTINGS)
        fresh = {
            keys[i]: CachedResponse(r.text, r.tokens_in, r.tokens_out)
            for i, r in zip(missing, results, strict=True)
            if r.finish_reason != "cancelled"
        }
        store.cache_responses(fresh)
        hits = {**hits, **fresh}
    found: list[str] = []
    for key in keys:
        cleaned = clean_proposal(hits[key].output, inputs) if key in hits else None
        if cleaned is not None and cleaned not in found:
            found.append(cleaned)
    return Proposals(record.name, tuple(found), count - len(found))

"""Putting a rubric to a judge model: the prompt it sees, and its replies, cached.

The judge is any workspace model: the built-in one, a local or fine-tuned model (loaded as
an evaluation loads it), or an endpoint model (its requests go through the same concurrent,
retried client as an endpoint evaluation). A prompt sent as text (any local model, an
endpoint in plain mode) ends with the reply's first label, "Score:" or "Better:", so even a
small model starts its reply in the format; chat messages to an endpoint cannot be primed.

Replies are kept in the response cache under the judge model, the rendered judge prompt
(rubric version, row, output) and the settings: judging the same output again with the same
judge and rubric calls no model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.judge.rubric import JUDGE_SETTING, Rubric, rubric_values
from tunelab.engine.models.endpoint import is_endpoint
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.store import CachedResponse, Model, PromptContent

if TYPE_CHECKING:
    from tunelab.engine.generation.endpoint import EndpointModel
    from tunelab.engine.models.loading import LoadedModel
    from tunelab.store import Store

CACHE_KEY_VERSION = 1
"""Bump when what a cached judge reply means changes, so old entries stop matching."""


@dataclass
class JudgeModel:
    """A workspace model ready to judge: loaded here, or an endpoint taking requests."""

    record: Model
    loaded: LoadedModel | EndpointModel

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def endpoint(self) -> bool:
        return is_endpoint(self.record)

    @property
    def fingerprint(self) -> str:
        return self.loaded.fingerprint


@dataclass(frozen=True)
class JudgePrompt:
    """One request to the judge: the text it continues, or chat messages for an endpoint;
    `primer` is the reply's start already in the text (prefixed to the reply when read)."""

    text: str
    messages: tuple[dict[str, str], ...] = ()
    primer: str = ""


@dataclass(frozen=True)
class JudgeReply:
    """The judge's whole reply (primer included) and whether it came from the cache."""

    text: str
    cached: bool
    tokens_in: int = 0
    tokens_out: int = 0


@dataclass(frozen=True)
class JudgeCase:
    """What the judge sees of one row: the row's columns, its input, an output, a reference.

    The function API for callers outside a run (a per-case assertion): build cases, then
    `ask_scores` in `scoring.py`.
    """

    input: str
    output: str
    reference: str | None = None
    row: dict[str, Any] = field(default_factory=dict)


def load_judge_model(store: Store, arg: str) -> JudgeModel:
    """Resolve a model argument (`builtin`, a workspace name, a folder) and make it ready."""
    from tunelab.engine.models.sources import resolve_model

    if not arg or not arg.strip():
        raise BadInputError("name a judge model with --judge-model (builtin, or a model name)")
    record = resolve_model(store, arg.strip())
    if is_endpoint(record):
        from tunelab.engine.generation.endpoint import endpoint_of

        endpoint = endpoint_of(record)
        assert endpoint is not None
        return JudgeModel(record, endpoint)
    from tunelab.engine.models.loading import load_model  # loads torch and transformers

    return JudgeModel(record, load_model(store, record))


def judge_settings(rubric: Rubric) -> GenerationSettings:
    """The rubric's own generation settings (greedy unless it says otherwise)."""
    return GenerationSettings.from_version_settings(generation_part(rubric.version.settings))


def generation_part(settings: dict[str, Any]) -> dict[str, Any]:
    """A rubric's settings without its scale: what generation reads."""
    return {k: v for k, v in settings.items() if k != JUDGE_SETTING}


def build_prompt(
    rubric: Rubric, judge: JudgeModel, values: dict[str, Any], instruction: str, primer: str
) -> JudgePrompt:
    """The rubric rendered with `values`, the reply format appended, primed for local models.

    Raises:
        BadInputError: the prompt and the reply's room overflow the judge's context window.
    """
    from tunelab.engine.prompts.templates import render_prompt

    version = rubric.version
    content = PromptContent(
        template=f"{version.template.rstrip()}\n\n{instruction}\n",
        system=version.system,
        mode=version.mode,
        settings=generation_part(version.settings),
    )
    if judge.endpoint:
        rendered = render_prompt(content, values, None, examples=[])
        if rendered.messages:
            return JudgePrompt(rendered.text, tuple(rendered.messages))
        return JudgePrompt(rendered.text + primer, (), primer)
    local: LoadedModel = judge.loaded  # type: ignore[assignment]
    rendered = render_prompt(content, values, local, examples=[])
    return JudgePrompt(rendered.text + primer, (), primer)


def score_prompt(rubric: Rubric, judge: JudgeModel, case: JudgeCase) -> JudgePrompt:
    """The prompt that asks the judge to score one output on the rubric's scale."""
    from tunelab.engine.judge.parsing import SCORE_LABEL, format_instruction

    values = rubric_values(case.row, case.input, case.output, case.reference)
    return build_prompt(rubric, judge, values, format_instruction(rubric.scale), SCORE_LABEL)


def pick_prompt(
    rubric: Rubric, judge: JudgeModel, case: JudgeCase, first: str, second: str
) -> JudgePrompt:
    """The prompt that asks the judge which of two outputs (shown in this order) is better:
    the rubric's `output` is both, labelled Response 1 and Response 2."""
    from tunelab.engine.judge.parsing import PICK_LABEL, pick_instruction

    both = f"Response 1:\n{first.strip()}\n\nResponse 2:\n{second.strip()}"
    values = rubric_values(case.row, case.input, both, case.reference)
    return build_prompt(rubric, judge, values, pick_instruction(), PICK_LABEL)


def cache_key(fingerprint: str, prompt: JudgePrompt, settings: GenerationSettings) -> str:
    """Key of one judge reply: judge model, the exact request and the settings (a greedy
    reply ignores the seed)."""
    relevant = settings.to_dict()
    if settings.greedy:
        relevant.pop("seed", None)
    payload = {
        "v": CACHE_KEY_VERSION,
        "kind": "judge",
        "model": fingerprint,
        "prompt": prompt.text,
        "messages": list(prompt.messages),
        "settings": relevant,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def ask(
    store: Store,
    judge: JudgeModel,
    prompts: Sequence[JudgePrompt],
    settings: GenerationSettings,
    use_cache: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> list[JudgeReply | None]:
    """The judge's replies to `prompts`, from the cache where it has them.

    Returns:
        One reply per prompt, in order; None for a prompt cut short by `should_stop`.
    """
    cacheable = use_cache and settings.greedy
    keys = [cache_key(judge.fingerprint, p, settings) for p in prompts]
    hits = store.cached_responses(keys) if cacheable else {}
    missing = [i for i, key in enumerate(keys) if key not in hits]
    fresh: dict[str, CachedResponse] = {}
    if missing:
        results = _generate(judge, [prompts[i] for i in missing], settings, should_stop)
        for i, result in zip(missing, results, strict=True):
            if result is not None:
                fresh[keys[i]] = result
        if cacheable and fresh:
            store.cache_responses(fresh)
    replies: list[JudgeReply | None] = []
    for prompt, key in zip(prompts, keys, strict=True):
        found = hits.get(key) or fresh.get(key)
        if found is None:
            replies.append(None)
            continue
        replies.append(
            JudgeReply(prompt.primer + found.output, key in hits, found.tokens_in, found.tokens_out)
        )
    return replies


def _generate(
    judge: JudgeModel,
    prompts: Sequence[JudgePrompt],
    settings: GenerationSettings,
    should_stop: Callable[[], bool] | None,
) -> list[CachedResponse | None]:
    if judge.endpoint:
        from tunelab.engine.generation.endpoint import EndpointPrompt, generate_endpoint

        endpoint: EndpointModel = judge.loaded  # type: ignore[assignment]
        requests = [EndpointPrompt(p.text, list(p.messages)) for p in prompts]
        results = generate_endpoint(endpoint, requests, settings, should_stop=should_stop)
    else:
        from tunelab.engine.generation.batched import generate_batch

        local: LoadedModel = judge.loaded  # type: ignore[assignment]
        results = generate_batch(
            local, [p.text for p in prompts], settings, should_stop=should_stop
        )
    return [
        None
        if r.finish_reason == "cancelled"
        else CachedResponse(r.text, r.tokens_in, r.tokens_out)
        for r in results
    ]

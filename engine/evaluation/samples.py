"""Self-consistency sampling: N seeded samples per row, each through the response cache.

Sample 0 is generated exactly as a single-sample run at the same seed would be (same
settings, same cache key), so it is the row's output every reader sees. Sample k > 0 uses a
seed derived from the run's seed and k, and a cache key that adds k to the row's key, so
the same seed always gives the same samples and a re-run reads them all from the cache.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation import plan as eval_plan
from tunelab.engine.evaluation.plan import EvalPlan, RowJob
from tunelab.engine.evaluation.request import EvalRequest
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.store import NewRunOutput, NewRunSample, PromptVersion, RunOutput, RunSample, Store

SEED_SPACE = 2**31
"""Derived seeds stay below this, a range every sampler accepts."""


def sample_seed(seed: int, sample: int) -> int:
    """The generation seed of sample `sample` of a run seeded with `seed`."""
    if sample == 0:
        return seed
    digest = hashlib.sha256(f"tunelab-sample:{seed}:{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_SPACE


def sample_cache_key(row_key: str, sample: int) -> str:
    """The response-cache key of one sample; the row's key (which holds the seed) for sample 0."""
    if sample == 0:
        return row_key
    return hashlib.sha256(f"{row_key}|sample={sample}".encode()).hexdigest()


def refuse_identical_samples(store: Store, request: EvalRequest) -> None:
    """Refuse `samples` > 1 that would all be the same (temperature 0, likelihood scoring),
    before anything is resolved or written."""
    samples = request.samples
    if samples == 1:
        return
    if request.scoring == "likelihood":
        raise BadInputError(
            f"--samples {samples} with likelihood scoring gives the same label every time; "
            "use --scoring generate"
        )
    prompt = request.prompt
    version = prompt if isinstance(prompt, PromptVersion) else store.get_prompt_version(prompt)
    settings = GenerationSettings.from_dict(eval_plan.merged_settings(version, request.settings))
    if settings.greedy:
        raise BadInputError(
            f"--samples {samples} at temperature 0 every sample is the same; set --temperature > 0"
        )


def sampled_plan(plan: EvalPlan, samples: int) -> EvalPlan:
    """A plan for `samples` per row: always cached, since its seed is recorded in the run's
    settings (0 unless the prompt or the request sets one), so the same seed, same samples."""
    return plan if samples == 1 else replace(plan, cacheable=True)


def seeded_plan(plan: EvalPlan, sample: int) -> EvalPlan:
    """The plan that generates sample `sample`: the same settings with that sample's seed."""
    if sample == 0:
        return plan
    settings = replace(plan.settings, seed=sample_seed(plan.settings.seed, sample))
    return replace(plan, settings=settings)


def _as_sample(output: NewRunOutput, sample: int) -> NewRunSample:
    return NewRunSample(
        row_idx=output.row_idx,
        sample_idx=sample,
        output=output.output,
        prediction=output.prediction,
        answer_found=output.answer_found,
        scores=dict(output.scores),
        latency_ms=output.latency_ms,
        tokens_in=output.tokens_in,
        tokens_out=output.tokens_out,
        cached=output.cached,
        batch_ms=output.batch_ms,
        batch_rows=output.batch_rows,
    )


def score_sampled_chunk(
    store: Store,
    plan: EvalPlan,
    loaded: Any,
    chunk: Sequence[RowJob],
    samples: int,
    should_stop: Callable[[], bool],
) -> tuple[list[NewRunOutput], list[NewRunSample], int, bool]:
    """Score every sample of a chunk of rows, one seeded generation pass per sample.

    Returns:
        (first samples, the other samples, first samples from the cache, whether the whole
        chunk was scored); a row is returned only with all of its samples.
    """
    outputs, _, complete = eval_plan.score_chunk(store, plan, loaded, chunk, should_stop)
    extra: list[NewRunSample] = []
    for sample in range(1, samples):
        if not complete:
            break
        jobs = [replace(j, cache_key=sample_cache_key(j.cache_key, sample)) for j in chunk]
        scored, _, complete = eval_plan.score_chunk(
            store, seeded_plan(plan, sample), loaded, jobs, should_stop
        )
        extra += [_as_sample(o, sample) for o in scored]
    have = Counter(s.row_idx for s in extra)
    whole = {o.row_idx for o in outputs if have[o.row_idx] == samples - 1}
    kept = [o for o in outputs if o.row_idx in whole]
    return kept, [s for s in extra if s.row_idx in whole], sum(o.cached for o in kept), complete


def samples_by_row(samples: Sequence[RunSample]) -> dict[int, list[RunSample]]:
    """A run's extra samples grouped by row index, in sample order."""
    grouped: dict[int, list[RunSample]] = {}
    for s in sorted(samples, key=lambda s: (s.row_idx, s.sample_idx)):
        grouped.setdefault(s.row_idx, []).append(s)
    return grouped


def with_sample_costs(
    outputs: Sequence[RunOutput], samples: Sequence[RunSample]
) -> list[RunOutput]:
    """Each row's cost over all of its samples, for throughput, cost and latency.

    Tokens add up over the samples. Time adds up over the generated samples; a sample taken
    from the cache is counted at the mean time of the row's generated ones (serving would
    generate it), and a row is cached only when every sample was. Single-sample rows are
    returned as they are.
    """
    grouped = samples_by_row(samples)
    costed: list[RunOutput] = []
    for out in outputs:
        extra = grouped.get(out.row_idx)
        if not extra:
            costed.append(out)
            continue
        times = [out.latency_ms] * (not out.cached) + [s.latency_ms for s in extra if not s.cached]
        count = 1 + len(extra)
        costed.append(
            replace(
                out,
                latency_ms=sum(times) / len(times) * count if times else 0.0,
                tokens_in=out.tokens_in + sum(s.tokens_in for s in extra),
                tokens_out=out.tokens_out + sum(s.tokens_out for s in extra),
                cached=not times,
            )
        )
    return costed

"""The latency probe: real per-request latency, measured apart from the batched run.

A batched run measures throughput (rows per second of batch wall time), not how long one
request takes. The probe generates a seeded sample of the run's rows again, one at a time at
batch size 1, after a warm-up request and never from the cache, timing the first token and
the whole request.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from tunelab.engine.evaluation.metrics import percentile
from tunelab.engine.evaluation.plan import EvalPlan, RowJob
from tunelab.engine.evaluation.samples import seeded_plan
from tunelab.store import ProbeRequest

DEFAULT_PROBE_REQUESTS = 20
"""Requests a probe times unless told otherwise."""
WARMUP_REQUESTS = 1
"""Untimed requests first, so the first timed one pays no one-off start-up cost."""


def probe_sample(jobs: Sequence[RowJob], requests: int, seed: int) -> list[RowJob]:
    """The rows a probe times: `requests` of them (at most all) drawn with `seed`.

    The draw is over row indices, so runs over the same rows with the same seed time the same
    rows, which lets a comparison pair them.
    """
    by_idx = {job.row.idx: job for job in jobs}
    count = min(requests, len(by_idx))
    chosen = random.Random(seed).sample(sorted(by_idx), count)
    return [by_idx[i] for i in chosen]


def run_probe(
    plan: EvalPlan,
    loaded: Any,
    jobs: Sequence[RowJob],
    requests: int,
    seed: int,
    should_stop: Callable[[], bool] | None = None,
    samples: int = 1,
) -> list[ProbeRequest]:
    """Time `requests` rows one at a time after a warm-up; stops early when `should_stop` fires.

    A self-consistency run's request is all of its `samples`, generated one after another
    with their seeds, so its latency is what serving the vote would take.

    Returns:
        the timed requests in order (fewer than asked when stopped or the run is smaller).
    """
    stop = should_stop or (lambda: False)
    sample = probe_sample(jobs, requests, seed)
    if not sample:
        return []
    for job in sample[:WARMUP_REQUESTS]:
        _time_one(plan, loaded, job)
    timed: list[ProbeRequest] = []
    for seq, job in enumerate(sample):
        if stop():
            break
        if samples == 1:
            timed.append(_time_one(plan, loaded, job, seq))
        else:
            timed.append(_time_samples(plan, loaded, job, seq, samples))
    return timed


def _time_samples(plan: EvalPlan, loaded: Any, job: RowJob, seq: int, samples: int) -> ProbeRequest:
    """One request of a vote run: every sample in turn; the first token is the first sample's."""
    parts = [_time_one(seeded_plan(plan, k), loaded, job, seq) for k in range(samples)]
    return ProbeRequest(
        seq,
        job.row.idx,
        sum(p.total_ms for p in parts),
        parts[0].ttft_ms,
        sum(p.tokens_in for p in parts),
        sum(p.tokens_out for p in parts),
    )


def _time_one(plan: EvalPlan, loaded: Any, job: RowJob, seq: int = -1) -> ProbeRequest:
    if plan.scoring == "likelihood":
        from tunelab.engine.generation.likelihood import score_labels

        began = time.perf_counter()
        score_labels(loaded, [job.prompt], list(plan.dataset.labels))
        total = (time.perf_counter() - began) * 1000
        return ProbeRequest(seq, job.row.idx, total, None, job.token_count, 0)
    from tunelab.engine.generation.batched import stream_generate

    began = time.perf_counter()
    first: float | None = None
    tokens_out = 0
    for chunk in stream_generate(loaded, job.prompt, plan.settings):
        if first is None and chunk.time_to_first_token_s is not None:
            first = chunk.time_to_first_token_s * 1000
        if chunk.done:
            tokens_out = chunk.tokens_out
    total = (time.perf_counter() - began) * 1000
    return ProbeRequest(seq, job.row.idx, total, first, job.token_count, tokens_out)


def probe_stats(requests: Sequence[ProbeRequest]) -> dict[str, float]:
    """Percentiles of a probe's request latency and time to first token, for the run's metrics."""
    if not requests:
        return {}
    totals = [r.total_ms for r in requests]
    stats = {
        "probe_requests": float(len(requests)),
        "probe_latency_p50_ms": percentile(totals, 50),
        "probe_latency_p95_ms": percentile(totals, 95),
    }
    ttfts = [r.ttft_ms for r in requests if r.ttft_ms is not None]
    if ttfts:
        stats["probe_ttft_p50_ms"] = percentile(ttfts, 50)
        stats["probe_ttft_p95_ms"] = percentile(ttfts, 95)
    return stats

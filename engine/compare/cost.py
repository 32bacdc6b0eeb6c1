"""Cost and speed of runs side by side, and when a fine-tune's training cost is repaid.

The cost model is deliberately simple so the numbers can be checked by hand: one request
occupies one GPU for its latency, so cost per request = latency * price per GPU-hour; training
costs its job's wall-clock time * max(gpus, 1) * the same price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tunelab.engine.compare.stats import percentile
from tunelab.store import Run, RunOutput, Store

DEFAULT_PRICE_PER_GPU_HOUR = 2.0
"""Default price of one GPU-hour (dollars), used for inference and training costs."""


@dataclass(frozen=True)
class RunCost:
    """Speed and cost of one run over the compared rows (cached rows left out)."""

    run_id: int
    requests_timed: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    tokens_in_per_request: float | None
    tokens_out_per_request: float | None
    tokens_per_second: float | None
    cost_per_1k_requests: float | None
    training_seconds: float | None
    training_gpu_hours: float | None
    training_cost: float
    training_note: str
    """Where the training numbers came from, or why there are none."""


@dataclass(frozen=True)
class BreakEven:
    """The request volume at which run B's total cost (training + inference) meets run A's."""

    baseline_run_id: int
    run_id: int
    extra_training_cost: float
    """B's training cost minus A's."""
    saving_per_request: float | None
    """A's inference cost per request minus B's; positive when B is cheaper to serve."""
    requests: float | None
    """Requests until the totals meet; None for never (or unknown), 0 when B is never dearer."""
    verdict: str


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        elapsed = datetime.fromisoformat(end) - datetime.fromisoformat(start)
        return max(0.0, elapsed.total_seconds())
    except ValueError:
        return None


def training_time(store: Store, model_id: int) -> tuple[float | None, float | None, str]:
    """(seconds, GPU-hours, note) of the job that trained a model; (None, None, why) otherwise."""
    model = store.get_model_by_id(model_id)
    if model.job_id is None:
        if model.base_model_id is None:
            return None, None, "base model: no training"
        return None, None, "no training job recorded for this adapter"
    job = store.get_job(model.job_id)
    seconds = _seconds_between(job.started_at, job.finished_at)
    if seconds is None:
        return None, None, f"job {job.id} has no start and finish time ({job.status})"
    gpus = max(job.gpus, 1)
    return seconds, seconds / 3600 * gpus, f"job {job.id}: {seconds:.0f} s * {gpus} GPU"


def run_cost(
    store: Store, run: Run, outputs: Sequence[RunOutput], price_per_gpu_hour: float
) -> RunCost:
    """Latency percentiles, token means, throughput and costs of a run's (non-cached) rows."""
    timed = [o for o in outputs if not o.cached]
    latencies = [o.latency_ms for o in timed]
    seconds = sum(latencies) / 1000
    n = len(timed)
    train_s, gpu_hours, note = training_time(store, run.model_id)
    mean_latency_s = seconds / n if n else None
    return RunCost(
        run_id=run.id,
        requests_timed=n,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        tokens_in_per_request=sum(o.tokens_in for o in timed) / n if n else None,
        tokens_out_per_request=sum(o.tokens_out for o in timed) / n if n else None,
        tokens_per_second=sum(o.tokens_out for o in timed) / seconds if seconds > 0 else None,
        cost_per_1k_requests=(
            None if mean_latency_s is None else mean_latency_s / 3600 * price_per_gpu_hour * 1000
        ),
        training_seconds=train_s,
        training_gpu_hours=gpu_hours,
        training_cost=(gpu_hours or 0.0) * price_per_gpu_hour,
        training_note=note,
    )


def break_even(baseline: RunCost, other: RunCost) -> BreakEven:
    """Solve train_A + n·c_A = train_B + n·c_B for n, and say who wins above it."""
    extra = other.training_cost - baseline.training_cost
    b_name, a_name = f"run {other.run_id}", f"run {baseline.run_id}"
    if baseline.cost_per_1k_requests is None or other.cost_per_1k_requests is None:
        return BreakEven(
            baseline.run_id, other.run_id, extra, None, None, "unknown: no timed requests to price"
        )
    saving = (baseline.cost_per_1k_requests - other.cost_per_1k_requests) / 1000
    if extra <= 0 and saving >= 0:
        verdict = (
            f"{b_name} is never dearer" if extra < 0 or saving > 0 else "same cost at any volume"
        )
        return BreakEven(baseline.run_id, other.run_id, extra, saving, 0.0, verdict)
    if extra >= 0 and saving <= 0:
        return BreakEven(
            baseline.run_id,
            other.run_id,
            extra,
            saving,
            None,
            f"never: {b_name} is not cheaper per request",
        )
    requests = extra / saving
    if extra > 0:
        verdict = f"{b_name}'s training cost is repaid after about {requests:,.0f} requests"
    else:
        verdict = (
            f"{a_name}'s extra training cost is repaid after about {requests:,.0f} "
            f"requests; {b_name} is cheaper below that"
        )
    return BreakEven(baseline.run_id, other.run_id, extra, saving, requests, verdict)

"""Cost and speed of runs side by side, and when a fine-tune's training cost is repaid.

Two different measurements, never mixed: **latency** is per request, from the run's latency
probe (rows generated one at a time at batch size 1); **cost** comes from **throughput**, each
row's share of its batch's wall time, priced at the hourly rate of the device the run ran on
(CPU-hour or GPU-hour; an endpoint model's run is billed by its API's token prices instead:
`api_cost.py`). Training costs its job's
wall-clock time * its device count at the rate of its device kind (GPU-hour or CPU-hour).
Prices come from the workspace config (`tunelab config`), the one place they live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tunelab.engine.compare.api_cost import api_cost
from tunelab.engine.compare.stats import percentile
from tunelab.store import Job, ProbeRequest, Run, RunOutput, Store
from tunelab.store.workspace_config import Prices

DEFAULT_PRICE_PER_GPU_HOUR = Prices().gpu_hour
"""Default price of one GPU-hour (dollars); the workspace config overrides it."""


@dataclass(frozen=True)
class RunCost:
    """Speed and cost of one run over the compared rows (cached rows left out)."""

    run_id: int
    requests_timed: int
    """Requests behind the latency figures (probe requests, or rows generated alone)."""
    latency_p50_ms: float | None
    """Per-request latency, from the latency probe; None when the run has none."""
    latency_p95_ms: float | None
    tokens_in_per_request: float | None
    tokens_out_per_request: float | None
    tokens_per_second: float | None
    """Throughput: generated tokens per second of batch wall time."""
    cost_per_1k_requests: float | None
    """From throughput (batch wall time per row), at the hourly price of the run's device."""
    training_seconds: float | None
    training_gpu_hours: float | None
    """Device-hours of training (GPU-hours, or CPU machine-hours for a CPU job)."""
    training_cost: float
    training_note: str
    """Where the training numbers came from, or why there are none."""
    latency_source: str = ""
    """Where the latency figures came from, e.g. 'probe: 20 requests at batch size 1'."""
    ttft_p50_ms: float | None = None
    """Median time to the first token, from the probe."""
    rows_per_second: float | None = None
    """Throughput: rows per second of batch wall time (what the cost is built on)."""
    training_device: str | None = None
    """'gpu' or 'cpu': which price the training was charged at."""
    cost_note: str = ""
    """Where `cost_per_1k_requests` came from: throughput at the rate of the run's device,
    or an endpoint's API token prices (`api_cost.py`)."""
    inference_device: str | None = None
    """The device the run's throughput was measured on (None: an endpoint, or not recorded)."""


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


def job_device(job: Job) -> tuple[str, int]:
    """('gpu' or 'cpu', how many) a job trained on, from its record.

    The job's progress says which memory it measured (`cuda` or the process's `rss`); a job
    configured for the CPU, or one that measured only RSS, ran on the CPU. Otherwise its GPU
    count decides (0 GPUs and no progress: the CPU).
    """
    kind = job.progress.get("memory_kind")
    if job.config.get("device") == "cpu" or kind == "rss":
        return "cpu", 1
    if kind == "cuda" or job.gpus > 0:
        return "gpu", max(job.gpus, 1)
    return "cpu", 1


def training_time(store: Store, model_id: int) -> tuple[float | None, float | None, str]:
    """(seconds, GPU-hours, note) of the job that trained a model, as if all on GPUs.

    Kept for callers that want GPU-hours; `training_cost` prices by the job's real device.
    """
    seconds, hours, note, _ = _training(store, model_id)
    return seconds, hours, note


def _training(store: Store, model_id: int) -> tuple[float | None, float | None, str, str | None]:
    model = store.get_model_by_id(model_id)
    if model.job_id is None:
        if model.base_model_id is None:
            return None, None, "base model: no training", None
        return None, None, "no training job recorded for this adapter", None
    job = store.get_job(model.job_id)
    seconds = _seconds_between(job.started_at, job.finished_at)
    if seconds is None:
        return None, None, f"job {job.id} has no start and finish time ({job.status})", None
    kind, count = job_device(job)
    unit = "GPU" if kind == "gpu" else "CPU machine"
    note = f"job {job.id}: {seconds:.0f} s * {count} {unit}"
    return seconds, seconds / 3600 * count, note, kind


def training_cost(store: Store, model_id: int, prices: Prices) -> tuple[float, str, str | None]:
    """(cost, note, device kind) of the training behind a model: device-hours * their rate."""
    _, hours, note, kind = _training(store, model_id)
    return _priced(hours, note, kind, prices)


def _priced(
    hours: float | None, note: str, kind: str | None, prices: Prices
) -> tuple[float, str, str | None]:
    if hours is None or kind is None:
        return 0.0, note, kind
    rate = prices.gpu_hour if kind == "gpu" else prices.cpu_hour
    label = "GPU-hour" if kind == "gpu" else "CPU-hour"
    return hours * rate, f"{note} at ${rate:g} per {label}", kind


def _latency(
    timed: Sequence[RunOutput], probe: Sequence[ProbeRequest]
) -> tuple[list[float], list[float], str]:
    """(request latencies, times to first token, where they came from)."""
    if probe:
        ttfts = [r.ttft_ms for r in probe if r.ttft_ms is not None]
        return [r.total_ms for r in probe], ttfts, f"probe: {len(probe)} requests at batch size 1"
    alone = [o.latency_ms for o in timed if o.batch_rows == 1]
    if alone:
        return alone, [], f"{len(alone)} rows generated at batch size 1"
    return [], [], "no latency probe: per-request latency unknown"


def run_cost(
    store: Store,
    run: Run,
    outputs: Sequence[RunOutput],
    prices: Prices | float,
    probe: Sequence[ProbeRequest] | None = None,
) -> RunCost:
    """Probe latency, throughput, token means and costs of a run's (non-cached) rows.

    Args:
        store: the workspace store (for the training job behind the run's model).
        run: the run.
        outputs: its compared rows.
        prices: the prices (a bare number is a GPU-hour price, with the default CPU-hour one).
        probe: its latency probe; None reads it from the store.
    """
    if not isinstance(prices, Prices):
        prices = Prices(gpu_hour=float(prices))
    if probe is None:
        probe = store.probe_requests(run.id)
    timed = [o for o in outputs if not o.cached]
    busy_s = sum(o.latency_ms for o in timed) / 1000
    n = len(timed)
    latencies, ttfts, source = _latency(timed, probe)
    train_s, device_hours, train_note, kind = _training(store, run.model_id)
    cost, note, kind = _priced(device_hours, train_note, kind, prices)
    share_s = busy_s / n if n and busy_s > 0 else None
    rate, served_on = inference_rate(run, prices)
    per_1k = None if share_s is None else share_s / 3600 * rate * 1000
    # An endpoint run is billed per token by its API, not per second of a machine we rent.
    billed = api_cost(store.get_model_by_id(run.model_id), outputs)
    if billed is not None:
        per_1k = billed.cost_per_1k_requests
    return RunCost(
        run_id=run.id,
        requests_timed=len(latencies),
        latency_p50_ms=percentile(latencies, 50) if latencies else None,
        latency_p95_ms=percentile(latencies, 95) if latencies else None,
        tokens_in_per_request=sum(o.tokens_in for o in timed) / n if n else None,
        tokens_out_per_request=sum(o.tokens_out for o in timed) / n if n else None,
        tokens_per_second=sum(o.tokens_out for o in timed) / busy_s if busy_s > 0 else None,
        cost_per_1k_requests=per_1k,
        training_seconds=train_s,
        training_gpu_hours=device_hours,
        training_cost=cost,
        training_note=note,
        latency_source=source,
        ttft_p50_ms=percentile(ttfts, 50) if ttfts else None,
        rows_per_second=n / busy_s if busy_s > 0 else None,
        training_device=kind,
        cost_note=billed.note if billed is not None else served_on,
        inference_device=None if billed is not None else run.device,
    )


def inference_rate(run: Run, prices: Prices) -> tuple[float, str]:
    """(price per hour, where it came from) for a run's throughput: the CPU-hour rate when
    the run's model ran on the CPU, else the GPU-hour rate (a run from before devices were
    recorded is assumed to have run on a GPU, and says so). The rates themselves head every
    cost table, so the note stays short."""
    if run.device == "cpu":
        return prices.cpu_hour, "throughput, CPU-hour price"
    if run.device is None:
        return prices.gpu_hour, "throughput, GPU-hour price (no device)"
    return prices.gpu_hour, f"throughput, GPU-hour price ({run.device})"


def break_even(baseline: RunCost, other: RunCost, worse: str | None = None) -> BreakEven:
    """Solve train_A + n·c_A = train_B + n·c_B for n, and say who wins above it.

    Args:
        baseline: run A's cost.
        other: run B's cost.
        worse: why B does not count as a replacement for A (it is significantly worse on the
            main metric); then there is no break-even and the verdict says so.
    """
    extra = other.training_cost - baseline.training_cost
    b_name, a_name = f"run {other.run_id}", f"run {baseline.run_id}"
    if worse is not None:
        return BreakEven(
            baseline.run_id, other.run_id, extra, None, None, f"no break-even: {worse}"
        )
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


def significantly_worse(
    name: str, higher_is_better: bool, delta: float, significant: bool, run_id: int
) -> str | None:
    """Why run `run_id` is no replacement on the main metric, or None when it is not worse."""
    worse = delta < 0 if higher_is_better else delta > 0
    if significant and worse:
        return f"run {run_id} is significantly worse on {name} ({delta:+.3f})"
    return None

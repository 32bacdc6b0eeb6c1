"""One run in full, for a detail view: metrics, speed figures with what each measures, the
latency probe, cached rows, and every row's input, output, extracted answer and scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunelab.store import Judgement, ProbeRequest, Run, Store
    from tunelab.store.records import RunOutput

SPEED_NOTES = {
    "probe_latency_p50_ms": "per request (latency probe, batch size 1)",
    "probe_latency_p95_ms": "per request (latency probe, batch size 1)",
    "probe_ttft_p50_ms": "time to first token (latency probe)",
    "probe_ttft_p95_ms": "time to first token (latency probe)",
    "probe_requests": "requests the latency probe timed",
    "rows_per_second": "throughput (batched; what cost is built on)",
    "batch_ms_per_row": "batch wall time per row (throughput, not a latency)",
    "tokens_per_second": "throughput (batched)",
}
"""What each speed figure measures, shown beside it so latency and throughput never mix."""


@dataclass(frozen=True)
class RunMetric:
    """One scalar metric of a run, with what it measures when it is a speed figure."""

    name: str
    value: float | int | str
    note: str = ""


@dataclass(frozen=True)
class RunDetail:
    """A run with everything its detail view shows."""

    run: Run
    metrics: list[RunMetric]
    """The run's scalar metrics; speed figures carry a note (`SPEED_NOTES`)."""
    probe: list[ProbeRequest]
    """The latency probe's timed requests, in order; empty when none was taken."""
    outputs: list[RunOutput]
    judgements: dict[int, Judgement]
    """Output id → its newest judge score, for the outputs a judge scored."""

    @property
    def cached_rows(self) -> int:
        """Rows answered from the response cache, shared with an earlier run's outputs."""
        return self.run.cached_rows


def run_metrics(run: Run) -> list[RunMetric]:
    """The run's scalar metrics (none of its declared ones when it scored no rows)."""
    out = []
    for name, value in run.metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        if run.rows_done == 0 and name in run.metric_names:
            continue
        out.append(RunMetric(name, value, SPEED_NOTES.get(name, "")))
    return out


def run_detail(store: Store, run_id: int) -> RunDetail:
    """Read one run with its outputs, probe and judge scores."""
    run = store.get_run(run_id)
    return RunDetail(
        run=run,
        metrics=run_metrics(run),
        probe=store.probe_requests(run_id),
        outputs=store.run_outputs(run_id),
        judgements=store.latest_judgements(run_id),
    )

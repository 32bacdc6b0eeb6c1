"""The remote evaluation worker: `python -m tunelab.engine.training.eval_worker SPEC`.

Runs on a compute node (the batch script starts it under `srun`). It reads the evaluation
spec from the job folder, loads the model, scores the rows in chunks through the same
`render_jobs`/`score_chunk` as a local run, and appends `started`, `outputs`, `finished`
or `failed` events to the job folder; it never opens the workspace database. SIGTERM (a
`scancel`, a time limit) stops it after the current chunk.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, cast

from tunelab.engine.evaluation.remote_spec import SpecRowStore, plan_from_spec, read_eval_spec
from tunelab.engine.training.job_events import EventWriter
from tunelab.engine.training.remote_worker_life import report_failure, report_stopped, start_worker

if TYPE_CHECKING:
    from tunelab.store import Store


def run_spec(spec_path: Path, events: EventWriter | None = None) -> int:
    """Evaluate the spec's rows, reporting through file events; returns the exit status."""
    from tunelab.engine.evaluation import plan as eval_plan
    from tunelab.engine.generation import threads
    from tunelab.engine.models.loading import load_ref

    spec = read_eval_spec(spec_path)
    folder = Path(spec.folder)
    events = events or EventWriter(folder)
    should_stop = start_worker(events, spec.stop_file, "the current chunk")
    try:
        rows = SpecRowStore(spec)
        plan = plan_from_spec(spec, rows)
        threads.measure_ahead()  # the free cores, sampled while the model loads
        loaded = load_ref(spec.ref())
        # Rendering and scoring make only the store calls `SpecRowStore` serves.
        store = cast("Store", rows)
        done = set(spec.done_rows)  # a resubmission scores only the rows the run lacks
        jobs = [j for j in eval_plan.render_jobs(store, plan, loaded) if j.row.idx not in done]
        print(f"run {spec.run_id}: {len(jobs)} rows on {loaded.name}", flush=True)
        for chunk in eval_plan.in_chunks(plan, jobs, spec.batch_size):
            if should_stop():
                break
            outputs, _, complete = eval_plan.score_chunk(
                store, plan, loaded, chunk, should_stop, spec.batch_size
            )
            events.write("outputs", outputs=[asdict(o) for o in outputs],
                         responses=rows.take_fresh())  # fmt: skip
            if not complete:
                break
        if should_stop():
            return report_stopped(events, "stopped")
        events.write("finished", rows=len(jobs))
        print(f"run {spec.run_id} evaluated", flush=True)
        return 0
    except Exception as exc:
        return report_failure(events, exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunelab-eval-remote-worker")
    parser.add_argument("spec", type=Path)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_spec(args.spec)


if __name__ == "__main__":
    sys.exit(main())

"""The detached evaluation worker: `python -m tunelab.engine.evaluation.worker RUN_ID`.

Started by `detached.start_evaluation`, which created the run. The worker evaluates the
run's rows with its recorded settings, writing each chunk to the store; SIGTERM (a cancel)
stops it after the current chunk, leaving the run interrupted and resumable. Whatever makes
it fail ends the run as failed with a one-line reason; its log holds the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.engine.errors import one_line
from tunelab.engine.evaluation.request import DEFAULT_BATCH_SIZE

if TYPE_CHECKING:
    from types import FrameType

    from tunelab.store import Store


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tunelab-eval-worker")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--latency-probe", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from tunelab.engine.evaluation.run import evaluate, resume_request
    from tunelab.store import Workspace

    stop_requested = [False]

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested[0] = True
        print("stop requested: finishing the current chunk", flush=True)

    signal.signal(signal.SIGTERM, request_stop)
    store = Workspace(args.workspace).open_store()
    run_id: int = args.run_id
    try:
        run = store.get_run(run_id)
        request = dataclasses.replace(
            resume_request(store, run, args.batch_size, args.latency_probe),
            use_cache=not args.no_cache,
        )
        print(f"evaluating run {run_id}: {run.prompt_ref} on {run.model_name}", flush=True)
        result = evaluate(store, request, should_stop=lambda: stop_requested[0])
        if result.interrupted:
            store.finish_run(
                run_id, "interrupted", result.metrics,
                f"stopped after {result.rows} of {run.rows_total} rows; resume with "
                f"`tunelab eval --resume {run_id}`",
            )  # fmt: skip
        print(f"run {run_id} {store.get_run(run_id).status}", flush=True)
        return 0
    except Exception as exc:  # any failure ends the run with its reason, never silently
        traceback.print_exc()
        if _still_ours(store, run_id):
            store.finish_run(run_id, "failed", {}, one_line(exc))
        return 1
    finally:
        store.close()


def _still_ours(store: Store, run_id: int) -> bool:
    """The run is still running in this process (not finished by the loop, not taken over)."""
    run = store.get_run(run_id)
    return run.status == "running" and run.pid == os.getpid()


if __name__ == "__main__":
    sys.exit(main())

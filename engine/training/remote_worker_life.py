"""How a compute-node worker (a Slurm evaluation or prompt search) starts, is asked to stop
and fails, as events in its job folder; the front ends turn those into the job's status."""

from __future__ import annotations

import os
import signal
import socket
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

    from tunelab.engine.training.job_events import EventWriter


@dataclass
class StopRequest:
    """Asked between units of work: SIGTERM (scancel, preemption) came, or the job folder's
    stop file exists (`jobs cancel` writes it before calling scancel)."""

    stop_file: Path
    signalled: bool = False

    def __call__(self) -> bool:
        return self.signalled or self.stop_file.exists()


def start_worker(events: EventWriter, stop_file: Path | str, finishing: str) -> StopRequest:
    """Report `started` (host, pid, Slurm job id) and take SIGTERM as a request to stop after
    `finishing` (the unit of work under way, said in the log)."""
    stop = StopRequest(Path(stop_file))

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.signalled = True
        print(f"stop requested: finishing {finishing}", flush=True)

    signal.signal(signal.SIGTERM, on_sigterm)
    events.write("started", host=socket.gethostname(), pid=os.getpid(),
                 slurm_job_id=os.environ.get("SLURM_JOB_ID"))  # fmt: skip
    return stop


def report_stopped(events: EventWriter, log_line: str) -> int:
    """Report a stop on request; returns the worker's exit status (1: not finished)."""
    events.write("stopped", message="stopped by a signal or the stop file")
    print(log_line, flush=True)
    return 1


def report_failure(events: EventWriter, exc: BaseException) -> int:
    """The failure reaches the job as one line, the log keeps the traceback; returns 1."""
    from tunelab.engine.errors import one_line

    traceback.print_exc()
    events.write("failed", error=one_line(exc))
    return 1

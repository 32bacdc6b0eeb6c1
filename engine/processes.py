"""Is a recorded process still the one we started? Shared by jobs and evaluation runs.

A pid alone can be reused after a reboot or a long time; the start time in clock ticks from
`/proc/PID/stat` and the boot id tell the original process from a newcomer with its pid.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


@dataclass(frozen=True)
class WorkerInfo:
    """Identifies a worker process beyond its pid, so a reused pid is not mistaken for it."""

    pid: int
    host: str
    start_ticks: int | None
    boot_id: str | None

    @classmethod
    def current(cls) -> WorkerInfo:
        pid = os.getpid()
        return cls(pid, socket.gethostname(), process_start_ticks(pid), boot_id())

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "start_ticks": self.start_ticks,
            "boot_id": self.boot_id,
        }


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces or parentheses; the fields follow the last ')'.
    return text[text.rfind(")") + 2 :].split()


def process_start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (Linux), None where unknown."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return not (fields and fields[0] == "Z")


def start_detached(
    command: list[str], out: IO[bytes], cwd: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start `command` so it outlives its launcher: its own session (no SIGHUP from a closed
    terminal or SSH connection), no stdin, stdout and stderr into `out`."""
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        env=env,
        cwd=str(cwd),
    )


MAX_RUNNING_ENV = "TUNELAB_MAX_RUNNING_JOBS"
JOB_WORKER_MODULES = {
    "finetune": "tunelab.engine.training.worker",
    "optimize": "tunelab.engine.optimize.worker",
}
"""The module that runs a queued job of each kind (`python -m MODULE --workspace ROOT ID`).
Jobs of every kind share one queue, and whichever worker finishes starts the next job,
whatever its kind: so the table lives here, below both, by module name."""


def max_running_jobs() -> int:
    """Jobs allowed to run at once in one workspace (1 unless the environment says more)."""
    try:
        return max(1, int(os.environ.get(MAX_RUNNING_ENV, "1")))
    except ValueError:
        return 1


def job_worker_command(root: Path, job_id: int, kind: str = "finetune") -> list[str]:
    """The command line of the worker that runs job `job_id` of `kind` in workspace `root`."""
    import sys

    module = JOB_WORKER_MODULES.get(kind)
    if module is None:
        raise ValueError(f"no worker for jobs of kind {kind!r}")
    return [sys.executable, "-m", module, "--workspace", str(root), str(job_id)]

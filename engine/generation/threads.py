"""How many threads torch runs on: the cores actually free, chosen once when a model first runs.

torch defaults to one thread per core it can see. On a shared machine that oversubscribes:
two processes each running two threads on two cores slowed an evaluation about 20 times (OpenMP
threads spin waiting for a sibling the scheduler has parked). So the first generation or
scoring call picks threads from the cores in this process's affinity set less the ones other
work keeps busy (the 1-minute load average, scaled to that set), at least 1, never more than
the set. A user's `TUNELAB_THREADS` wins; so does `OMP_NUM_THREADS`, which torch already reads.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

USER_VARIABLE = "TUNELAB_THREADS"


@dataclass(frozen=True)
class ThreadChoice:
    """What was chosen and from what, so `--verbose` can say it."""

    threads: int
    source: str
    """"auto", or the environment variable the user set."""
    cores: int
    """Cores in this process's affinity set."""
    load: float
    """The 1-minute load average of the whole machine."""

    def describe(self) -> str:
        if self.source != "auto":
            return f"torch threads: {self.threads} (from {self.source})"
        return (
            f"torch threads: {self.threads} ({self.cores} cores available to this process, "
            f"1-minute load {self.load:.2f})"
        )


def choose_threads(cores: int, machine_cores: int, load: float) -> int:
    """Threads for `cores` usable cores when the machine's `machine_cores` carry `load`.

    Other work is assumed spread evenly over the machine, so the share of it on our cores is
    load * cores / machine_cores; the rest of our cores are free. Rounded to the nearest core,
    clamped to [1, cores].
    """
    cores = max(1, cores)
    machine_cores = max(cores, machine_cores)
    busy = max(0.0, load) * cores / machine_cores
    return max(1, min(cores, int(cores - busy + 0.5)))


def _affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def thread_choice(environ: dict[str, str] | None = None) -> ThreadChoice:
    """The thread count to use now, respecting the user's environment."""
    env = os.environ if environ is None else environ
    cores = _affinity_cores()
    load = _load_average()
    for name in (USER_VARIABLE, "OMP_NUM_THREADS"):
        value = env.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return ThreadChoice(int(value), name, cores, load)
    machine = os.cpu_count() or cores
    return ThreadChoice(choose_threads(cores, machine, load), "auto", cores, load)


_LOCK = threading.Lock()
_APPLIED: list[ThreadChoice] = []


def apply_once(set_threads: Callable[[int], None] | None = None) -> ThreadChoice:
    """Choose and set torch's thread count the first time a model runs; later calls return
    that first choice. `OMP_NUM_THREADS` is left to torch, which has already applied it."""
    with _LOCK:
        if _APPLIED:
            return _APPLIED[0]
        choice = thread_choice()
        if choice.source != "OMP_NUM_THREADS":
            if set_threads is None:
                import torch  # heavy import

                set_threads = torch.set_num_threads
            set_threads(choice.threads)
        _APPLIED.append(choice)
    if os.environ.get("TUNELAB_VERBOSE") == "1":
        print(f"tunelab: {choice.describe()}", file=sys.stderr)
    return choice


def forget() -> None:
    """Let the next model run choose again (for tests)."""
    with _LOCK:
        _APPLIED.clear()

"""How many threads torch runs on: the cores actually free, chosen once when a model first runs.

torch defaults to one thread per core it can see. On a shared machine that oversubscribes:
two processes each running two threads on two cores slowed an evaluation about 20 times (OpenMP
threads spin waiting for a sibling the scheduler has parked). So the first generation or
scoring call picks threads from the cores in this process's affinity set less the ones other
work keeps busy, at least 1, never more than the set. Busy cores are measured over a short
sample of those cores' counters in /proc/stat, this process's own CPU time taken out: the
1-minute load average lags a minute behind a process that has just started (the fallback off
Linux, scaled to the set). A user's `TUNELAB_THREADS` wins; so does `OMP_NUM_THREADS`, which
torch already reads.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

USER_VARIABLE = "TUNELAB_THREADS"
SAMPLE_S = 0.2
"""How long the cores' busy counters are sampled (10 ms ticks: 20 per core)."""


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
    busy: float | None = None
    """Cores of the set other processes kept busy during the sample; None where unmeasured."""

    def describe(self) -> str:
        if self.source != "auto":
            return f"torch threads: {self.threads} (from {self.source})"
        measured = (
            f"{self.busy:.1f} of them busy with other work over {SAMPLE_S:g} s, "
            if self.busy is not None
            else ""
        )
        return (
            f"torch threads: {self.threads} ({self.cores} cores available to this process, "
            f"{measured}1-minute load {self.load:.2f})"
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


def _affinity_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return set(range(os.cpu_count() or 1))


def _cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) ticks summed over `cpus` from /proc/stat; None where it is unreadable."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = seen = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal
        ticks = [int(value) for value in fields[:8]]
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
        seen += 1
    return (busy, total) if seen else None


def busy_cores(cpus: set[int], seconds: float = SAMPLE_S) -> float | None:
    """Cores of `cpus` that other processes kept busy over the next `seconds` (this process's
    own CPU time taken out); None off Linux."""
    before = _cpu_ticks(cpus)
    if before is None:
        return None
    own, began = sum(os.times()[:2]), time.monotonic()
    time.sleep(seconds)
    after = _cpu_ticks(cpus)
    own, elapsed = sum(os.times()[:2]) - own, time.monotonic() - began
    if after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    return max(0.0, share * len(cpus) - own / max(elapsed, 1e-6))


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def thread_choice(environ: dict[str, str] | None = None) -> ThreadChoice:
    """The thread count to use now, respecting the user's environment."""
    env = os.environ if environ is None else environ
    cpus = _affinity_cpus()
    cores = len(cpus)
    load = _load_average()
    for name in (USER_VARIABLE, "OMP_NUM_THREADS"):
        value = env.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return ThreadChoice(int(value), name, cores, load)
    busy = busy_cores(cpus)
    if busy is not None:
        return ThreadChoice(choose_threads(cores, cores, busy), "auto", cores, load, busy)
    machine = os.cpu_count() or cores
    return ThreadChoice(choose_threads(cores, machine, load), "auto", cores, load)


_LOCK = threading.Lock()
_APPLIED: list[ThreadChoice] = []
_AHEAD: list[tuple[threading.Thread, list[ThreadChoice]]] = []


def measure_ahead() -> None:
    """Start measuring the free cores in the background (a model is about to load), so the
    first model run does not wait the sample out: the sample's sleep overlaps the imports and
    the weights' loading, whose CPU time is this process's own and is taken out."""
    with _LOCK:
        if _APPLIED or _AHEAD:
            return
        found: list[ThreadChoice] = []
        thread = threading.Thread(
            target=lambda: found.append(thread_choice()), name="tunelab-cores", daemon=True
        )
        _AHEAD.append((thread, found))
    thread.start()


def _measured() -> ThreadChoice:
    """The background measurement if one was started (waiting for it), else a fresh one."""
    if _AHEAD:
        thread, found = _AHEAD[0]
        thread.join()
        if found:
            return found[0]
    return thread_choice()


def apply_once(set_threads: Callable[[int], None] | None = None) -> ThreadChoice:
    """Choose and set torch's thread count the first time a model runs; later calls return
    that first choice. `OMP_NUM_THREADS` is left to torch, which has already applied it."""
    with _LOCK:
        if _APPLIED:
            return _APPLIED[0]
        choice = _measured()
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
        _AHEAD.clear()

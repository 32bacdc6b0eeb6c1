"""GPU memory and utilisation of a running job, read through NVML (`nvidia-ml-py`'s `pynvml`)
when it is installed; it is optional, so a CPU machine answers "no GPU".

A job's GPU memory is what its processes hold: the worker and, under torchrun, its children.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GpuUsage:
    """One GPU a job uses: the memory its processes hold and how busy the device is."""

    index: int
    name: str
    job_memory_mb: float
    total_memory_mb: float
    utilization_pct: int


def process_tree(pid: int) -> set[int]:
    """`pid` and every process below it (Linux `/proc/PID/task/*/children`)."""
    found, todo = {pid}, [pid]
    while todo:
        current = todo.pop()
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                kids = {int(p) for p in children.read_text().split()}
            except (OSError, ValueError):
                continue
            todo += sorted(kids - found)
            found |= kids
    return found


def job_gpu_usage(pids: Iterable[int], nvml: Any = None) -> list[GpuUsage] | None:
    """Every GPU on which one of `pids` holds memory; None when NVML is missing or finds no
    GPU. `nvml` is the `pynvml` module (passed in by tests)."""
    if nvml is None:
        try:
            import pynvml  # optional: nvidia-ml-py, present on GPU machines
        except ImportError:
            return None
        nvml = pynvml
    wanted = set(pids)
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError: no driver or no GPU
        return None
    try:
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            return None
        usage = []
        for index in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            held = [p.usedGpuMemory or 0 for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                    if p.pid in wanted]  # fmt: skip
            if not held:
                continue
            name = nvml.nvmlDeviceGetName(handle)
            usage.append(GpuUsage(
                index, name.decode() if isinstance(name, bytes) else str(name),
                sum(held) / 2**20, nvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
                int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            ))  # fmt: skip
        return usage
    finally:
        nvml.nvmlShutdown()


def gpu_usage_line(pid: int | None, nvml: Any = None) -> str:
    """`jobs show`'s GPU line for a job whose worker is `pid` on this machine."""
    usage = job_gpu_usage(process_tree(pid) if pid else set(), nvml)
    if usage is None:
        return "GPU: no GPU (or no NVML: pip install nvidia-ml-py)"
    if not usage:
        return "GPU: the job holds no GPU memory"
    return "GPU: " + "; ".join(
        f"{u.index} {u.name} {u.job_memory_mb:.0f} of {u.total_memory_mb:.0f} MB, "
        f"{u.utilization_pct}% busy"
        for u in usage
    )

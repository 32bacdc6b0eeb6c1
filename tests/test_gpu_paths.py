"""The GPU paths, checked on a CPU machine as far as one can: device placement under
torchrun, the collective's device, bf16 and SDPA choices, the 4-bit QLoRA refusals (exit 2,
nothing queued), GPU usage through a stand-in NVML, and the GPU check script's refusal.

Data parallel itself runs for real with gloo in `tests/test_jobs.py` (two processes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.tune_helpers import add_training_data
from tunelab.engine.errors import BadInputError
from tunelab.engine.training.config import TrainingConfig
from tunelab.engine.training.devices import (
    check_quantize,
    collective_backend,
    cuda_index,
    load_plan,
    process_device,
)
from tunelab.engine.training.gpu_usage import gpu_usage_line, job_gpu_usage, process_tree
from tunelab.store import Workspace

ROOT = Path(__file__).resolve().parents[1]


@given(rank=st.integers(min_value=0, max_value=63))
def test_each_torchrun_process_owns_the_gpu_of_its_local_rank(rank: int) -> None:
    for configured in ("cuda", "cuda:0", "cuda:3"):
        device = process_device(configured, str(rank))
        assert device == f"cuda:{rank}" and cuda_index(device) == rank
        assert collective_backend(device) == "nccl"
    assert process_device("cpu", str(rank)) == "cpu"
    assert collective_backend("cpu") == "gloo" and cuda_index("cpu") is None


def test_a_single_process_keeps_its_device() -> None:
    assert process_device("cuda", None) == "cuda" and cuda_index("cuda") == 0
    assert process_device("cuda:2", None) == "cuda:2" and cuda_index("cuda:2") == 2


def test_the_stop_flag_is_all_reduced_on_the_ranks_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import torch.distributed as dist

    from tunelab.engine.training import loop

    made: list[Any] = []
    real_tensor = torch.tensor

    def tensor(data: Any, device: Any = None, **kwargs: Any) -> Any:
        made.append(device)
        return real_tensor(data, **kwargs)  # this CPU machine cannot hold a CUDA tensor

    reduced: list[Any] = []
    monkeypatch.setattr(torch, "tensor", tensor)
    monkeypatch.setattr(dist, "all_reduce", lambda value, op=None: reduced.append(value))
    assert loop._any_rank(True, loop._Dist(1, 2, "cuda:1")) is True
    assert made == ["cuda:1"] and len(reduced) == 1
    assert loop._any_rank(False, loop._Dist(0, 1, "cuda:0")) is False  # one process: no collective
    assert len(reduced) == 1


def test_bf16_and_sdpa_on_cuda_only_and_never_for_full_fine_tuning() -> None:
    lora_gpu = load_plan("cuda:0", "lora", "none", bf16_supported=True)
    assert (lora_gpu.dtype, lora_gpu.attn_implementation, lora_gpu.quantize_4bit) == (
        "bfloat16",
        "sdpa",
        False,
    )
    assert load_plan("cuda:0", "lora", "none", bf16_supported=False).dtype == "float32"
    assert load_plan("cuda:0", "full", "none", bf16_supported=True).dtype == "float32"
    cpu = load_plan("cpu", "lora", "none", bf16_supported=True)
    assert (cpu.dtype, cpu.attn_implementation) == ("float32", None)
    assert load_plan("cuda", "lora", "4bit", bf16_supported=True).quantize_4bit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("4bit", "prefix", "cuda", True, True), "applies only to method lora (QLoRA), not prefix"),
        (("4bit", "lora", "cpu", True, True), "needs a CUDA GPU, not --device cpu"),
        (("4bit", "lora", "auto", True, False), "needs bitsandbytes, which is not installed"),
        (("4bit", "lora", "auto", False, True), "this machine has none"),
        (("8bit", "lora", "auto", True, True), "quantize must be one of none, 4bit"),
    ],
)
def test_quantize_refusals_are_one_line(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_quantize(*args)
    check_quantize("none", "prefix", "cpu", False, False)
    check_quantize("4bit", "lora", "auto", None, True)  # a compute node's CUDA is not known here
    check_quantize("4bit", "lora", "cuda", True, True)


def test_the_config_refuses_4bit_for_other_methods() -> None:
    with pytest.raises(BadInputError, match="applies only to method lora"):
        TrainingConfig(method="full", quantize="4bit")
    assert TrainingConfig(quantize="4bit").quantize == "4bit"


def test_tune_with_4bit_on_this_cpu_machine_exits_2_and_queues_nothing(
    workspace: Workspace,
) -> None:
    store = workspace.open_store()
    add_training_data(store, None, n_train=8, n_val=4)
    base = ("tune", "--dataset", "irony", "--prompt", "irony@1", "--quantize", "4bit")
    result = run_cli(*base, workspace=workspace)
    assert result.returncode == 2, result.stderr
    assert "--quantize 4bit needs" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    other = run_cli(*base, "--method", "prefix", workspace=workspace)
    assert other.returncode == 2 and "applies only to method lora" in other.stderr
    slurm = run_cli(*base, "--on", "slurm", "--slurm-allow-local-fs", workspace=workspace)
    assert slurm.returncode == 2 and "add --gpus-per-node 1" in slurm.stderr
    assert store.list_jobs() == []


class FakeNvml:
    """Two GPUs; this job's worker and its child hold memory on GPU 1 only."""

    def __init__(self, pids: set[int]) -> None:
        self.pids = sorted(pids)
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        if handle == 0:
            return [SimpleNamespace(pid=999_999, usedGpuMemory=5 * 2**30)]
        return [SimpleNamespace(pid=p, usedGpuMemory=2**30) for p in self.pids]

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=80 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=87)


def test_gpu_usage_counts_the_job_and_its_children_only() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import os

        tree = process_tree(os.getpid())
        assert child.pid in tree
        nvml = FakeNvml({os.getpid(), child.pid})
        usage = job_gpu_usage(tree, nvml)
        assert usage is not None and len(usage) == 1
        assert (usage[0].index, usage[0].name, usage[0].job_memory_mb) == (1, "NVIDIA H200", 2048)
        line = gpu_usage_line(os.getpid(), nvml)
        assert line == "GPU: 1 NVIDIA H200 2048 of 81920 MB, 87% busy"
        assert nvml.calls[-1] == "shutdown"
    finally:
        child.kill()
        child.wait()


def test_without_nvml_the_line_says_no_gpu() -> None:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert gpu_usage_line(12345).startswith("GPU: no GPU")
    else:
        pytest.skip("pynvml is installed here")


def test_the_gpu_check_refuses_in_one_line_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run scripts/gpu_check.py itself")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "gpu_check: no CUDA GPU here; run it on a machine with one"

"""Where a training process runs and at what precision: its device under torchrun, the dtype
and attention kernel its model loads with, and 4-bit QLoRA's preconditions.

Pure functions over plain facts (is CUDA there, does it do bf16, is bitsandbytes installed),
so every branch is tested on a CPU machine; the loop and `build_model` pass the facts in.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from tunelab.engine.errors import BadInputError
from tunelab.engine.training.config import QUANTIZE

QUANTIZED_METHODS = ("lora",)


@dataclass(frozen=True)
class LoadPlan:
    """How the model to train loads.

    Args:
        dtype: the weights' dtype name: bfloat16 (a frozen base on a GPU with bf16) or float32.
        attn_implementation: `sdpa` on CUDA (fused attention), None for the model's default.
        quantize_4bit: load the base in 4-bit NF4 through bitsandbytes (QLoRA).
    """

    dtype: str
    attn_implementation: str | None
    quantize_4bit: bool


def process_device(device: str, local_rank: str | None) -> str:
    """The device of this process: under torchrun each process owns the GPU of its local
    rank (`cuda:LOCAL_RANK`), whatever one device the config named."""
    if device.startswith("cuda") and local_rank is not None:
        return f"cuda:{int(local_rank)}"
    return device


def cuda_index(device: str) -> int | None:
    """The GPU index of a CUDA device (`cuda` is GPU 0), None off CUDA."""
    if not device.startswith("cuda"):
        return None
    _, _, index = device.partition(":")
    return int(index) if index else 0


def collective_backend(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.startswith("cuda") else "gloo"


def load_plan(device: str, method: str, quantize: str, bf16_supported: bool) -> LoadPlan:
    """The dtype, attention kernel and quantization a training process loads its model with.

    A frozen base (adapters: lora, dpo, prefix, prompt) loads in bf16 on a GPU that does bf16,
    halving its memory; peft keeps the adapter weights in float32. Full fine-tuning updates
    every weight, so it stays in float32 (pure-bf16 AdamW updates lose small steps).
    """
    on_cuda = device.startswith("cuda")
    frozen_base = method != "full"
    dtype = "bfloat16" if on_cuda and bf16_supported and frozen_base else "float32"
    return LoadPlan(dtype, "sdpa" if on_cuda else None, quantize == "4bit")


def check_quantize(
    quantize: str, method: str, device: str, cuda_available: bool | None, bitsandbytes: bool
) -> None:
    """Refuse a 4-bit QLoRA job this machine (or, with `cuda_available=None`, a compute node
    sharing this installation) cannot run, before anything is queued."""
    if quantize not in QUANTIZE:
        raise BadInputError(f"quantize must be one of {', '.join(QUANTIZE)}, not {quantize!r}")
    if quantize == "none":
        return
    if method not in QUANTIZED_METHODS:
        raise BadInputError(
            f"--quantize 4bit applies only to method lora (QLoRA), not {method}; drop it"
        )
    if device in ("cpu", "mps"):
        raise BadInputError(f"--quantize 4bit needs a CUDA GPU, not --device {device}")
    if not bitsandbytes:
        raise BadInputError(
            "--quantize 4bit needs bitsandbytes, which is not installed; "
            "`pip install bitsandbytes` on a CUDA machine, or drop --quantize"
        )
    if cuda_available is False:
        raise BadInputError(
            "--quantize 4bit needs a CUDA GPU and this machine has none; "
            "run it where one is (--on slurm --gpus-per-node 1) or drop --quantize"
        )


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None

"""The GPU check: LoRA on a small random-weight Llama, in bf16 and in 4-bit (QLoRA), through
tunelab's own load plan; checks the loss falls and the saved adapter reloads, and prints
tokens/s and peak GPU memory.

Run it on a machine with a CUDA GPU (no model download: the Llama is built from a config):

    python scripts/gpu_check.py            # bf16 LoRA, then 4-bit QLoRA when bitsandbytes is there
    python scripts/gpu_check.py --no-4bit  # bf16 only

Without a GPU (or, for 4-bit, without bitsandbytes) it refuses in one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.training.devices import bitsandbytes_installed, check_quantize, load_plan

STEPS = 30
BATCH, SEQ = 8, 128


def build_llama(folder: Path) -> Path:
    """A 4-layer Llama with random weights, saved where from_pretrained can load it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=4096, hidden_size=256, intermediate_size=688,
                         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                         max_position_embeddings=SEQ)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def load_base(folder: Path, quantize: str) -> tuple[Any, Any]:
    """The base as tunelab's trainer loads it (dtype, SDPA, 4-bit), and the plan it used."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from tunelab.engine.training.checkpoint import _four_bit_options

    plan = load_plan("cuda", "lora", quantize, torch.cuda.is_bf16_supported())
    options: dict[str, Any] = {"dtype": getattr(torch, plan.dtype)}
    if plan.attn_implementation:
        options["attn_implementation"] = plan.attn_implementation
    if plan.quantize_4bit:
        options.update(_four_bit_options("cuda:0"))
    model = AutoModelForCausalLM.from_pretrained(str(folder), **options)
    if plan.quantize_4bit:
        model = prepare_model_for_kbit_training(model)
    else:
        model.to("cuda:0")
    return model, plan


def train(folder: Path, quantize: str) -> dict[str, float]:
    """LoRA steps on one fixed random batch (memorising it must lower the loss)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.cuda.reset_peak_memory_stats()
    base, plan = load_base(folder, quantize)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=targets,
                                            task_type="CAUSAL_LM"))  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 4096, (BATCH, SEQ), generator=generator).to("cuda:0")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(STEPS):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    peak_mb = torch.cuda.max_memory_allocated() / 2**20  # training's peak, before the reload
    model.eval()
    with torch.no_grad():
        trained_logits = model(input_ids=ids[:2]).logits.float()
    with tempfile.TemporaryDirectory() as adapter_dir:
        model.save_pretrained(adapter_dir)
        del model, base
        torch.cuda.empty_cache()
        fresh, _ = load_base(folder, quantize)  # a fresh base, then the saved adapter on it
        reloaded = PeftModel.from_pretrained(fresh, adapter_dir).eval()
        with torch.no_grad():
            reloaded_logits = reloaded(input_ids=ids[:2]).logits.float()
    gap = float((trained_logits - reloaded_logits).abs().max())
    return {
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "reload_max_abs_diff": gap,
        "tokens_per_s": STEPS * BATCH * SEQ / elapsed,
        "peak_gpu_mb": peak_mb,
        "bf16": float(plan.dtype == "bfloat16"),
    }


def refusal(with_4bit: bool) -> str | None:
    """Why this machine cannot run the check, in one line; None when it can."""
    import torch

    if not torch.cuda.is_available():
        return "gpu_check: no CUDA GPU here; run it on a machine with one"
    if with_4bit:
        try:
            check_quantize("4bit", "lora", "cuda", True, bitsandbytes_installed())
        except BadInputError as exc:
            return f"gpu_check: {exc} (or pass --no-4bit)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-4bit", action="store_true", help="skip the 4-bit QLoRA run")
    args = parser.parse_args(argv)
    reason = refusal(not args.no_4bit)
    if reason:
        print(reason, file=sys.stderr)
        return 2
    import torch

    print(f"device: {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        base = build_llama(Path(folder))
        for quantize in ("none", *(() if args.no_4bit else ("4bit",))):
            r = train(base, quantize)
            # 4-bit reloads compare dequantized matmuls run twice: allow bf16-sized noise.
            ok = r["last_loss"] < r["first_loss"] * 0.9 and r["reload_max_abs_diff"] < 0.05
            failed |= not ok
            print(f"{'bf16 LoRA' if quantize == 'none' else '4-bit QLoRA'}: loss "
                  f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}, adapter reload max |diff| "
                  f"{r['reload_max_abs_diff']:.2e}, {r['tokens_per_s']:.0f} tokens/s, peak GPU "
                  f"{r['peak_gpu_mb']:.0f} MB, bf16 weights {bool(r['bf16'])}: "
                  f"{'ok' if ok else 'FAILED'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

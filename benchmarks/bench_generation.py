"""Batched generation and label scoring vs a plain per-row `model.generate` loop, in one process.

Targets: batched evaluation >= 4x the per-row loop; label-likelihood scoring >= 5x batched
generation; and tokens per second as a fraction of the machine's float32 matmul rate
(2 x parameters FLOPs per token is the compute floor).

    .venv/bin/python benchmarks/bench_generation.py [--rows 128] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tunelab.engine.generation.batched import generate_batch
from tunelab.engine.generation.likelihood import score_labels
from tunelab.engine.models.loading import load_builtin
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.engine.prompts.templates import build_prompt, prompt_token_ids
from tunelab.store import PromptVersion

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tweeteval-irony-val.jsonl"
VERSION = PromptVersion(
    id=0,
    prompt_id=0,
    prompt_name="bench",
    version=1,
    template="Is this tweet ironic? Answer irony or non_irony.\nTweet: {{ text }}\nAnswer:",
    mode="plain",
)
LABELS = ["irony", "non_irony"]


def matmul_flops(size: int = 1024, repeats: int = 10) -> float:
    """Measured float32 matmul FLOP/s: the compute ceiling a forward pass can approach."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - began)


def per_row_loop(loaded: object, prompts: list[str], max_new_tokens: int) -> tuple[float, int]:
    """The naive baseline: tokenizer + model.generate for each row, one at a time."""
    import torch

    model, tokenizer = loaded.model, loaded.tokenizer  # type: ignore[attr-defined]
    generated = 0
    began = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            inputs = tokenizer(prompt, return_tensors="pt")
            out = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            generated += out.shape[1] - inputs["input_ids"].shape[1]
    return time.perf_counter() - began, generated


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # show progress
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    import torch

    with args.data.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(args.rows), handle, strict=False)]
    loaded = load_builtin()
    prompts = [build_prompt(VERSION, row)[0] for row in rows]
    prompt_tokens = sum(len(prompt_token_ids(loaded.tokenizer, p)) for p in prompts)
    params = sum(p.numel() for p in loaded.model.parameters())
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    print(
        f"{len(prompts)} rows, {prompt_tokens} prompt tokens, {params / 1e6:.0f}M parameters, "
        f"{torch.get_num_threads()} threads, device {loaded.device}"
    )

    flops = matmul_flops()
    print(f"float32 matmul: {flops / 1e9:.1f} GFLOP/s")

    generate_batch(loaded, prompts[:2], settings)  # warm-up
    began = time.perf_counter()
    results = generate_batch(loaded, prompts, settings, batch_size=args.batch_size)
    batched_s = time.perf_counter() - began
    out_tokens = sum(r.tokens_out for r in results)

    began = time.perf_counter()
    scores = score_labels(loaded, prompts, LABELS)
    scoring_s = time.perf_counter() - began
    accuracy = sum(s.prediction == row["label"] for s, row in zip(scores, rows, strict=True))

    loop_s, loop_tokens = per_row_loop(loaded, prompts, args.max_new_tokens)
    flops_after = matmul_flops()

    def fraction(tokens: int, seconds: float) -> float:
        return tokens * 2 * params / seconds / ((flops + flops_after) / 2)

    print(f"matmul again:   {flops_after / 1e9:.1f} GFLOP/s (load drift check)")
    print(f"per-row loop:   {loop_s:7.1f} s  ({loop_tokens} new tokens)")
    print(
        f"batched:        {batched_s:7.1f} s  ({out_tokens} new tokens)  "
        f"speedup {loop_s / batched_s:.1f}x (target >= 4x)"
    )
    print(
        f"label scoring:  {scoring_s:7.1f} s  ({accuracy}/{len(rows)} correct)  "
        f"{batched_s / scoring_s:.1f}x faster than batched generation (target >= 5x), "
        f"{loop_s / scoring_s:.1f}x faster than the loop"
    )
    processed = prompt_tokens + out_tokens
    print(
        f"batched:  {out_tokens / batched_s:.1f} new tok/s, {processed / batched_s:.0f} "
        f"processed tok/s = {fraction(processed, batched_s):.0%} of the matmul floor"
    )
    print(
        f"loop:     {loop_tokens / loop_s:.1f} new tok/s, "
        f"{(prompt_tokens + loop_tokens) / loop_s:.0f} processed tok/s = "
        f"{fraction(prompt_tokens + loop_tokens, loop_s):.0%} of the matmul floor"
    )
    print(
        f"scoring:  {prompt_tokens / scoring_s:.0f} prompt tok/s = "
        f"{fraction(prompt_tokens, scoring_s):.0%} of the matmul floor"
    )


if __name__ == "__main__":
    main()

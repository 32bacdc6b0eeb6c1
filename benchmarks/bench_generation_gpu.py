"""tunelab's pooled generation on a GPU, against Hugging Face `generate()`, in one process.

For a GPU machine without network: the model is a random-weight Llama built from a config
(about 0.9 B parameters by default; no download), the tokenizer a word-level one over the
model's vocabulary built in memory, the prompts random token strings of 16 to 255 tokens.
There is no end-of-sequence token, so every row generates --new-tokens tokens on both sides:
equal work, a comparison of throughput (the refilling pool's gain on rows that stop early is
measured on real rows by `bench_eval_harness.py`).

Printed, each in tokens/s of generated tokens and as a share of the GPU's measured bf16
matmul rate (2 FLOPs per weight per processed token, the input embedding left out):
- tunelab's `generate_batch` (the refilling pool, SDPA, bf16);
- `generate()` in batches of --batch-size (padding decoded after a row's end);
- with --static: `generate()` with a static cache and `torch.compile` (warm-up excluded),
  to see whether they pay at this size.

    python benchmarks/bench_generation_gpu.py [--rows 256] [--batch-size 32] [--static]
    python benchmarks/bench_generation_gpu.py --tiny      # a 2-layer model: a CPU smoke run
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from tunelab.engine.generation.batched import generate_batch
from tunelab.engine.models.loading import LoadedModel
from tunelab.engine.prompts.settings import GenerationSettings


def _tokenizer(vocab: int) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"w{i}": i for i in range(vocab)}
    core = Tokenizer(models.WordLevel(words, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="w0")
    tokenizer.add_special_tokens({"pad_token": "w1"})
    tokenizer.padding_side = "left"
    return tokenizer


def _model(tiny: bool, device: str, dtype: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = (
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
        if tiny
        else {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 16}
    )
    config = LlamaConfig(
        vocab_size=32000,
        num_attention_heads=32 if not tiny else 4,
        num_key_value_heads=8 if not tiny else 2,
        max_position_embeddings=4096,
        pad_token_id=1,
        eos_token_id=None,
        attn_implementation="sdpa",
        **shape,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
    model.generation_config.eos_token_id = None
    return model


def _matmul_rate(torch: Any, device: str, dtype: Any) -> float:
    """FLOP/s of a large square matmul in `dtype`, best of a few."""
    n = 8192 if device.startswith("cuda") else 512
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    best = float("inf")
    for _ in range(5):
        _sync(torch, device)
        began = time.perf_counter()
        a @ b
        _sync(torch, device)
        best = min(best, time.perf_counter() - began)
    return 2 * n**3 / best


def _sync(torch: Any, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--static", action="store_true")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = _model(args.tiny, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    # Matmul work per token: every weight but the input embedding (a lookup, no matmul).
    computed = params - model.get_input_embeddings().weight.numel()
    tokenizer = _tokenizer(model.config.vocab_size)
    loaded = LoadedModel(model, tokenizer, device, str(dtype), "random", 4096, "random-llama")
    draw = random.Random(0)
    prompts = [
        " ".join(f"w{draw.randrange(3, 32000)}" for _ in range(draw.randrange(16, 256)))
        for _ in range(args.rows)
    ]
    settings = GenerationSettings(max_new_tokens=args.new_tokens)
    rate = _matmul_rate(torch, device, dtype)
    prompt_tokens = sum(len(p.split()) for p in prompts)
    new_tokens = args.rows * args.new_tokens
    print(
        f"device {device}, {params / 1e9:.2f} B parameters, {args.rows} rows, batch "
        f"{args.batch_size}, {args.new_tokens} new tokens, {prompt_tokens} prompt tokens; "
        f"matmul {rate / 1e12:.1f} TFLOP/s"
    )

    def report(name: str, seconds: float) -> None:
        used = 2 * computed * (new_tokens + prompt_tokens) / seconds
        print(
            f"{name:30}{new_tokens / seconds:9.0f} new tokens/s  {seconds:7.2f} s  "
            f"({used / rate:5.1%} of the matmul rate, prompt tokens included)"
        )

    def tunelab() -> float:
        _sync(torch, device)
        began = time.perf_counter()
        generate_batch(loaded, prompts, settings, batch_size=args.batch_size)
        _sync(torch, device)
        return time.perf_counter() - began

    def hf(static: bool) -> float:
        kwargs: dict[str, Any] = {"cache_implementation": "static"} if static else {}
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i].split()))
        batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
        _sync(torch, device)
        began = time.perf_counter()
        for batch in batches:
            encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True)
            with torch.inference_mode():
                model.generate(
                    **encoded.to(device),
                    max_new_tokens=args.new_tokens,
                    min_new_tokens=args.new_tokens,
                    do_sample=False,
                    pad_token_id=1,
                    **kwargs,
                )
        _sync(torch, device)
        return time.perf_counter() - began

    generate_batch(loaded, prompts[:4], settings, batch_size=4)  # warm-up
    report("tunelab pool", tunelab())
    report("generate(), batched", hf(False))
    if args.static:
        model.forward = torch.compile(model.forward, mode="reduce-overhead")
        hf(True)  # compiles
        report("generate(), static+compile", hf(True))


if __name__ == "__main__":
    main()

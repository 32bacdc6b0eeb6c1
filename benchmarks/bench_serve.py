"""`tunelab serve` under concurrent load: requests/s and p50/p95 latency at concurrency 1, 4, 16.

The server runs in this process (as `tunelab serve` runs it); clients are the official
`openai` client in threads, over loopback. One generation runs at a time on the model (its
lock), so concurrency shows queueing, not parallel decoding: production serving of the same
adapter belongs to vLLM (see docs/serving.md).

    .venv/bin/python benchmarks/bench_serve.py [--model builtin | --random] [--requests 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import openai

from tunelab.engine.models.loading import ModelRef, load_builtin, load_ref
from tunelab.engine.serving.server import ModelServer, ServeConfig


def _random_model(root: Path) -> ModelRef:
    """A 2-layer Llama with random weights and the built-in tokenizer (no download)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.tune_helpers import tiny_model_dir

    return ModelRef("random", "hf_folder", "base", str(tiny_model_dir(root)))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--random", action="store_true", help="a random-weight tiny Llama")
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", default="1,4,16")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_ref(_random_model(Path(tmp))) if args.random else load_builtin()
        with ModelServer(loaded, loaded.name, ServeConfig(port=0)) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)

            def one(i: int) -> float:
                began = time.perf_counter()
                client.completions.create(
                    model=loaded.name,
                    prompt=f"Request {i}: tell me about the sea.",
                    max_tokens=args.max_tokens,
                    temperature=0,
                )
                return (time.perf_counter() - began) * 1000

            one(-1)  # warm-up
            results = []
            for level in (int(c) for c in args.concurrency.split(",")):
                began = time.perf_counter()
                with ThreadPoolExecutor(level) as pool:
                    latencies = list(pool.map(one, range(args.requests)))
                wall = time.perf_counter() - began
                results.append(
                    {
                        "concurrency": level,
                        "requests": args.requests,
                        "requests_per_s": round(args.requests / wall, 2),
                        "p50_ms": round(statistics.median(latencies), 1),
                        "p95_ms": round(_percentile(latencies, 95), 1),
                    }
                )
                print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"model": loaded.name, "device": loaded.device, "results": results}))


if __name__ == "__main__":
    main()

"""Cached re-run vs first run of the same evaluation, in one process (target: >= 50x).

The model is loaded before either timing, so the first run measures generation and the
re-run measures what the cache saves: rendering, cache lookups and writing the run.

    .venv/bin/python benchmarks/bench_eval_cache.py [--rows 16] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tunelab.engine.evaluation.plan import resolve_model_arg
from tunelab.engine.evaluation.run import EvalRequest, evaluate
from tunelab.engine.models.loading import load_model
from tunelab.store import NewDataset, NewSplit, PromptContent, Store

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tweeteval-irony-test.jsonl"
TEMPLATE = "Is this tweet ironic? Reply with one word: irony or non_irony.\n\nTweet: {{ text }}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    with args.data.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(args.rows), handle, strict=False)]
    store = Store.memory()
    store.add_dataset(
        NewDataset(
            name="irony",
            source=str(args.data),
            fingerprint="bench",
            splits=[NewSplit("test", rows, "bench")],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=["irony", "non_irony"],
            metrics=["accuracy", "macro_f1"],
        )
    )
    store.save_prompt_version(
        "irony", PromptContent(template=TEMPLATE, settings={"max_new_tokens": args.max_new_tokens})
    )
    load_model(store, resolve_model_arg(store, "builtin"))  # warm: loading is not what we time
    request = EvalRequest(
        prompt="irony", model="builtin", dataset="irony", batch_size=args.batch_size
    )

    began = time.perf_counter()
    first = evaluate(store, request)
    first_s = time.perf_counter() - began
    began = time.perf_counter()
    again = evaluate(store, request)
    again_s = time.perf_counter() - began

    same = [o.output for o in store.run_outputs(first.run.id)] == [
        o.output for o in store.run_outputs(again.run.id)
    ]
    print(f"rows: {len(rows)}, max_new_tokens: {args.max_new_tokens}")
    print(f"first run:  {first_s:8.3f}s  (cached rows {first.cached_rows})")
    print(f"cached run: {again_s:8.3f}s  (cached rows {again.cached_rows}, identical: {same})")
    print(f"speed-up:   {first_s / again_s:8.1f}x  (target >= 50x)")


if __name__ == "__main__":
    main()

"""LoRA fine-tuning throughput and memory: tunelab's trainer vs TRL's SFTTrainer.

Same model (the built-in SmolLM2-135M-Instruct), same rows (tweeteval irony rendered with one
chat prompt, the label plus EOS as the completion, loss on the completion only), same LoRA
shape and hyperparameters, one epoch each, in one process one after the other.

    .venv/bin/python benchmarks/bench_finetune.py --rows 64 --batch-size 8

Two pairs run: both trainers without gradient checkpointing, then both with it (TRL's
default; tunelab's `gradient_checkpointing` option). Both train in fp32: TRL's default bf16
autocast is 20-25x slower on a CPU without bf16 matrix units, so comparing against it would
flatter us (`--trl-bf16` adds that run for reference).

tokens/s counts real (non-padding) tokens over the training loop's time only (model loading,
tokenization, checkpointing and evaluation excluded for both). Peak memory is the process's
resident set sampled every 10 ms during each run (both absolute and above the pre-run level).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tweeteval-irony-train.jsonl"
TEMPLATE = "Is this tweet ironic? Answer irony or non_irony.\nTweet: {{ text }}"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """Samples the resident set in a thread; `peak` is the highest value seen."""

    def __init__(self) -> None:
        self.start = rss_mb()
        self.peak = self.start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def setup(rows: int) -> tuple[Any, Any, Any, Any]:
    from tunelab.store import NewDataset, NewModel, NewSplit, PromptContent, Store

    with DATA.open() as fh:
        data = [json.loads(line) for _, line in zip(range(rows), fh, strict=False)]
    store = Store.memory()
    dataset = store.add_dataset(NewDataset(
        "irony", str(DATA), "bench", [NewSplit("train", data, "bench")], task="classification",
        input_columns=["text"], reference_column="label", labels=["irony", "non_irony"],
    ))  # fmt: skip
    base = store.add_model(NewModel("builtin", "base", "builtin", "builtin"))
    version = store.save_prompt_version("irony", PromptContent(template=TEMPLATE)).version
    return store, base, dataset, version


def run_tunelab(args: argparse.Namespace, packing: bool, checkpointing: bool) -> dict[str, float]:
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.engine.training.loop import TrainingRequest, run_training

    store, base, dataset, version = setup(args.rows)
    config = TrainingConfig(
        method="lora", epochs=1, batch_size=args.batch_size, lr=2e-4, lora_r=8, lora_alpha=16,
        lora_dropout=0.05, target_modules=TARGETS, max_seq_len=args.max_seq_len,
        eval_every_steps=0, eval_samples=1, seed=0, warmup_ratio=0.0, packing=packing,
        val_split="", gradient_checkpointing=checkpointing,
    )  # fmt: skip
    out = Path(tempfile.mkdtemp(prefix="bench-tunelab-"))
    # The held-out validation row is one row; hold it out of TRL's data too (see run_trl).
    with PeakRss() as mem:
        result = run_training(store, TrainingRequest(config, base.id, dataset.id, version.id, out))
    return {"tokens_per_s": result.tokens_per_s, "peak_rss_mb": mem.peak,
            "peak_rss_delta_mb": mem.peak - mem.start, "steps": result.step}  # fmt: skip


def trl_rows(args: argparse.Namespace) -> list[dict[str, str]]:
    """The same rendered prompts and completions our trainer builds (minus its held-out row)."""
    from transformers import AutoTokenizer

    from tunelab.engine.models.cache import builtin_model_dir
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.engine.training.data import (
        ExampleBuilder,
        answer_text,
        completion_text,
        plan_splits,
    )

    store, _, dataset, version = setup(args.rows)
    tokenizer = AutoTokenizer.from_pretrained(str(builtin_model_dir()))
    config = TrainingConfig(batch_size=args.batch_size, eval_samples=1, seed=0, val_split="")
    builder = ExampleBuilder(store, dataset, version, tokenizer, config)
    rows = []
    for row in plan_splits(store, dataset, config).train:
        prompt = builder.prompt_text(row)
        answer = answer_text(builder.reference(row), version)
        rows.append({"prompt": prompt, "completion": completion_text(prompt, answer, tokenizer)})
    return rows


def run_trl(args: argparse.Namespace, checkpointing: bool, bf16: bool = False) -> dict[str, float]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunelab.engine.models.cache import builtin_model_dir

    folder = str(builtin_model_dir())
    rows = trl_rows(args)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            clock["start"] = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            clock["end"] = time.perf_counter()

    with PeakRss() as mem:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        sft = SFTConfig(
            output_dir=tempfile.mkdtemp(prefix="bench-trl-"), num_train_epochs=1,
            per_device_train_batch_size=args.batch_size, learning_rate=2e-4,
            lr_scheduler_type="linear", warmup_steps=0, max_length=args.max_seq_len,
            completion_only_loss=True, packing=False, logging_strategy="no",
            save_strategy="no", report_to=[], seed=0, use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0, max_grad_norm=1.0, bf16=bf16,
            gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        )  # fmt: skip
        trainer = SFTTrainer(
            model=model, args=sft, train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer, callbacks=[Clock()],
            peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                   target_modules=TARGETS, task_type="CAUSAL_LM"),
        )  # fmt: skip
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
        trainer.train()
    seconds = clock["end"] - clock["start"]
    return {"tokens_per_s": tokens / seconds, "peak_rss_mb": mem.peak,
            "peak_rss_delta_mb": mem.peak - mem.start,
            "steps": trainer.state.global_step}  # fmt: skip


RUNS = {
    "trl": lambda args: run_trl(args, checkpointing=False),
    "tunelab": lambda args: run_tunelab(args, packing=False, checkpointing=False),
    "trl +ckpt": lambda args: run_trl(args, checkpointing=True),
    "tunelab +ckpt": lambda args: run_tunelab(args, packing=False, checkpointing=True),
    "tunelab packing": lambda args: run_tunelab(args, packing=True, checkpointing=False),
    "trl bf16 +ckpt": lambda args: run_trl(args, checkpointing=True, bf16=True),
}


def run_one(args: argparse.Namespace) -> None:
    """One configuration in this (fresh) process; prints its figures as a JSON line."""
    import peft  # noqa: F401  # the libraries both trainers need, imported before measuring
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    if args.threads:
        torch.set_num_threads(args.threads)
    print("RESULT " + json.dumps(RUNS[args.one](args)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--packing", action="store_true", help="Also run ours with packing.")
    parser.add_argument(
        "--trl-bf16", action="store_true", help="Also run TRL's defaults (bf16, checkpointing)."
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default).")
    parser.add_argument("--order", choices=["trl-first", "tunelab-first"], default="trl-first")
    parser.add_argument("--one", choices=sorted(RUNS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    import torch

    print(f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, "
          f"rows={args.rows}, batch={args.batch_size}, max_seq_len={args.max_seq_len}; "
          "each run in a fresh process")  # fmt: skip
    pairs = [("tunelab", "trl"), ("tunelab +ckpt", "trl +ckpt")]
    if args.packing:
        pairs.append(("tunelab packing", "trl"))
    if args.trl_bf16:
        pairs += [("tunelab", "trl bf16 +ckpt"), ("tunelab +ckpt", "trl bf16 +ckpt")]
    results: dict[str, dict[str, float]] = {}
    for ours, theirs in pairs:
        order = [theirs, ours] if args.order == "trl-first" else [ours, theirs]
        for name in order:
            if name not in results:
                results[name] = fresh_run(name, args)
    print_runs(results, width=16)
    for ours, theirs in pairs:
        print_ratio(ours, theirs, results[ours], results[theirs])


def print_runs(results: dict[str, dict[str, float]], width: int) -> None:
    """One line per run: throughput, peak memory, growth during the run, steps."""
    for name, r in results.items():
        print(f"{name:{width}s} {r['tokens_per_s']:9.1f} tok/s  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB "
              f"(+{r['peak_rss_delta_mb']:.0f} MB during the run), {r['steps']} steps")  # fmt: skip


def print_ratio(ours: str, theirs: str, a: dict[str, float], b: dict[str, float]) -> None:
    """Run `ours` against run `theirs`: speed, peak memory and memory growth as ratios."""
    print(
        f"{ours} / {theirs}: speed x{a['tokens_per_s'] / b['tokens_per_s']:.2f}, "
        f"peak memory x{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}, "
        f"memory growth x{a['peak_rss_delta_mb'] / max(b['peak_rss_delta_mb'], 1):.2f}"
    )


def fresh_run(name: str, args: argparse.Namespace, script: str = __file__) -> dict[str, float]:
    """Runs one configuration of `script` (this benchmark, or one that shares its flags) in a
    fresh interpreter, so no run inherits another's heap."""
    import subprocess
    import sys

    command = [sys.executable, script, "--one", name, "--rows", str(args.rows),
               "--batch-size", str(args.batch_size), "--max-seq-len", str(args.max_seq_len),
               "--threads", str(args.threads)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(lines[-1][len("RESULT ") :]))


if __name__ == "__main__":
    main()

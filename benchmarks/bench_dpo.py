"""DPO throughput and memory: tunelab's DPO job loop vs TRL's DPOTrainer, same settings.

Same model (the built-in SmolLM2-135M), same preference pairs (tweeteval irony rendered with
one plain prompt; the right label chosen, the wrong one rejected, each with the separator and
EOS our trainer adds), the same LoRA shape, beta, learning rate and batch size, one epoch
each, each run in a fresh process. Both compute the reference with the adapter switched off
on the one model (no reference copy, no precomputed reference log-probabilities) and train
in fp32 without gradient checkpointing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dpo.py --rows 32 --batch-size 4

tokens/s counts the real tokens of chosen and rejected sequences (prompt included in each)
over the training loop's time only; peak memory is the process's resident set sampled every
10 ms (the method of `bench_finetune.py`, whose sampler this reuses).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The same memory sampler, fresh-process runner and ratio lines as the SFT bench.
from bench_finetune import PeakRss, fresh_run, print_ratio, print_runs

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tweeteval-irony-train.jsonl"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
LABELS = ("irony", "non_irony")


def pairs(rows: int) -> list[dict[str, str]]:
    """Preference rows in TRL's standard format: prompt, chosen, rejected."""
    with DATA.open() as fh:
        data = [json.loads(line) for _, line in zip(range(rows), fh, strict=False)]
    out = []
    for row in data:
        right = row["label"]
        wrong = LABELS[1 - LABELS.index(right)]
        prompt = f"Is this tweet ironic? Answer irony or non_irony.\nTweet: {row['text']}\nAnswer:"
        out.append({"prompt": prompt, "chosen": right, "rejected": wrong})
    return out


def setup(rows: int) -> tuple[Any, Any, Any, Any]:
    from tunelab.store import NewDataset, NewModel, NewSplit, PromptContent, Store

    store = Store.memory()
    dataset = store.add_dataset(NewDataset(
        "prefs", str(DATA), "bench", [NewSplit("train", pairs(rows), "bench")],
        task="generation", input_columns=["prompt"], reference_column="chosen",
    ))  # fmt: skip
    base = store.add_model(NewModel("builtin", "base", "builtin", "builtin"))
    version = store.save_prompt_version("p", PromptContent(template="{{ prompt }}")).version
    return store, base, dataset, version


def tunelab_config(args: argparse.Namespace) -> Any:
    from tunelab.engine.training.config import TrainingConfig

    return TrainingConfig(
        method="dpo", epochs=1, batch_size=args.batch_size, lr=5e-5, beta=0.1, lora_r=8,
        lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS, max_seq_len=args.max_seq_len,
        eval_every_steps=0, eval_samples=1, seed=0, warmup_ratio=0.0, val_split="",
    )  # fmt: skip


def run_tunelab(args: argparse.Namespace) -> dict[str, float]:
    from tunelab.engine.training.loop import TrainingRequest, run_training

    store, base, dataset, version = setup(args.rows)
    out = Path(tempfile.mkdtemp(prefix="bench-dpo-tunelab-"))
    request = TrainingRequest(tunelab_config(args), base.id, dataset.id, version.id, out)
    with PeakRss() as mem:
        result = run_training(store, request)
    return {"tokens_per_s": result.tokens_per_s, "peak_rss_mb": mem.peak,
            "peak_rss_delta_mb": mem.peak - mem.start, "steps": result.step}  # fmt: skip


def trl_rows(args: argparse.Namespace) -> list[dict[str, str]]:
    """The pairs our trainer trains on (its one held-out row left out), with the completion
    text it builds (separator and EOS), so both tokenize the same sequences."""
    from transformers import AutoTokenizer

    from tunelab.engine.models.cache import builtin_model_dir
    from tunelab.engine.training.data import completion_text, plan_splits

    store, _, dataset, _ = setup(args.rows)
    tokenizer = AutoTokenizer.from_pretrained(str(builtin_model_dir()))
    rows = []
    for row in plan_splits(store, dataset, tunelab_config(args)).train:
        prompt = row.data["prompt"]
        chosen = completion_text(prompt, row.data["chosen"], tokenizer)
        rejected = completion_text(prompt, row.data["rejected"], tokenizer)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def run_trl(args: argparse.Namespace) -> dict[str, float]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from tunelab.engine.models.cache import builtin_model_dir

    folder = str(builtin_model_dir())
    rows = trl_rows(args)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            clock["start"] = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            clock["end"] = time.perf_counter()

    with PeakRss() as mem:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        config = DPOConfig(
            output_dir=tempfile.mkdtemp(prefix="bench-dpo-trl-"), num_train_epochs=1,
            per_device_train_batch_size=args.batch_size, learning_rate=5e-5, beta=0.1,
            loss_type=["sigmoid"], lr_scheduler_type="linear", warmup_steps=0,
            max_length=args.max_seq_len, logging_strategy="no", save_strategy="no",
            report_to=[], seed=0, use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0, max_grad_norm=1.0, bf16=False,
            gradient_checkpointing=False, precompute_ref_log_probs=False,
        )  # fmt: skip
        trainer = DPOTrainer(
            model=model, args=config, train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer, callbacks=[Clock()],
            peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                   target_modules=TARGETS, task_type="CAUSAL_LM"),
        )  # fmt: skip
        data: Any = trainer.train_dataset  # the tokenized pairs (a datasets.Dataset)
        tokens = sum(
            2 * len(p) + len(c) + len(r)
            for p, c, r in zip(data["prompt_ids"], data["chosen_ids"], data["rejected_ids"],
                               strict=True)
        )  # fmt: skip
        trainer.train()
    seconds = clock["end"] - clock["start"]
    return {"tokens_per_s": tokens / seconds, "peak_rss_mb": mem.peak,
            "peak_rss_delta_mb": mem.peak - mem.start,
            "steps": trainer.state.global_step}  # fmt: skip


RUNS = {"trl": run_trl, "tunelab": run_tunelab}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default).")
    parser.add_argument("--order", choices=["trl-first", "tunelab-first"], default="trl-first")
    parser.add_argument("--one", choices=sorted(RUNS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import peft  # noqa: F401  # both trainers' libraries, imported before measuring
        import torch
        import trl  # noqa: F401

        if args.threads:
            torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(RUNS[args.one](args)), flush=True)
        return
    import torch

    print(f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, "
          f"rows={args.rows}, batch={args.batch_size}, max_seq_len={args.max_seq_len}; "
          "each run in a fresh process")  # fmt: skip
    order = ("trl", "tunelab") if args.order == "trl-first" else ("tunelab", "trl")
    results = {name: fresh_run(name, args, __file__) for name in order}
    print_runs(results, width=8)
    print_ratio("tunelab", "trl DPOTrainer", results["tunelab"], results["trl"])


if __name__ == "__main__":
    main()

"""Helpers for the fine-tuning tests: a tiny Llama with the built-in tokenizer, data, prompts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunelab.store import (
    Dataset,
    Job,
    Model,
    NewDataset,
    NewModel,
    NewSplit,
    PromptContent,
    PromptVersion,
    Store,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
IRONY_TRAIN = SHARED / "tweeteval-irony-train.jsonl"
LABELS = ["irony", "non_irony"]


def irony_rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """Real rows when the shared file is there, else short synthetic ones."""
    if IRONY_TRAIN.exists():
        with IRONY_TRAIN.open() as fh:
            rows = [json.loads(line) for _, line in zip(range(offset + n), fh, strict=False)]
        return [{"text": r["text"][:120], "label": r["label"]} for r in rows[offset:]]
    return [
        {"text": f"tweet number {i} is {'great' if i % 2 else 'bad'}", "label": LABELS[i % 2]}
        for i in range(offset, offset + n)
    ]


def tiny_model_dir(root: Path) -> Path:
    """A 2-layer Llama (random weights) with the built-in model's tokenizer: seconds to train."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunelab.engine.models.cache import builtin_model_dir

    out = root / "tiny-llama"
    if (out / "config.json").exists():
        return out
    tokenizer = AutoTokenizer.from_pretrained(str(builtin_model_dir()))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def add_training_data(
    store: Store, model_dir: Path | None, n_train: int = 24, n_val: int = 8
) -> tuple[Model, Dataset, PromptVersion]:
    """Register a base model (tiny folder, or the built-in), the irony data and a prompt."""
    if model_dir is None:
        base = store.add_model(NewModel("builtin", "base", "builtin", "builtin"), exist_ok=True)
    else:
        base = store.add_model(NewModel("tiny", "base", "hf_folder", str(model_dir)), exist_ok=True)
    if "irony" in store.dataset_names():
        dataset = store.get_dataset("irony")
    else:
        dataset = _add_irony(store, n_train, n_val)
    version = store.save_prompt_version(
        "irony", PromptContent(template="Ironic? irony or non_irony.\n{{ text }}", mode="chat")
    ).version
    return base, dataset, version


def _add_irony(store: Store, n_train: int, n_val: int) -> Dataset:
    return store.add_dataset(
        NewDataset(
            "irony",
            "test",
            "fp-irony",
            [
                NewSplit("train", irony_rows(n_train), "fp-train"),
                NewSplit("validation", irony_rows(n_val, offset=n_train), "fp-val"),
            ],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=LABELS,
            metrics=["accuracy"],
        )
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 240, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def wait_status(store: Store, job_id: int, statuses: tuple[str, ...], timeout: float = 240) -> Job:
    def done() -> Job | None:
        job = store.get_job(job_id)
        return job if job.status in statuses else None

    return wait_for(done, timeout, f"job {job_id} to reach {statuses}")

"""Tensor-level pieces of the trainer: collation, completion-only loss, validation metrics.

Logits are computed only where the next token is a completion token (`logits_to_keep` as a
boolean mask). With a 49k-token vocabulary and short answers, projecting every position onto
the vocabulary would be a fifth of the forward pass and most of the activation memory.
torch is imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelab.engine.training.data import IGNORE_INDEX, Example

if TYPE_CHECKING:
    import torch


def collate(examples: list[Example], pad_id: int, device: Any) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask and labels for a batch."""
    import torch  # heavy import: only when training

    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def collate_packed(rows: list[list[Example]], pad_id: int, device: Any) -> dict[str, torch.Tensor]:
    """Packed rows: examples side by side, position ids restarting at each one, no attention
    mask (transformers then builds a block-diagonal causal mask from the position ids)."""
    import torch  # heavy import: only when training

    width = max(sum(len(e) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e)
            ids[i, at : at + n] = torch.tensor(e.input_ids)
            labels[i, at : at + n] = torch.tensor(e.labels)
            positions[i, at : at + n] = torch.arange(n)
            at += n
        positions[i, at:] = torch.arange(width - at)  # padding forms its own segment
    return {
        "input_ids": ids.to(device),
        "position_ids": positions.to(device),
        "labels": labels.to(device),
    }


def completion_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def forward_logits(
    model: Any, batch: dict[str, torch.Tensor], virtual_tokens: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at positions whose next token is a completion token, their targets, and each
    kept position's row index. `virtual_tokens` shifts the mask for prompt tuning."""
    import torch  # heavy import

    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][keep[:, :-1]]
    rows = keep.nonzero()[:, 0]
    mask = keep
    if virtual_tokens:
        pad = torch.zeros((keep.shape[0], virtual_tokens), dtype=torch.bool, device=keep.device)
        mask = torch.cat([pad, keep], dim=1)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    out = model(**inputs, logits_to_keep=mask, use_cache=False)
    logits = out.logits
    if logits.ndim == 3:  # a model that ignored logits_to_keep
        logits = logits[mask]
    return logits, targets, rows


def loss_sum(
    model: Any, batch: dict[str, torch.Tensor], virtual_tokens: int = 0
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over completion tokens, and how many tokens it covers."""
    import torch.nn.functional as F  # heavy import

    logits, targets, _ = forward_logits(model, batch, virtual_tokens)
    return F.cross_entropy(logits.float(), targets, reduction="sum"), int(targets.numel())


def sequence_logprobs(
    model: Any, batch: dict[str, torch.Tensor], virtual_tokens: int = 0
) -> torch.Tensor:
    """Total log-probability of each row's completion (for ranking candidate labels)."""
    import torch  # heavy import

    logits, targets, rows = forward_logits(model, batch, virtual_tokens)
    token_lp = torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None])[:, 0]
    totals = torch.zeros(batch["labels"].shape[0], device=token_lp.device)
    return totals.index_add(0, rows, token_lp)


def validation_loss(
    model: Any,
    examples: list[Example],
    batch_size: int,
    pad_id: int,
    device: Any,
    virtual_tokens: int = 0,
) -> float:
    import torch  # heavy import

    total, count = 0.0, 0
    ordered = sorted(examples, key=len)
    with torch.no_grad():
        for start in range(0, len(ordered), batch_size):
            batch = collate(ordered[start : start + batch_size], pad_id, device)
            value, n = loss_sum(model, batch, virtual_tokens)
            total += float(value)
            count += n
    return total / max(count, 1)


def label_metrics(predicted: list[int], answers: list[int], labels: list[str]) -> dict[str, float]:
    """Validation accuracy and macro-F1 of picked label indices (the evaluation's own F1)."""
    from tunelab.engine.evaluation.metrics import f1_scores

    hits = sum(1 for p, answer in zip(predicted, answers, strict=True) if p == answer)
    name = dict(enumerate(labels))
    per_class = f1_scores([name.get(a, "") for a in answers], [name[p] for p in predicted], labels)
    return {
        "val_accuracy": hits / max(len(answers), 1),
        "val_macro_f1": sum(per_class.values()) / max(len(per_class), 1),
    }


def label_predictions(
    model: Any,
    candidates: list[list[Example]],
    batch_size: int,
    pad_id: int,
    device: Any,
    virtual_tokens: int = 0,
) -> list[int]:
    """Per row, the index of the candidate label with the highest likelihood."""
    import torch  # heavy import

    flat = [(r, c, e) for r, row in enumerate(candidates) for c, e in enumerate(row)]
    scores = [[float("-inf")] * len(row) for row in candidates]
    flat.sort(key=lambda item: len(item[2]))
    with torch.no_grad():
        for start in range(0, len(flat), batch_size):
            chunk = flat[start : start + batch_size]
            batch = collate([e for _, _, e in chunk], pad_id, device)
            logprobs = sequence_logprobs(model, batch, virtual_tokens).tolist()
            for (r, c, _), lp in zip(chunk, logprobs, strict=True):
                scores[r][c] = lp
    return [row.index(max(row)) for row in scores]


def exact_match(
    model: Any, tokenizer: Any, examples: list[Example], batch_size: int, device: Any
) -> float:
    """Greedy generation from each prompt, compared with the reference (whitespace-trimmed)."""
    import torch  # heavy import

    from tunelab.engine.generation.batched import generate_tokens
    from tunelab.engine.models.loading import LoadedModel
    from tunelab.engine.prompts.settings import GenerationSettings

    # The decoding evaluation uses, so prefix and prompt tuning validate as they will evaluate.
    loaded = LoadedModel(model, tokenizer, str(device), "", "", 1 << 30, "training")
    pad_id = tokenizer.pad_token_id
    hits = 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            prompts = [e.input_ids[: e.prompt_len] for e in chunk]
            width = max(len(p) for p in prompts)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, p in enumerate(prompts):  # left padding, as generation needs
                ids[i, width - len(p) :] = torch.tensor(p)
                mask[i, width - len(p) :] = 1
            budget = max(len(e) - e.prompt_len for e in chunk) + 2
            settings = GenerationSettings(temperature=0, max_new_tokens=budget)
            out = generate_tokens(loaded, ids.to(device), mask.to(device), settings)
            for e, row in zip(chunk, out[:, width:].tolist(), strict=True):
                text = tokenizer.decode(row, skip_special_tokens=True)
                hits += int(text.strip() == e.reference.strip())
    return hits / max(len(examples), 1)

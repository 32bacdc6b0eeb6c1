"""Preference tuning (DPO): prompt/chosen/rejected rows as pairs, the loss, its metrics.

The loss is the DPO paper's (Rafailov et al. 2023, eq. 7) exactly as TRL's `DPOTrainer`
computes its default `loss_type="sigmoid"`: -logsigmoid(beta * (d_chosen - d_rejected)), each
d the summed completion log-probability under the policy minus that under the reference.
TRL 1.16 keeps the loss inside its trainer (no function to call), so our loop computes that
one line itself and reports what TRL reports: reward accuracy and margin (rewards beta * d).

The reference policy never costs a second model: with a new adapter it is the same weights
with the adapter switched off (peft's `disable_adapter`); starting from an SFT adapter it is
that adapter's frozen copy on the same base (`checkpoint.REFERENCE_ADAPTER`). Its forward
pass runs first, without gradients and with dropout off, then the policy's.
torch is imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.training.checkpoint import (
    POLICY_ADAPTER,
    REFERENCE_ADAPTER,
    has_reference_adapter,
)
from tunelab.engine.training.data import Example, completion_text, encode_example
from tunelab.engine.training.steps import collate, sequence_logprobs

if TYPE_CHECKING:
    import torch

    from tunelab.store import Dataset, DatasetRow

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
"""TRL's preference format, which `tunelab export dpo` writes."""


@dataclass(frozen=True)
class PreferencePair:
    """One prompt with a chosen and a rejected completion, tokenized as two examples."""

    chosen: Example
    rejected: Example

    def __len__(self) -> int:
        return len(self.chosen) + len(self.rejected)


def check_preference_rows(dataset: Dataset, split: str, rows: list[DatasetRow]) -> None:
    """Every row has a non-empty prompt, chosen and rejected value (TRL's columns)."""
    if not rows:
        return
    missing = [c for c in PREFERENCE_COLUMNS if c not in rows[0].data]
    if missing:
        raise BadInputError(
            f"--method dpo needs prompt, chosen and rejected columns; dataset {dataset.name!r} "
            f"lacks {', '.join(missing)} (make one with `tunelab export dpo`)"
        )
    for row in rows:
        for column in PREFERENCE_COLUMNS:
            value = row.data.get(column)
            if value is None or value == "" or value == []:
                raise BadInputError(
                    f"row {row.idx} of {dataset.name}/{split} has an empty {column!r}; "
                    "every preference needs a prompt, a chosen and a rejected answer"
                )


def _prompt_text(value: object, tokenizer: Any, row_idx: int) -> str:
    """A standard prompt as it is; a conversational one through the model's chat template."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        if not getattr(tokenizer, "chat_template", None):
            raise BadInputError(
                f"row {row_idx}: the prompt is chat messages but the model has no chat template"
            )
        return str(tokenizer.apply_chat_template(value, tokenize=False, add_generation_prompt=True))
    raise BadInputError(f"row {row_idx}: the prompt must be text or a list of chat messages")


def _answer(value: object, row_idx: int, column: str) -> str:
    """A standard completion as it is; a conversational one is its last message's content."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    raise BadInputError(f"row {row_idx}: {column!r} must be text or a list of chat messages")


def preference_pairs(
    rows: list[DatasetRow], tokenizer: Any, max_seq_len: int
) -> list[PreferencePair]:
    """Tokenize each row's chosen and rejected answer after its prompt, as SFT examples are
    built (the same separator and EOS), so DPO and SFT learn the same answer format."""
    pairs = []
    for row in rows:
        prompt = _prompt_text(row.data["prompt"], tokenizer, row.idx)
        examples = []
        for column in ("chosen", "rejected"):
            answer = _answer(row.data[column], row.idx, column)
            completion = completion_text(prompt, answer, tokenizer)
            examples.append(
                encode_example(prompt, completion, tokenizer, max_seq_len, row.idx, answer)
            )
        pairs.append(PreferencePair(examples[0], examples[1]))
    return pairs


@contextmanager
def reference_policy(model: Any) -> Iterator[None]:
    """Run `model` as the reference: no gradients, dropout off, and the adapter off (or the
    frozen SFT adapter on); the policy is restored on leaving."""
    import torch  # heavy import

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if has_reference_adapter(model):
                model.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
                try:
                    yield
                finally:
                    model.set_adapter(POLICY_ADAPTER)  # trainable again, reference frozen
            else:
                with model.disable_adapter():
                    yield
    finally:
        model.train(was_training)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO losses and the chosen and rejected rewards (TRL's `sigmoid` loss)."""
    import torch.nn.functional as F  # heavy import

    chosen_rewards = beta * (policy_chosen - reference_chosen)
    rejected_rewards = beta * (policy_rejected - reference_rejected)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


@dataclass
class PairTotals:
    """Sums over pairs, so a step or a validation reports means however it was batched."""

    loss: float = 0.0
    correct: float = 0.0
    margin: float = 0.0
    pairs: int = 0

    def add(self, losses: Any, chosen: Any, rejected: Any) -> None:
        self.loss += float(losses.detach().sum())
        self.correct += float((chosen > rejected).float().sum())
        self.margin += float((chosen - rejected).sum())
        self.pairs += int(losses.numel())

    def means(self, prefix: str = "") -> dict[str, float]:
        """DPO loss, reward accuracy and reward margin, the three TRL logs."""
        n = max(self.pairs, 1)
        return {
            f"{prefix}loss": self.loss / n,
            f"{prefix}reward_accuracy": self.correct / n,
            f"{prefix}reward_margin": self.margin / n,
        }


def pair_loss(
    model: Any,
    policy: Any,
    pairs: list[PreferencePair],
    beta: float,
    pad_id: int,
    device: Any,
    totals: PairTotals,
) -> torch.Tensor:
    """The summed DPO loss of a batch of pairs (chosen and rejected in one forward pass each
    for the reference and the policy); adds the batch to `totals`.

    Args:
        model: the peft model (switched to the reference and back).
        policy: what the policy's forward runs through (the model, or its DDP wrapper).
    """
    batch = collate([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id, device)
    with reference_policy(model):
        reference = sequence_logprobs(model, batch)
    logprobs = sequence_logprobs(policy, batch)
    n = len(pairs)
    losses, chosen, rejected = dpo_loss(logprobs[:n], logprobs[n:], reference[:n], reference[n:],
                                        beta)  # fmt: skip
    totals.add(losses, chosen, rejected)
    return losses.sum()


def validate_pairs(
    model: Any, pairs: list[PreferencePair], batch_size: int, beta: float, pad_id: int, device: Any
) -> dict[str, float]:
    """val_loss (the DPO loss), val_reward_accuracy and val_reward_margin over `pairs`."""
    import torch  # heavy import

    totals = PairTotals()
    ordered = sorted(pairs, key=len)
    with torch.no_grad():
        for start in range(0, len(ordered), batch_size):
            pair_loss(model, model, ordered[start : start + batch_size], beta, pad_id, device,
                      totals)  # fmt: skip
    return totals.means("val_")

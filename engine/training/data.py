"""Training examples: each row rendered with the prompt version, its reference as the completion.

Training on exactly the text evaluation shows the model makes "fine-tuned model + prompt" a
natural pair. Only completion tokens carry loss; prompt tokens get the label -100. Batching
groups examples of similar length (or packs them) so little compute goes to padding.
No torch here: these are plain lists, collated into tensors by the trainer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.training.config import TrainingConfig

if TYPE_CHECKING:
    from tunelab.engine.evaluation.answers import AnswerRule
    from tunelab.store import Dataset, DatasetRow, PromptVersion, Store

IGNORE_INDEX = -100
VAL_SPLIT_NAMES = ("validation", "val", "dev", "valid")
MEGABATCH_FACTOR = 50
"""Length grouping sorts within windows of this many batches, keeping order mostly random."""


@dataclass(frozen=True)
class Example:
    """One tokenized training example; `labels` is -100 over the prompt."""

    input_ids: list[int]
    labels: list[int]
    prompt_len: int
    row_idx: int
    reference: str

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class SplitPlan:
    """The rows to train on and the validation rows scored at each evaluation."""

    train: list[DatasetRow]
    val: list[DatasetRow]
    val_source: str
    """Which split the validation rows come from, or 'held out of <train>'."""


def plan_splits(store: Store, dataset: Dataset, config: TrainingConfig) -> SplitPlan:
    """Pick the training rows and a fixed validation sample (seeded, so resume sees the same)."""
    train = store.dataset_rows(dataset.name, config.train_split)
    val_split = config.val_split or next(
        (n for n in VAL_SPLIT_NAMES if n in dataset.split_names and n != config.train_split), ""
    )
    rng = random.Random(config.seed)
    if val_split:
        val_rows = store.dataset_rows(dataset.name, val_split)
        if len(val_rows) > config.eval_samples:
            val_rows = sorted(rng.sample(val_rows, config.eval_samples), key=lambda r: r.idx)
        return SplitPlan(train, val_rows, val_split)
    # No validation split: hold out up to 10% of the training rows (at least one, when there
    # are at least two rows) so validation never scores rows the model trained on.
    held = min(config.eval_samples, max(1, len(train) // 10)) if len(train) > 1 else 0
    chosen = set(rng.sample(range(len(train)), held))
    val_rows = [r for i, r in enumerate(train) if i in chosen]
    kept = [r for i, r in enumerate(train) if i not in chosen]
    config.check_against_data(len(kept))
    return SplitPlan(kept, val_rows, f"held out of {config.train_split}")


def answer_text(reference: str, version: PromptVersion, rule: AnswerRule | None = None) -> str:
    """What the model should produce for a row: the reference, in the prompt's answer format.

    With chain of thought and an answer rule (GSM8K's `#### 18`), the worked solution comes
    first and its final answer after "Answer:", so the fine-tune learns to reason and then
    answer in the very form the prompt's evaluation extracts.
    """
    from tunelab.engine.prompts.templates import ANSWER_PREFIX

    if version.reasoning != "cot":
        return reference
    final = rule.extract(reference) if rule is not None else None
    if rule is None or final is None:
        return f"{ANSWER_PREFIX} {reference}"
    rationale = rule.rationale(reference)
    return f"{rationale}\n{ANSWER_PREFIX} {final}" if rationale else f"{ANSWER_PREFIX} {final}"


def completion_text(prompt_text: str, answer: str, tokenizer: Any) -> str:
    """The answer as it follows the prompt (a space unless the prompt ends in one) plus EOS."""
    sep = "" if not prompt_text or prompt_text[-1].isspace() else " "
    return f"{sep}{answer}{tokenizer.eos_token or ''}"


def encode_example(
    prompt_text: str,
    completion: str,
    tokenizer: Any,
    max_seq_len: int,
    row_idx: int = 0,
    reference: str = "",
) -> Example:
    """Tokenize prompt and completion; an overlong example loses the start of its prompt."""
    from tunelab.engine.prompts.templates import prompt_token_ids

    prompt_ids = prompt_token_ids(tokenizer, prompt_text)
    completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if not completion_ids:
        raise BadInputError(f"row {row_idx}: the reference is empty; nothing to learn")
    completion_ids = completion_ids[: max_seq_len - 1]
    keep_prompt = max(1, max_seq_len - len(completion_ids))
    prompt_ids = prompt_ids[-keep_prompt:]
    ids = prompt_ids + completion_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    return Example(ids, labels, len(prompt_ids), row_idx, reference)


class ExampleBuilder:
    """Renders rows with a prompt version (few-shot included) and tokenizes them."""

    def __init__(
        self,
        store: Store,
        dataset: Dataset,
        version: PromptVersion,
        tokenizer: Any,
        config: TrainingConfig,
    ) -> None:
        from tunelab.engine.evaluation.answers import parse_rule
        from tunelab.engine.prompts.templates import FewShotConfig, FewShotSampler

        if not dataset.reference_column:
            raise BadInputError(f"dataset {dataset.name!r} has no reference column to learn")
        self.dataset = dataset
        self.version = version
        self.tokenizer = tokenizer
        self.max_seq_len = config.max_seq_len
        self.answer_rule = parse_rule(dataset.answer_rule) if dataset.answer_rule else None
        """Reads the reference's final answer, for the chain-of-thought target."""
        self.sampler = FewShotSampler(
            store, dataset, FewShotConfig.from_settings(version.settings), config.train_split
        )

    def prompt_text(self, row: DatasetRow) -> str:
        from tunelab.engine.prompts.templates import build_prompt

        shots = self.sampler.examples_for(row.idx) if self.sampler.config.k else None
        text, _, _ = build_prompt(self.version, row.data, self.tokenizer, shots)
        return text

    def reference(self, row: DatasetRow) -> str:
        column = self.dataset.reference_column or ""
        if column not in row.data or row.data[column] is None:
            raise BadInputError(f"row {row.idx} has no value in reference column {column!r}")
        return str(row.data[column])

    def example(self, row: DatasetRow, answer: str | None = None) -> Example:
        """A training example for `row` (or for a candidate `answer`, to score labels)."""
        prompt = self.prompt_text(row)
        reference = self.reference(row)
        target = (
            answer_text(reference, self.version, self.answer_rule)
            if answer is None
            else answer_text(answer, self.version)
        )
        return encode_example(
            prompt,
            completion_text(prompt, target, self.tokenizer),
            self.tokenizer,
            self.max_seq_len,
            row.idx,
            reference,
        )

    def examples(self, rows: list[DatasetRow]) -> list[Example]:
        return [self.example(r) for r in rows]


def batch_order(
    lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    """Example indices per batch for one epoch: shuffled, optionally grouped by length.

    Grouping sorts examples by length within windows of MEGABATCH_FACTOR batches, then shuffles
    the batches, so each batch is nearly padding-free while the order stays random.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = batch_size * MEGABATCH_FACTOR
        grouped: list[int] = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            grouped.extend(sorted(chunk, key=lambda i: -lengths[i]))
        order = grouped
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def packed_order(
    lengths: list[int], batch_size: int, max_seq_len: int, seed: int, epoch: int
) -> list[list[list[int]]]:
    """Batches of packed rows for one epoch: each row lists the examples sharing it.

    Examples are taken in shuffled order and placed first-fit into rows of at most
    max_seq_len tokens; the attention mask keeps packed examples from seeing each other.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        need = min(lengths[i], max_seq_len)
        for r, free in enumerate(room[-8:], start=max(0, len(room) - 8)):
            if need <= free:
                rows[r].append(i)
                room[r] -= need
                break
        else:
            rows.append([i])
            room.append(max_seq_len - need)
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def shard(batches: list[Any], rank: int, world_size: int) -> list[Any]:
    """This rank's batches; every rank gets the same count so collective calls line up."""
    if world_size <= 1:
        return batches
    usable = len(batches) - len(batches) % world_size
    if usable == 0:
        raise BadInputError(
            f"{len(batches)} batches cannot be split over {world_size} processes; "
            "lower --batch-size or --gpus"
        )
    return batches[rank:usable:world_size]

"""Nested, seeded subsets of a training split, stored as a derived dataset with lineage.

Each repeat draws one seeded permutation of the split; a size's subset is that permutation's
prefix, so every smaller subset of a repeat is contained in every larger one and a curve's
points differ only in how much data they saw. The subsets are stored as splits of a dataset
derived from the original (with its lineage), because a fine-tuning job trains on a split.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError
from tunelab.store import NewDataset, NewSplit

if TYPE_CHECKING:
    from tunelab.store import Dataset, Store

ALL = "all"
"""The size that means the whole training split."""


@dataclass(frozen=True)
class PlannedPoint:
    """One size and repeat to train: its subset split in the derived dataset."""

    size: int
    repeat: int
    seed: int
    split: str


def parse_sizes(text: str, split_rows: int, split: str) -> list[int]:
    """`25,50,all` → sorted distinct sizes; `all` is the split's row count.

    Raises:
        BadInputError: an entry that is not a positive integer or `all`, or a size larger
            than the training split.
    """
    sizes: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() == ALL:
            sizes.add(split_rows)
            continue
        try:
            size = int(part)
        except ValueError:
            raise BadInputError(
                f"size {part!r} is not a number; give sizes like 25,50,100,all"
            ) from None
        if size < 1:
            raise BadInputError(f"sizes must be at least 1, not {size}")
        if size > split_rows:
            raise BadInputError(
                f"size {size} is larger than the {split_rows} rows of split {split!r}; "
                f"use sizes up to {split_rows} (or `all`)"
            )
        sizes.add(size)
    if not sizes:
        raise BadInputError("give at least one size, e.g. --sizes 25,50,100,all")
    return sorted(sizes)


def repeat_seed(curve_seed: int, repeat: int) -> int:
    """The permutation (and training) seed of one repeat: its own for each repeat."""
    return curve_seed + repeat


def nested_subset(n_rows: int, size: int, seed: int) -> list[int]:
    """Row indices (sorted) of the first `size` rows of a seeded permutation of `n_rows`.

    For one seed, `nested_subset(n, a, s)` is contained in `nested_subset(n, b, s)` when a ≤ b.
    """
    if not 0 <= size <= n_rows:
        raise BadInputError(f"a subset of {size} rows cannot come from {n_rows} rows")
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    return sorted(order[:size])


def split_name(size: int, repeat: int) -> str:
    return f"n{size}-r{repeat}"


def derived_name(store: Store, dataset: Dataset, curve_id: int) -> str:
    """`emotion~curve3`, or `emotion~curve3.2` for the next batch of sizes of the same curve."""
    base = f"{dataset.name}~curve{curve_id}"
    taken = set(store.dataset_names())
    if base not in taken:
        return base
    batch = 2
    while f"{base}.{batch}" in taken:
        batch += 1
    return f"{base}.{batch}"


def store_subsets(
    store: Store,
    dataset: Dataset,
    curve_id: int,
    train_split: str,
    val_split: str,
    points: Sequence[tuple[int, int, int]],
) -> tuple[Dataset, list[PlannedPoint]]:
    """Store the subsets of `points` (size, repeat, seed) as one derived dataset.

    The derived dataset holds one split per point and a copy of the validation split the
    jobs pick their best checkpoint on (a job's splits come from one dataset); its lineage
    names the original split and each subset's seed.
    """
    train_rows = store.dataset_rows(dataset.name, train_split)
    val_rows = store.dataset_rows(dataset.name, val_split)
    splits = [NewSplit(val_split, [r.data for r in val_rows], _fingerprint(val_rows))]
    planned: list[PlannedPoint] = []
    for size, repeat, seed in points:
        chosen = nested_subset(len(train_rows), size, seed)
        rows = [train_rows[i] for i in chosen]
        name = split_name(size, repeat)
        splits.append(NewSplit(name, [r.data for r in rows], _fingerprint(rows)))
        planned.append(PlannedPoint(size, repeat, seed, name))
    name = derived_name(store, dataset, curve_id)
    new = NewDataset(
        name=name,
        source=f"curve {curve_id}: nested subsets of {dataset.name}/{train_split}",
        fingerprint=hashlib.sha256("".join(s.fingerprint for s in splits).encode()).hexdigest(),
        splits=splits,
        task=dataset.task,
        input_columns=list(dataset.input_columns),
        reference_column=dataset.reference_column,
        labels=list(dataset.labels),
        metrics=list(dataset.metrics),
        card=f"Training subsets of data-efficiency curve {curve_id}.",
        answer_rule=dataset.answer_rule,
    )
    lineage = {
        "kind": "curve_subsets",
        "curve_id": curve_id,
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint,
        "train_split": train_split,
        "val_split": val_split,
        "subsets": {p.split: {"size": p.size, "repeat": p.repeat, "seed": p.seed}
                    for p in planned},
        "rule": "the first SIZE rows of random.Random(seed).shuffle(range(rows))",
    }  # fmt: skip
    return store.add_exported_dataset(new, lineage), planned


def _fingerprint(rows: Sequence[object]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(getattr(row, "data", row)).encode())
    return digest.hexdigest()

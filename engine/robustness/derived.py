"""Perturbed copies of a run's rows, stored as derived datasets with lineage.

A derived dataset holds the clean run's rows, in order, with only their input columns
perturbed; its lineage (the mechanism exported datasets use) names the source dataset, split
and each row's source index, the perturbation, its parameter and the seed. The same
perturbation of the same rows with the same seed is the same dataset, found again by its
fingerprint rather than stored twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.engine.data.importing import fingerprint_rows
from tunelab.engine.robustness.perturb import InputPerturbation
from tunelab.engine.robustness.summary import SOURCE_ROWS_KEY
from tunelab.store import Dataset, DatasetRow, NewDataset, NewSplit, Run, Store

LINEAGE_KIND = "robustness"


@dataclass(frozen=True)
class DerivedRows:
    """A perturbation applied to a run's rows, not yet stored."""

    perturbation: InputPerturbation
    detail: str
    new: NewDataset
    lineage: dict[str, Any]


def derive_rows(
    run: Run,
    dataset: Dataset,
    rows: Sequence[DatasetRow],
    columns: Sequence[str],
    perturbation: InputPerturbation,
    seed: int,
    extra_splits: Sequence[NewSplit] = (),
) -> DerivedRows:
    """The perturbed copy of `rows` as a dataset to store, with its lineage.

    Args:
        extra_splits: splits copied unperturbed (the split a version draws its few-shot
            examples from), so demonstrations stay what they were.
    """
    perturbed = [perturbation.apply_row(r.data, columns, seed, r.idx) for r in rows]
    split_fingerprint = fingerprint_rows(perturbed)
    parts = [
        f"{run.split}:{split_fingerprint}",
        *(f"{s.name}:{s.fingerprint}" for s in extra_splits),
    ]
    fingerprint = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    detail = perturbation.describe(seed)
    lineage: dict[str, Any] = {
        "kind": LINEAGE_KIND,
        "source": f"{dataset.name}/{run.split}",
        "source_dataset_id": dataset.id,
        "source_split": run.split,
        SOURCE_ROWS_KEY: [r.idx for r in rows],
        "source_row_ids": [r.id for r in rows],
        "columns": list(columns),
        "runs": [
            {"id": run.id, "prompt": run.prompt_ref, "dataset": dataset.name, "split": run.split}
        ],
        "filters": {
            "perturbation": perturbation.name,
            "parameter": perturbation.parameter,
            "seed": seed,
        },
        "detail": detail,
    }
    new = NewDataset(
        name=f"{dataset.name}.{perturbation.name}-{fingerprint[:8]}",
        source=f"robustness:{perturbation.name} of {dataset.name}/{run.split}",
        fingerprint=fingerprint,
        splits=[NewSplit(run.split, perturbed, split_fingerprint), *extra_splits],
        task=dataset.task,
        input_columns=list(dataset.input_columns),
        reference_column=dataset.reference_column,
        labels=list(dataset.labels),
        metrics=list(dataset.metrics),
        card=f"{detail}: the rows of run {run.id} ({dataset.name}/{run.split}), inputs perturbed.",
        answer_rule=dataset.answer_rule,
    )
    return DerivedRows(perturbation, detail, new, lineage)


def store_derived(store: Store, derived: DerivedRows) -> Dataset:
    """The derived dataset: the stored one with the same name and fingerprint, else new."""
    if derived.new.name in store.dataset_names():
        existing = store.get_dataset(derived.new.name)
        if existing.fingerprint == derived.new.fingerprint:
            return existing
    return store.add_exported_dataset(derived.new, derived.lineage)

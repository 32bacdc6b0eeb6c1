"""Writing an export: its file (JSONL or a `datasets` folder) and its dataset with lineage.

The file is written first (JSONL through a temporary name, so a reader never sees half of
it) and removed again when registering fails, so neither exists without the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.engine.data.importing import DEFAULT_METRICS, fingerprint_rows
from tunelab.engine.errors import BadInputError
from tunelab.engine.feedback.options import ExportOptions
from tunelab.store import Dataset, NewDataset, NewSplit, Store

EXPORT_SPLIT = "train"
"""The one split an exported dataset has: it exists to be trained on."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the registered dataset, the file and what it holds."""

    dataset: Dataset
    path: Path
    rows: int
    lineage: dict[str, Any]


def _free_name(store: Store, wanted: str | None, default: str) -> str:
    if wanted is not None:
        return wanted  # the store refuses a taken name with a one-line error
    names = set(store.dataset_names())
    name, n = default, 1
    while name in names:
        n += 1
        name = f"{default}-{n}"
    return name


def register_export(
    store: Store,
    workspace_root: Path,
    records: list[dict[str, Any]],
    lineage: dict[str, Any],
    options: ExportOptions,
    default_name: str,
    reference: str | None,
) -> ExportResult:
    """Write the file, then register the dataset and its lineage; a failed registration
    removes the file, so neither exists without the other."""
    name = _free_name(store, options.name, default_name)
    if name in store.dataset_names():
        raise BadInputError(f"a dataset named {name!r} already exists; choose another --name")
    suffix = ".jsonl" if options.format == "jsonl" else ""
    path = (options.out or workspace_root / "exports" / f"{name}{suffix}").expanduser()
    if path.exists():
        raise BadInputError(f"{path} already exists; choose another --out (nothing was written)")
    rows = json.loads(json.dumps(records, ensure_ascii=False))
    split_fingerprint = fingerprint_rows(rows)
    lineage = {**lineage, "file": str(path.resolve()), "file_format": options.format}
    new = NewDataset(
        name=name,
        source=f"export:{lineage['kind']} from {lineage['source']}",
        fingerprint=hashlib.sha256(f"{EXPORT_SPLIT}:{split_fingerprint}".encode()).hexdigest()[:16],
        splits=[NewSplit(EXPORT_SPLIT, rows, split_fingerprint)],
        task="generation",
        input_columns=["messages" if reference is None else "prompt"],
        reference_column=reference,
        metrics=DEFAULT_METRICS["generation"] if reference is not None else [],
        card=f"Exported by `tunelab export {lineage['kind']}` from {lineage['source']}.",
    )
    _write(path, rows, options.format)
    try:
        dataset = store.add_exported_dataset(new, lineage)
    except BaseException:
        _remove(path)
        raise
    return ExportResult(dataset, path, len(rows), lineage)


def _write(path: Path, rows: list[dict[str, Any]], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        # Deferred: `datasets` pulls in pyarrow and pandas.
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(path))
        return
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(partial, path)  # a reader never sees half a file


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

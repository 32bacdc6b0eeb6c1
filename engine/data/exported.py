"""Dataset rows exported into a job folder, and read back there without the database.

A worker on another host never opens `tunelab.db`: at submit time the front end writes the
splits it needs as `rows-<split>.jsonl` beside the job's spec, and the worker serves the
store's `dataset_rows` from those files. Training jobs (`training/job_spec.py`) and remote
evaluations (`evaluation/remote_spec.py`) share this one format and reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from tunelab.engine.errors import EngineError
from tunelab.store import DatasetRow, Store

ROWS_PREFIX = "rows-"
T = TypeVar("T")


def export_splits(
    store: Store, dataset: str, splits: Sequence[str], folder: Path
) -> dict[str, str]:
    """Write each split's rows into `folder`; returns split → file name (relative)."""
    folder.mkdir(parents=True, exist_ok=True)
    exported: dict[str, str] = {}
    for split in splits:
        name = f"{ROWS_PREFIX}{split}.jsonl"
        with (folder / name).open("w", encoding="utf-8") as fh:
            for row in store.dataset_rows(dataset, split):
                fh.write(json.dumps({"id": row.id, "idx": row.idx, "data": row.data}) + "\n")
        exported[split] = name
    return exported


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """A spec file appears whole or not at all (a worker may start reading it at once)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def read_spec_file(path: Path, what: str, build: Callable[[dict[str, Any]], T]) -> T:
    """A spec file `write_json_atomically` wrote, built into its record by `build`; a missing,
    unreadable or malformed file is one error naming `what` ("the job spec")."""
    try:
        return build(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"cannot read {what} {path}: {exc}") from exc


def record_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """A frozen record from its dict, ignoring keys this version does not know."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in known})


class ExportedRows:
    """`dataset_rows` served from the exported files of one spec, each split read once.

    Args:
        folder: the job folder.
        splits: split → exported file name, as `export_splits` returned it.
        what: how errors name the spec ("the job spec", "the evaluation spec").
    """

    def __init__(self, folder: str | Path, splits: dict[str, str], what: str) -> None:
        self.folder = Path(folder)
        self.splits = splits
        self.what = what
        self._rows: dict[str, list[DatasetRow]] = {}

    def dataset_rows(
        self,
        dataset: str,
        split: str,
        indices: Iterable[int] | None = None,
        limit: int | None = None,
    ) -> list[DatasetRow]:
        if split not in self.splits:
            raise EngineError(f"split {split!r} was not exported with {self.what}")
        if split not in self._rows:
            with (self.folder / self.splits[split]).open(encoding="utf-8") as fh:
                self._rows[split] = [
                    DatasetRow(int(r["id"]), int(r["idx"]), dict(r["data"]))
                    for r in map(json.loads, fh)
                ]
        rows = self._rows[split]
        if indices is not None:
            wanted = set(indices)
            rows = [r for r in rows if r.idx in wanted]
        return rows[:limit] if limit is not None else list(rows)

"""Adding datasets to a workspace: JSONL, CSV or Parquet files (through `datasets`), or a hub id.

Files are checked line by line first, so a bad file gets a one-line error naming the file,
line or column instead of a parser traceback; nothing is written unless the whole file is good.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.store import Dataset, NewDataset, NewSplit, Store

MAX_ROW_BYTES = 1_000_000
"""A row larger than this is almost certainly a mistake (a whole file on one line)."""
MAX_CLASSIFICATION_LABELS = 50
SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "eval": "test",
}
FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
LABEL_COLUMNS = ("label", "labels", "category", "class", "queue", "intent")
REFERENCE_COLUMNS = ("output", "answer", "reference", "target", "completion", "response")
ID_COLUMNS = ("id", "idx", "_id", "uid")
DEFAULT_METRICS = {
    "classification": ["accuracy", "macro_f1"],
    "generation": ["exact_match", "bleu", "rougeL"],
}


@dataclass
class DatasetOptions:
    """How to read the files and which columns play which role."""

    name: str
    split: str | None = None
    input_columns: list[str] = field(default_factory=list)
    reference_column: str | None = None
    labels: list[str] = field(default_factory=list)
    task: str | None = None
    metrics: list[str] = field(default_factory=list)
    card: str = ""


def split_name_for(path: Path) -> str | None:
    """The split a file name implies: `irony-val.jsonl` → validation, `test.csv` → test."""
    words = re.split(r"[^a-z]+", path.stem.lower())
    for word in reversed(words):
        if word in SPLIT_WORDS:
            return SPLIT_WORDS[word]
    return None


def _check_jsonl(path: Path) -> None:
    columns: list[str] | None = None
    with path.open("rb") as handle:
        count = 0
        for number, raw in enumerate(handle, start=1):
            if len(raw) > MAX_ROW_BYTES:
                raise BadInputError(
                    f"{path}: line {number} is {len(raw):,} bytes (limit {MAX_ROW_BYTES:,}); "
                    "split it or remove it"
                )
            try:  # a byte-order mark on line 1 (Windows editors) is fine; `datasets` skips it
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise BadInputError(
                    f"{path}: line {number} is not UTF-8 (byte {exc.start}); "
                    "re-save the file as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BadInputError(
                    f"{path}: invalid JSON on line {number}, column {exc.colno}: {exc.msg}"
                ) from None
            if not isinstance(row, dict):
                raise BadInputError(f"{path}: line {number} is not a JSON object")
            keys = sorted(row)
            if columns is None:
                columns = keys
            elif keys != columns:
                missing = sorted(set(columns) - set(keys))
                extra = sorted(set(keys) - set(columns))
                detail = "; ".join(
                    part
                    for part in (
                        f"missing {', '.join(missing)}" if missing else "",
                        f"unexpected {', '.join(extra)}" if extra else "",
                    )
                    if part
                )
                raise BadInputError(
                    f"{path}: line {number} has different columns from line 1 ({detail})"
                )
            count += 1
    if count == 0:
        raise BadInputError(f"{path} is empty; it needs at least one JSON object per line")


def _check_csv(path: Path) -> None:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise BadInputError(f"{path} is empty; it needs a header row and data rows")
            rows = 0
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise BadInputError(
                        f"{path}: line {reader.line_num} has {len(row)} columns, the header "
                        f"has {len(header)}"
                    )
                if sum(len(c) for c in row) > MAX_ROW_BYTES:
                    raise BadInputError(
                        f"{path}: line {reader.line_num} is larger than {MAX_ROW_BYTES:,} bytes"
                    )
                rows += 1
            if rows == 0:
                raise BadInputError(f"{path} has a header but no data rows")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"{path} is not UTF-8 (byte {exc.start}); re-save the file as UTF-8"
        ) from None
    except csv.Error as exc:
        raise BadInputError(f"{path}: not valid CSV ({exc})") from None


def check_file(path: Path) -> str:
    """Validate a data file and return its `datasets` builder name."""
    if not path.exists():
        raise BadInputError(f"{path} does not exist; check the path")
    if path.is_dir():
        raise BadInputError(f"{path} is a directory; give the data files inside it")
    builder = FORMATS.get(path.suffix.lower())
    if builder is None:
        raise BadInputError(
            f"{path}: unsupported file type {path.suffix or '(none)'}; use .jsonl, .csv or .parquet"
        )
    if path.stat().st_size == 0:
        raise BadInputError(f"{path} is empty")
    if builder == "json":
        _check_jsonl(path)
    elif builder == "csv":
        _check_csv(path)
    return builder


def read_rows(path: Path, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Read one checked file through `datasets` into plain rows."""
    builder = check_file(path)
    # Deferred: `datasets` takes a second or two to import.
    import datasets as hf_datasets

    hf_datasets.disable_progress_bars()
    verbosity = hf_datasets.logging.get_verbosity()
    # Its own error log ("Failed to read schema ...") would print a second line beside ours.
    hf_datasets.logging.set_verbosity(hf_datasets.logging.CRITICAL)
    try:
        loaded = hf_datasets.load_dataset(
            builder,
            data_files=str(path),
            split="train",
            cache_dir=str(cache_dir) if cache_dir else None,
        )
    except Exception as exc:  # datasets raises many types; all mean "could not parse"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"{path}: could not be read ({first_line})") from None
    finally:
        hf_datasets.logging.set_verbosity(verbosity)
    rows = [dict(r) for r in loaded]
    if not rows:
        raise BadInputError(f"{path} has no rows")
    return rows


def read_hub(hub_id: str, cache_dir: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        raise BadInputError(
            f"{hub_id!r} is not a file here and the hub is offline (HF_HUB_OFFLINE is set); "
            "give a local JSONL, CSV or Parquet file"
        )
    import datasets as hf_datasets

    try:
        loaded = hf_datasets.load_dataset(hub_id, cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(
            f"could not load {hub_id!r} from the hub (offline or not found: {first_line})"
        ) from None
    return {name: [dict(r) for r in split] for name, split in loaded.items()}


def fingerprint_rows(rows: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(json.dumps(rows, default=str))


def infer_roles(
    columns: Sequence[str], rows: Sequence[dict[str, Any]], options: DatasetOptions
) -> tuple[str, list[str], str | None, list[str]]:
    """Decide task, input columns, reference column and label set, honouring explicit options."""
    for col in [*options.input_columns, options.reference_column]:
        if col is not None and col not in columns:
            raise BadInputError(
                f"column {col!r} is not in the data; columns are: {', '.join(columns)}"
            )
    reference = options.reference_column
    labels = list(options.labels)
    task = options.task
    if reference is None:
        label_like = [c for c in LABEL_COLUMNS if c in columns]
        ref_like = [c for c in REFERENCE_COLUMNS if c in columns]
        if task == "classification" or labels:
            if not label_like:
                raise BadInputError(
                    "no label column found; name it with --reference COLUMN "
                    f"(columns: {', '.join(columns)})"
                )
            reference = label_like[0]
        elif label_like:
            reference = label_like[0]
        elif ref_like:
            reference = ref_like[0]
    if reference is not None:
        values = {str(r.get(reference)) for r in rows}
        if not labels and task in (None, "classification"):
            short = all(len(v) <= 40 for v in values)
            if (
                len(values) <= MAX_CLASSIFICATION_LABELS
                and short
                and (task == "classification" or reference in LABEL_COLUMNS)
            ):
                labels = sorted(values)
        if labels:
            outside = sorted(values - set(labels))
            if outside:
                raise BadInputError(
                    f"label {outside[0]!r} in column {reference!r} is not in the declared label "
                    f"set ({', '.join(labels)}); fix the row or add the label with --labels"
                )
    if task is None:
        task = "classification" if labels else "generation"
    if task == "classification" and not labels:
        raise BadInputError("a classification dataset needs a label set; pass --labels a,b,c")
    inputs = list(options.input_columns) or [
        c for c in columns if c != reference and c not in ID_COLUMNS
    ]
    if not inputs:
        raise BadInputError(
            f"no input columns left besides the reference {reference!r}; name them with --input"
        )
    return task, inputs, reference, labels


def build_dataset(
    splits: dict[str, list[dict[str, Any]]], source: str, options: DatasetOptions
) -> NewDataset:
    """Check column consistency across splits and assemble the record to store."""
    first_split = next(iter(splits))
    columns = sorted(splits[first_split][0].keys())
    for name, rows in splits.items():
        cols = sorted(rows[0].keys())
        if cols != columns:
            raise BadInputError(
                f"split {name!r} has columns {', '.join(cols)} but {first_split!r} has "
                f"{', '.join(columns)}; make them match"
            )
    all_rows = [r for rows in splits.values() for r in rows]
    task, inputs, reference, labels = infer_roles(columns, all_rows, options)
    new_splits = [
        NewSplit(name=name, rows=_jsonable(rows), fingerprint=fingerprint_rows(rows))
        for name, rows in splits.items()
    ]
    fingerprint = hashlib.sha256(
        "".join(f"{s.name}:{s.fingerprint}" for s in new_splits).encode()
    ).hexdigest()[:16]
    return NewDataset(
        name=options.name,
        source=source,
        fingerprint=fingerprint,
        splits=new_splits,
        task=task,
        input_columns=inputs,
        reference_column=reference,
        labels=labels,
        metrics=list(options.metrics) or DEFAULT_METRICS[task],
        card=options.card,
    )


def add_dataset(
    store: Store,
    sources: Sequence[Path | str],
    options: DatasetOptions,
    cache_dir: Path | None = None,
    replace: bool = False,
) -> Dataset:
    """Read files (or a hub id), infer column roles, and store the dataset in one transaction.

    Args:
        sources: data files (split from each file's name, or `options.split` for one file),
            or a single hub id such as `owner/name` (online only).
    """
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", options.name):
        raise BadInputError(
            f"bad dataset name {options.name!r}: use letters, digits, '.', '_' or '-'"
        )
    if options.task not in (None, "classification", "generation"):
        raise BadInputError(f"task must be classification or generation, not {options.task!r}")
    if not sources:
        raise BadInputError("give at least one data file")
    splits: dict[str, list[dict[str, Any]]] = {}
    paths = [Path(s).expanduser() for s in sources]
    if (
        len(paths) == 1
        and not paths[0].exists()
        and re.match(r"^[\w.-]+/[\w.-]+$", str(sources[0]))
    ):
        splits = read_hub(str(sources[0]), cache_dir)
        source = f"hub:{sources[0]}"
    else:
        if options.split and len(paths) > 1:
            raise BadInputError("--split names the split of a single file; give one file with it")
        for path in paths:
            split = options.split or split_name_for(path) or ("all" if len(paths) == 1 else None)
            if split is None:
                raise BadInputError(
                    f"cannot tell the split of {path.name}; put train/validation/test in the "
                    "file name or add one file at a time with --split"
                )
            if split in splits:
                raise BadInputError(f"two files map to split {split!r}; rename one")
            splits[split] = read_rows(path, cache_dir)
        source = ", ".join(str(p.resolve()) for p in paths)
    new = build_dataset(splits, source, options)
    return store.add_dataset(new, replace=replace)

"""Adding datasets to a workspace: JSONL, CSV or Parquet files, or a hub id (through `datasets`).

A file's bytes are read once, checked line by line (a one-line error naming the file, line or
column instead of a parser traceback) and parsed from those same bytes; nothing is written
unless the whole file is good, and only a hub id touches the network. Contents that would
score wrongly later (one-class or mixed-type labels, columns no template can name, nothing a
metric can score against) are refused here with what to fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import keyword
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.engine.errors import BadInputError, one_line
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
    answer_rule: str | None = None
    """How to read the final answer out of a reference; None detects GSM8K-style `#### N`."""


GSM8K_REFERENCE = re.compile(r"####\s*[-+$]?\d[\d,]*(?:\.\d+)?\s*$")
"""A worked solution ending in `#### 18`, as GSM8K writes its references."""


def detect_answer_rule(rows: Sequence[dict[str, Any]], reference: str | None) -> str | None:
    """`gsm8k` when every reference ends in `#### N`, so its final number is what is scored."""
    if reference is None or not rows:
        return None
    values = [row.get(reference) for row in rows]
    if all(isinstance(v, str) and GSM8K_REFERENCE.search(v) for v in values):
        return "gsm8k"
    return None


def split_name_for(path: Path) -> str | None:
    """The split a file name implies: `irony-val.jsonl` → validation, `test.csv` → test."""
    words = re.split(r"[^a-z]+", path.stem.lower())
    for word in reversed(words):
        if word in SPLIT_WORDS:
            return SPLIT_WORDS[word]
    return None


def _check_jsonl(path: Path, data: bytes) -> list[dict[str, Any]]:
    columns: list[str] | None = None
    rows: list[dict[str, Any]] = []
    with io.BytesIO(data) as handle:
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
            rows.append(row)
    if not rows:
        raise BadInputError(f"{path} is empty; it needs at least one JSON object per line")
    return rows


def _check_csv(path: Path, data: bytes) -> None:
    try:
        with io.StringIO(data.decode("utf-8-sig"), newline="") as handle:
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
    """Validate a data file and return its format: json, csv or parquet."""
    return _read_checked(path)[0]


def _read_checked(path: Path) -> tuple[str, bytes, list[dict[str, Any]] | None]:
    """Read a data file's bytes once and validate them; JSONL rows come back parsed.

    Everything after this works on these bytes, never on the path again, so a file changed
    while (or since) it was checked cannot be stored in place of what was checked.
    """
    if not path.exists():
        raise BadInputError(f"{path} does not exist; check the path")
    if path.is_dir():
        raise BadInputError(f"{path} is a directory; give the data files inside it")
    builder = FORMATS.get(path.suffix.lower())
    if builder is None:
        raise BadInputError(
            f"{path}: unsupported file type {path.suffix or '(none)'}; use .jsonl, .csv or .parquet"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not data:
        raise BadInputError(f"{path} is empty")
    if builder == "json":
        return builder, data, _check_jsonl(path, data)
    if builder == "csv":
        _check_csv(path, data)
    return builder, data, None


def read_rows(path: Path, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Read one checked file into plain rows, parsed from the very bytes that were checked.

    Local files never go through `datasets.load_dataset`: its cache is keyed on path and
    modification time (a file rewritten with its mtime kept came back as the old rows), and
    it looks up the hub even for a local file. `cache_dir` is unused here (kept for callers).
    """
    del cache_dir
    builder, data, rows = _read_checked(path)
    if rows is None:
        try:
            rows = _parse_table(builder, data)
        except BadInputError:
            raise
        except Exception as exc:  # pandas and pyarrow raise many types; all mean "unreadable"
            first_line = one_line(exc)
            raise BadInputError(f"{path}: could not be read ({first_line})") from None
    if not rows:
        raise BadInputError(f"{path} has no rows")
    return rows


def _parse_table(builder: str, data: bytes) -> list[dict[str, Any]]:
    """CSV or Parquet bytes as rows, typed as the `datasets` library would type them."""
    # Deferred: pyarrow and pandas take a moment to import.
    import pyarrow as pa
    import pyarrow.parquet as pq

    if builder == "parquet":
        table = pq.read_table(pa.BufferReader(data))
    else:
        import pandas as pd

        frame = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
        table = pa.Table.from_pandas(frame, preserve_index=False)
    return [dict(r) for r in table.to_pylist()]


HUB_TIMEOUT_S = 10
"""One attempt at the hub, this long, before saying it cannot be reached."""


def read_hub(hub_id: str, cache_dir: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every split of a hub dataset; the only path that touches the network.

    One metadata request with a short timeout comes first, so an unreachable hub is one line
    after seconds rather than a minute of the download layer's retries.
    """
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        raise BadInputError(
            f"{hub_id!r} is not a file here and the hub is offline (HF_HUB_OFFLINE is set); "
            "give a local JSONL, CSV or Parquet file"
        )
    # Deferred: only a hub id needs the hub client.
    from huggingface_hub import HfApi

    try:
        HfApi().dataset_info(hub_id, timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # connection, timeout, 404, auth: all end the attempt
        first_line = one_line(exc)
        raise BadInputError(
            f"could not reach {hub_id!r} on the hub (offline or not found: {first_line}); "
            "give a local JSONL, CSV or Parquet file"
        ) from None
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(HUB_TIMEOUT_S))
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(HUB_TIMEOUT_S))
    # Deferred: `datasets` takes a second or two to import.
    import datasets as hf_datasets

    hf_datasets.disable_progress_bars()
    try:
        loaded = hf_datasets.load_dataset(hub_id, cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as exc:
        first_line = one_line(exc)
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
    if task == "classification" and reference is not None:
        _check_labels(rows, reference, labels)
    if reference is None and not options.metrics:
        raise BadInputError(
            "no reference column found, so no default metric can score a run (columns: "
            f"{', '.join(columns)}); name the answer column with --reference COLUMN, or pass "
            "--metrics with metrics that need no reference"
        )
    inputs = list(options.input_columns) or [
        c for c in columns if c != reference and c not in ID_COLUMNS
    ]
    if not inputs:
        raise BadInputError(
            f"no input columns left besides the reference {reference!r}; name them with --input"
        )
    for column in inputs:
        _check_template_name(column)
    return task, inputs, reference, labels


JINJA_RESERVED = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "for", "true", "false", "none", "loop"}
)
"""Words a template reads as syntax or as its own variable, never as a column."""


def _check_template_name(column: str) -> None:
    """Refuse an input column that no template could name (`{{ tweet text }}` cannot work)."""
    hidden = [c for c in column if unicodedata.category(c) in {"Cf", "Cc", "Zl", "Zp"}]
    if hidden:
        raise BadInputError(
            f"column {column!r} contains an invisible character (U+{ord(hidden[0]):04X}), so "
            "no template can name it; rename the column in the file, or choose other columns "
            "with --input"
        )
    if column.isidentifier() and not keyword.iskeyword(column) and column not in JINJA_RESERVED:
        return
    suggestion = re.sub(r"\W+", "_", column.strip()).strip("_") or "text"
    if suggestion[0].isdigit() or keyword.iskeyword(suggestion) or suggestion in JINJA_RESERVED:
        suggestion = f"col_{suggestion}"
    raise BadInputError(
        f"column {column!r} cannot be named in a template (use letters, digits and _); rename "
        f"it in the file (e.g. {suggestion!r}), or choose other columns with --input"
    )


def _check_labels(rows: Sequence[dict[str, Any]], reference: str, labels: list[str]) -> None:
    """Refuse labels that would be scored wrongly: empty, of mixed types, or a single class.

    Labels are compared as text, so `1`, `"1"` and `true` would silently merge or split.
    """
    kinds: dict[str, Any] = {}
    for number, row in enumerate(rows, start=1):
        value = row.get(reference)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise BadInputError(
                f"row {number} has an empty label in column {reference!r}; fill it in or "
                "remove the row"
            )
        kinds.setdefault(type(value).__name__, value)
    if len(kinds) > 1:
        shown = ", ".join(f"{value!r} ({kind})" for kind, value in sorted(kinds.items()))
        raise BadInputError(
            f"labels in column {reference!r} mix types: {shown}; write every label the same "
            "way (e.g. all as strings)"
        )
    if len(labels) < 2:
        raise BadInputError(
            f"label column {reference!r} has only one class ({', '.join(map(repr, labels))}); a "
            "classifier needs at least two: add rows of another class, declare the set with "
            "--labels a,b, or use --task generation"
        )


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
    answer_rule = options.answer_rule
    if answer_rule is None and task == "generation":
        answer_rule = detect_answer_rule(all_rows, reference)
    if answer_rule is not None and reference is None:
        raise BadInputError("an answer rule reads the reference column, and there is none")
    metrics = list(options.metrics) or (["final_answer"] if answer_rule else DEFAULT_METRICS[task])
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
        metrics=metrics,
        card=options.card,
        answer_rule=answer_rule,
    )


def add_dataset(
    store: Store,
    sources: Sequence[Path | str],
    options: DatasetOptions,
    cache_dir: Path | None = None,
    replace: bool = False,
    check: Callable[[NewDataset], None] | None = None,
) -> Dataset:
    """Read files (or a hub id), infer column roles, and store the dataset in one transaction.

    Args:
        sources: data files (split from each file's name, or `options.split` for one file),
            or a single hub id such as `owner/name` (online only).
        check: a last check of the assembled record before anything is written (the CLI
            validates the metrics with the evaluation layer, which this package sits below).
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
        and paths[0].suffix.lower() not in FORMATS  # `data/train.jsonl` is a missing file
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
    if check is not None:
        check(new)
    return store.add_dataset(new, replace=replace)

"""What an export keeps and where it goes: one dataclass, validated on construction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.engine.errors import BadInputError

FORMATS = ("jsonl", "hf")
"""`jsonl`: one file; `hf`: a folder `datasets.load_from_disk` reads."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export and where.

    Args:
        min_rating: SFT keeps outputs rated at least this (corrected rows always qualify).
        corrected_only: SFT keeps only corrected rows, with the correction as the completion.
        include_eval_split: keep rows of splits other than `train_split` (leaks them).
        train_split: the split training may see; rows of every other split are held out.
        name: the dataset to register; default one named after the source.
        out: the file (or folder for `hf`); default `exports/NAME.jsonl` in the workspace.
        format: `jsonl` or `hf`.
    """

    min_rating: int = field(default=4, metadata={"help": "Keep outputs rated at least this (1-5)."})
    corrected_only: bool = field(
        default=False, metadata={"help": "Keep only corrected rows (SFT)."}
    )
    include_eval_split: bool = field(
        default=False,
        metadata={"help": "Also export rows of splits other than the training split."},
    )
    train_split: str = field(
        default="train", metadata={"help": "The split whose rows training may see."}
    )
    name: str | None = field(default=None, metadata={"help": "Name of the dataset to register."})
    out: Path | None = field(default=None, metadata={"help": "File (or folder) to write."})
    format: str = field(default="jsonl", metadata={"help": "jsonl, or hf for a datasets folder."})

    def __post_init__(self) -> None:
        if not 1 <= self.min_rating <= 5:
            raise BadInputError(f"--min-rating is 1 to 5, not {self.min_rating}")
        if self.format not in FORMATS:
            raise BadInputError(f"--format is one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.name is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", self.name):
            raise BadInputError(
                f"bad dataset name {self.name!r}: use letters, digits, '.', '_' or '-'"
            )

    def filters(self) -> dict[str, Any]:
        return {
            "min_rating": self.min_rating,
            "corrected_only": self.corrected_only,
            "include_eval_split": self.include_eval_split,
            "train_split": self.train_split,
        }

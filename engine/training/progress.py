"""A job's progress: the record the training loop reports and the job's stored snapshot.

The worker writes it into the store with `to_dict`; every reader (the CLI's progress lines,
the TUI's job rows) reads it back with `from_dict`, so both sides agree on the keys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainingProgress:
    """Where a run stands; `metrics` holds the metric points produced at this step.

    Args:
        phase: loading, training, evaluating, saving, evaluated or done ("" before any).
        val: the latest validation metrics; `best` the best checkpoint so far
            (model_id, step, value).
        metrics: the points to record at this step (not part of the stored snapshot).
        worker: the process that owns the job (pid, host, start ticks, boot id).
    """

    phase: str = ""
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    train_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str = "rss"
    val: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    worker: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stored snapshot: every field but the per-step metric points."""
        data = asdict(self)
        data.pop("metrics")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainingProgress:
        """Read a stored snapshot; missing or mistyped keys get their defaults.

        Machine-written and possibly from an older or newer worker, so it never raises: a
        queued job's `{}` reads as phase "" at step 0 of 0.
        """
        data = data if isinstance(data, dict) else {}
        out = cls()
        for f in fields(cls):
            if f.name == "metrics" or f.name not in data:
                continue
            value = _coerce(str(f.type), data[f.name])
            if value is not _BAD:
                setattr(out, f.name, value)
        return out


_BAD = object()


def _coerce(kind: str, value: Any) -> Any:
    """`value` as the field's type, or _BAD when it cannot be."""
    if kind.startswith("dict"):
        return dict(value) if isinstance(value, dict) else _BAD
    if value is None:
        return None if "None" in kind else _BAD
    if isinstance(value, bool):
        return _BAD
    if kind.startswith("int"):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            return int(value)
        return _BAD
    if kind.startswith("float"):
        return float(value) if isinstance(value, int | float) else _BAD
    return value if isinstance(value, str) else _BAD

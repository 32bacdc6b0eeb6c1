"""What an evaluation is asked to do and what it reports: request, progress, result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.store import PromptVersion, Run

SCORING_MODES = ("generate", "likelihood")

DEFAULT_BATCH_SIZE = 32
"""Rows an evaluation generates together unless told otherwise (never more than a token budget
allows: see `generation.batched`). On the built-in model on 2 CPU cores, 256 zero-shot rows
took 46-48 s at 8 and 25-28 s at 32 (64: 29-30 s); a decoding step reads every weight
whatever its rows, so small batches waste it."""


@dataclass
class EvalRequest:
    """What to evaluate.

    Args:
        prompt: a prompt reference (`NAME`, `NAME@3`, `NAME:label`) or a version record.
        model: a model argument (`builtin`, a model name, a folder, a hub id).
        dataset: the dataset's name in the workspace.
        split: the split; may be left out when the dataset has only one.
        limit: evaluate the first N rows.
        sample: evaluate N rows drawn at random with `seed` (reproducible).
        seed: the seed for `sample`.
        settings: generation settings that override the prompt version's.
        scoring: 'generate' (generate then score) or 'likelihood' (most likely label).
        metrics: metric names; empty means the dataset's own list.
        batch_size: rows generated together, at most (a local model writes results every 4 batches'
            worth of rows, an endpoint every batch).
        resume_run_id: finish this interrupted run instead of starting a new one.
        use_cache: read and write the response cache for deterministic generations.
        latency_probe: after the run, time this many rows one at a time (batch size 1, a
            sample seeded by `seed`, after a warm-up) for real per-request latency; 0: none.
        samples: outputs generated per row (self-consistency); above 1 needs temperature > 0,
            and each row is also scored by the majority vote of its samples.
    """

    prompt: str | PromptVersion = ""
    model: str = "builtin"
    dataset: str = ""
    split: str | None = None
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    scoring: str = "generate"
    metrics: list[str] = field(default_factory=list)
    batch_size: int = DEFAULT_BATCH_SIZE
    resume_run_id: int | None = None
    use_cache: bool = True
    latency_probe: int = 20
    samples: int = 1

    def __post_init__(self) -> None:
        if self.scoring not in SCORING_MODES:
            raise BadInputError(
                f"scoring must be one of {', '.join(SCORING_MODES)}, not {self.scoring!r}"
            )
        if self.limit is not None and self.sample is not None:
            raise BadInputError("use either a limit (first N rows) or a sample (N random rows)")
        for name in ("limit", "sample"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BadInputError(f"{name} must be at least 1, got {value}")
        if self.latency_probe < 0:
            raise BadInputError(f"latency probe must be 0 (none) or more, not {self.latency_probe}")
        if self.batch_size < 1:
            raise BadInputError(f"batch size must be at least 1, got {self.batch_size}")
        if self.samples < 1:
            raise BadInputError(f"samples must be at least 1, got {self.samples}")


@dataclass(frozen=True)
class EvalProgress:
    """Where a run stands; `eta` is None until a row has been generated."""

    done: int
    total: int
    cached: int
    elapsed: float
    eta: float | None
    run_id: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    """Running means of the per-example scores so far (e.g. accuracy), for live display."""


@dataclass(frozen=True)
class EvalResult:
    """A finished (or interrupted) run and its aggregate metrics."""

    run: Run
    metrics: dict[str, Any]
    rows: int
    """Rows scored in the run, over all its sessions."""
    cached_rows: int
    """Rows this call took from the response cache."""
    new_rows: int = 0
    """Rows this call scored (cached or generated)."""
    interrupted: bool = False

    @property
    def run_id(self) -> int:
        return self.run.id


ProgressCallback = Callable[[EvalProgress], None]
StopCheck = Callable[[], bool]

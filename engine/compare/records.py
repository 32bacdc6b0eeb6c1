"""The records a run comparison returns: per-run summaries, metric deltas, row diffs, costs.

Kept apart from `runs.py` so that readers of a comparison (the CLI, reports, diffs, the TUI)
can name its types without the comparison logic, and so each file holds one idea.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.engine.compare.changes import BROKEN, DIFFERS, FIXED
from tunelab.engine.compare.cost import BreakEven, RunCost
from tunelab.engine.text_diff import WordDiffSegment


@dataclass(frozen=True)
class RunSummary:
    id: int
    prompt_ref: str
    model_name: str
    model_id: int
    dataset_name: str
    split: str
    status: str
    rows: int
    scoring: str
    settings: dict[str, Any]
    description: str = ""
    """What the run is: "route@4 on builtin", "route-ft@1 on LoRA job 1, step 80"."""
    prompt_effort: str = ""
    """How much search went into the prompt: "best of 4 prompt candidates searched from
    route@1, selected on route/validation", or "one hand-written prompt"."""

    @property
    def label(self) -> str:
        """The run's id and what it is, as every comparison view names it."""
        what = self.description or f"{self.prompt_ref} on {self.model_name}"
        return f"run {self.id} ({what})"


@dataclass(frozen=True)
class MetricDelta:
    """One run against the baseline on one metric."""

    baseline_run_id: int
    run_id: int
    delta: float
    """Run minus baseline."""
    ci: tuple[float, float] | None
    p_value: float | None
    test: str
    significant: bool
    rows_needed: int | None
    """Rows a test would need to detect a difference this size (at `1 - confidence`, power 0.8)."""
    verdict: str
    confidence: float = 0.95
    """The level of `ci`: the comparison's level, or the Holm-adjusted one for several runs;
    `ci` excludes 0 exactly when the test is significant at it."""
    p_adjusted: float | None = None
    """`p_value` adjusted (Holm) for the comparisons with the baseline; equal for one."""
    comparisons: int = 1
    """How many runs were compared with the baseline on this metric."""
    rows: int = 0
    """How many paired rows the test used."""


@dataclass(frozen=True)
class MetricComparison:
    name: str
    kind: str
    """'binary', 'continuous' or 'corpus'."""
    higher_is_better: bool
    rows: int
    values: list[float]
    """One value per run, in run order."""
    deltas: list[MetricDelta]
    """One per run after the first."""

    # The first run after the baseline, flattened for screens that show one pair.
    @property
    def delta(self) -> float:
        return self.deltas[0].delta

    @property
    def ci_low(self) -> float | None:
        return None if self.deltas[0].ci is None else self.deltas[0].ci[0]

    @property
    def ci_high(self) -> float | None:
        return None if self.deltas[0].ci is None else self.deltas[0].ci[1]

    @property
    def p_value(self) -> float | None:
        return self.deltas[0].p_value

    @property
    def significant(self) -> bool:
        return self.deltas[0].significant

    @property
    def verdict(self) -> str:
        return self.deltas[0].verdict


@dataclass(frozen=True)
class ExampleCounts:
    """How rows moved between the baseline and a run on a right/wrong score."""

    score: str
    fixed: int
    broken: int
    both_right: int
    both_wrong: int
    fixed_rows: list[int] = field(default_factory=list)
    broken_rows: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class RowDiff:
    """One row's outputs from two runs with a word-level diff between them."""

    row_idx: int
    reference: str | None
    output_a: str
    output_b: str
    prediction_a: str | None
    prediction_b: str | None
    scores_a: dict[str, Any]
    scores_b: dict[str, Any]
    segments: list[WordDiffSegment]


@dataclass(frozen=True)
class ChangedRow:
    row_idx: int
    change: str
    """'fixed', 'broken' or 'differs'."""
    reference: str | None
    outputs: list[str]


@dataclass(frozen=True)
class PairComparison:
    baseline_run_id: int
    run_id: int
    counts: ExampleCounts | None
    differing_rows: list[int]
    """Rows whose outputs differ (ignoring surrounding whitespace)."""
    examples: list[RowDiff]
    """A few fixed and broken rows (or differing rows) to read."""

    def change(self, row_idx: int) -> str:
        """'fixed' (wrong then right), 'broken' (right then wrong) or 'differs' (outputs differ,
        no right/wrong change); the one classification every view shows."""
        if self.counts is not None and row_idx in self.counts.fixed_rows:
            return FIXED
        if self.counts is not None and row_idx in self.counts.broken_rows:
            return BROKEN
        return DIFFERS

    @property
    def changed_rows(self) -> list[ChangedRow]:
        """The highlighted rows, labelled by `change`."""
        return [
            ChangedRow(r.row_idx, self.change(r.row_idx), r.reference, [r.output_a, r.output_b])
            for r in self.examples
        ]


@dataclass(frozen=True)
class Comparison:
    runs: list[RunSummary]
    rows: int
    """How many rows were compared (shared by every run)."""
    shared_rows_only: bool
    notes: list[str]
    metrics: list[MetricComparison]
    pairs: list[PairComparison]
    costs: list[RunCost]
    break_even: list[BreakEven]
    seed: int
    n_boot: int
    confidence: float
    price_per_gpu_hour: float
    price_per_cpu_hour: float = 0.0
    """The CPU-hour price CPU training was charged at (from the workspace config)."""

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.runs]

    @property
    def verdict(self) -> str:
        """The headline: the first metric's verdict for the first pair."""
        return self.metrics[0].verdict if self.metrics else "no comparable metric"

    @property
    def examples(self) -> list[ChangedRow]:
        """The first pair's highlighted rows, labelled fixed, broken or differs."""
        return self.pairs[0].changed_rows

    def metric(self, name: str) -> MetricComparison:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

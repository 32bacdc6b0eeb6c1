"""What a data-efficiency curve is, as the CLI, the TUI and the decision report read it.

A curve is a set of fine-tuning jobs on nested, seeded subsets of one training split, each
best checkpoint evaluated on one evaluation split, next to the best prompt run on the same
rows. These records carry no logic beyond reading themselves, so a report can name them
without the code that runs the jobs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CurvePoint:
    """One training-set size: its repeats pooled."""

    size: int
    """Training examples in the subset (the whole split for 'all')."""
    repeats_planned: int
    repeats_done: int
    """Repeats whose evaluation finished; the point is drawn once this is at least 1."""
    metric_mean: float | None
    """Mean of the curve's metric over the finished repeats."""
    ci: tuple[float, float] | None
    """Interval of the point: over repeats when there are several, else the run's own."""
    run_ids: tuple[int, ...]
    job_ids: tuple[int, ...]
    train_seconds: float
    """Training wall time summed over the finished repeats."""
    train_cost_usd: float | None
    """At the workspace's price for the device the jobs ran on; None when it has no price."""
    delta_vs_prompt: float | None
    """Fine-tune minus the prompt run on the paired rows (first repeat's run)."""
    delta_ci: tuple[float, float] | None
    p_value: float | None
    """Paired test against the prompt run on the same rows."""
    significantly_better: bool
    """The fine-tune beats the prompt run at the curve's confidence level."""
    devices: tuple[str, ...] = ()
    """What the finished repeats trained on ('cpu', 'gpu'), as their cost was priced."""
    errors: tuple[str, ...] = ()
    """Why repeats failed (their job, or their evaluation), one line each."""


@dataclass(frozen=True)
class CurveSummary:
    curve_id: int
    dataset: str
    base_model: str
    method: str
    metric: str
    eval_split: str
    prompt_ref: str
    """The prompt version the fine-tunes train and evaluate through ("emotion@1")."""
    prompt_run_id: int | None
    """The prompt side: the run the curve is drawn against (the band)."""
    prompt_metric: float | None
    prompt_ci: tuple[float, float] | None
    points: tuple[CurvePoint, ...]
    """Sorted by size."""
    crossover_size: int | None
    """The smallest size significantly better than the prompt run; None when none is."""
    state: str
    """'running' while any job or evaluation is unfinished, 'finished', or 'failed'."""
    confidence: float = 0.95
    wall_seconds: float | None = None
    """From the first job's start to the last evaluation's end, once finished."""
    notes: tuple[str, ...] = ()
    """What the state means and what to do: failed points, a driver that is gone."""
    repeats: int = 1
    """Repeats planned per size."""
    prompt_run_source: str = "best"
    """How the prompt run was chosen: 'given' (--against), 'best' (the best finished run of
    the prompt on the base model and rows), or 'evaluated' (by the curve's driver)."""

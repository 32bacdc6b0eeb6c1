"""What a robustness suite found, as the CLI, the TUI, compare and the decision report read it.

A suite re-runs one clean run's prompt version and model on perturbed copies of the same
rows (input perturbations) or with small changes to the prompt itself (prompt
perturbations), and reports each perturbation's metric drop against the clean run on the
paired rows. Records only: no code that perturbs or evaluates lives here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PerturbationResult:
    perturbation: str
    """'typos', 'case', 'whitespace', 'punctuation', 'emoji', 'truncate', or a prompt-side
    one: 'paraphrase', 'label_order', 'shot_order'."""
    kind: str
    """'input' (the rows change) or 'prompt' (the prompt version changes)."""
    perturbed_run_id: int
    metric: str
    clean_metric: float
    perturbed_metric: float
    drop: float
    """Clean minus perturbed on the paired rows (positive: the perturbation hurt)."""
    ci: tuple[float, float] | None
    """Paired interval of `drop`."""
    p_value: float | None
    rows: int
    """Paired rows behind the drop."""
    detail: str = ""
    """What was changed: "typos at 5% of characters, seed 0", "instruction paraphrase 2"."""
    test: str = ""
    """The paired test behind `p_value` ("mcnemar-exact", "paired bootstrap (BCa)")."""
    p_adjusted: float | None = None
    """`p_value` after Holm's adjustment for the suite's perturbations."""


@dataclass(frozen=True)
class RobustnessSummary:
    suite_id: int
    clean_run_id: int
    seed: int
    results: tuple[PerturbationResult, ...]
    state: str = "finished"
    """'running' while any perturbed run is unfinished, 'finished', or 'failed'."""
    confidence: float = 0.95

    def worst(self) -> PerturbationResult | None:
        """The perturbation with the largest drop, for one-line summaries."""
        return max(self.results, key=lambda r: r.drop, default=None)

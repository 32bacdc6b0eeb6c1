"""Robustness suites: a run re-run on perturbed copies of its rows, or with small changes
to its prompt, and each perturbation's paired metric drop against the clean run.

May import: `tunelab.store`, `engine.errors`, `engine.data`, `engine.prompts`,
`engine.evaluation`, `engine.compare` (and what they import). Never `engine.training`.
"""

from __future__ import annotations

from tunelab.engine.robustness.records import PerturbationResult, RobustnessSummary
from tunelab.engine.robustness.summary import robustness_for_run, summarize_suite

__all__ = ["PerturbationResult", "RobustnessSummary", "robustness_for_run", "summarize_suite"]

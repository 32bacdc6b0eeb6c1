"""Data-efficiency curves: fine-tunes on nested, seeded subsets of a training split,
each evaluated and drawn against training-set size next to the best prompt run.

`records` holds what a curve is (`CurvePoint`, `CurveSummary`); `subsets` draws the nested
subsets and stores them as a derived dataset; `crossover` is the pure crossover decision and
its sentence; `launch` checks a request and queues one training job per size and repeat;
`prompt_side` picks the prompt run a curve is drawn against;
`driver` is the detached process that evaluates each finished job; `summary` reads a curve
back (`summarize_curve`, `latest_curve`).

May import: `tunelab.store`, `engine.errors`, `engine.prompts`, `engine.evaluation`,
`engine.training`, `engine.compare` (and what they import).
"""

from __future__ import annotations

from tunelab.engine.curves.crossover import crossover_sentence, crossover_size
from tunelab.engine.curves.records import CurvePoint, CurveSummary
from tunelab.engine.curves.summary import latest_curve, summarize_curve

__all__ = [
    "CurvePoint",
    "CurveSummary",
    "crossover_sentence",
    "crossover_size",
    "latest_curve",
    "summarize_curve",
]

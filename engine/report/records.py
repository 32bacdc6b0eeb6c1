"""What a decision report holds: the two runs, their comparison, the data curve, both sides'
robustness, how hard each side tried, and the plain sentences derived from those numbers.

Records only: they name the comparison, curve and robustness records but none of the code
that builds, words or draws them, so every front end reads the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.engine.compare.records import Comparison, MetricComparison, RunSummary
from tunelab.engine.compare.search_effort import PromptEffort
from tunelab.engine.curves.records import CurveSummary
from tunelab.engine.robustness.records import RobustnessSummary

TOPICS = {
    "verdict": "Which is better, and how sure",
    "effort": "How hard each side tried",
    "curve": "How much data the fine-tune needs",
    "robustness": "Robustness to sloppy input",
    "speed": "Latency and cost per request",
    "training": "Training cost and break-even",
    "change": "What would change the verdict",
}
"""The report's sections by topic, with their headings, in the order it shows them."""


@dataclass(frozen=True)
class FinetuneEffort:
    """How hard the fine-tune side tried: the fine-tuned runs it was chosen from."""

    runs: int
    """Finished fine-tuned runs on the report's dataset and split (the chosen one included)."""
    models: int
    """Distinct fine-tuned models (checkpoints) behind those runs."""
    jobs: int
    """Distinct training jobs behind those models."""

    def text(self) -> str:
        if self.runs <= 1:
            return "one evaluated fine-tune"
        checkpoints = f"{self.models} checkpoint{'' if self.models == 1 else 's'}"
        jobs = f"{self.jobs} job{'' if self.jobs == 1 else 's'}"
        return f"best of {self.runs} fine-tuned runs ({checkpoints} from {jobs})"


@dataclass(frozen=True)
class ReportSentence:
    """One plain sentence of the report, under one topic."""

    topic: str
    """One of `TOPICS`."""
    text: str
    missing: bool = False
    """True when the sentence says which numbers are missing instead of reading them."""
    command: str | None = None
    """For a missing one: the tunelab command that would produce the numbers."""


@dataclass(frozen=True)
class DecisionReport:
    """Prompt or fine-tune, for one dataset and evaluation split, with the evidence."""

    dataset: str
    split: str
    metric: str
    """The headline metric both runs were chosen and are judged by."""
    selection: str
    """How the two runs were chosen ("named", or best of how many by which metric)."""
    comparison: Comparison
    """`compare_runs([prompt run, fine-tuned run])`: the prompt run is the baseline."""
    prompt_effort: PromptEffort
    finetune_effort: FinetuneEffort
    base_model: str
    """The fine-tune's base model (the curve is looked up for it)."""
    curve: CurveSummary | None
    prompt_robustness: RobustnessSummary | None
    finetune_robustness: RobustnessSummary | None
    sentences: tuple[ReportSentence, ...] = ()

    @property
    def prompt_run(self) -> RunSummary:
        return self.comparison.runs[0]

    @property
    def finetune_run(self) -> RunSummary:
        return self.comparison.runs[1]

    @property
    def headline(self) -> MetricComparison | None:
        """The comparison of the headline metric (None when it could not be compared)."""
        for metric in self.comparison.metrics:
            if metric.name == self.metric:
                return metric
        return self.comparison.metrics[0] if self.comparison.metrics else None

    def about(self, topic: str) -> list[ReportSentence]:
        return [s for s in self.sentences if s.topic == topic]

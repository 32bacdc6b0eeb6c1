"""Self-consistency: a run's rows scored by the majority vote of their samples.

The vote view of a row is the row with the voted answer as its prediction, an output that gave
it, and the scores of that answer under the run's own metrics, so every metric (and every
comparison) reads a vote run's vote exactly as it reads a single output. Run-level vote
metrics are those metrics prefixed `vote_`, plus how much the samples agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tunelab.engine.evaluation.metrics import (
    INVALID,
    Example,
    Metric,
    aggregate_metrics,
    resolve_metrics,
    score_example,
)
from tunelab.engine.evaluation.samples import samples_by_row
from tunelab.engine.evaluation.voting import Vote, majority_vote, sample_answer
from tunelab.store import Run, RunOutput, RunSample, Store

VOTE_PREFIX = "vote_"


@dataclass(frozen=True)
class SampledRow:
    """One row of a sampled run: its first sample (the row's output), the others, the vote."""

    output: RunOutput
    others: tuple[RunSample, ...]
    vote: Vote

    @property
    def texts(self) -> list[str]:
        """Every sample's raw output, in sample order."""
        return [self.output.output, *(s.output for s in self.others)]


def sampled_rows(
    outputs: Sequence[RunOutput], samples: Sequence[RunSample], labels: bool
) -> list[SampledRow]:
    """Each row with its samples and their vote (rows without extra samples vote alone)."""
    grouped = samples_by_row(samples)
    rows: list[SampledRow] = []
    for out in outputs:
        others = tuple(grouped.get(out.row_idx, ()))
        answers = [sample_answer(out.prediction, out.answer_found, labels)]
        answers += [sample_answer(s.prediction, s.answer_found, labels) for s in others]
        rows.append(SampledRow(out, others, majority_vote(answers, labels)))
    return rows


def _reference(out: RunOutput) -> str | None:
    return out.reference_answer if out.reference_answer is not None else out.reference


def voted_output(row: SampledRow, metrics: Sequence[Metric], labels: bool) -> RunOutput:
    """The row as its vote: the voted answer, the first output that gave it, its scores."""
    winner = row.vote.winner
    text = row.texts[winner.first_sample] if winner is not None else row.output.output
    no_answer = INVALID if labels else ""
    prediction = row.vote.answer if row.vote.answer is not None else no_answer
    found = None if row.output.answer_found is None else row.vote.answer is not None
    example = Example(text, prediction, _reference(row.output), found)
    return replace(
        row.output,
        output=text,
        prediction=prediction,
        answer_found=found,
        scores=score_example(metrics, example),
    )


def vote_metrics(
    metrics: Sequence[Metric],
    outputs: Sequence[RunOutput],
    samples: Sequence[RunSample],
    labels: bool,
) -> dict[str, Any]:
    """`vote_<metric>` for each of the run's metrics over the voted rows, `vote_agreement` (mean
    share of samples behind each row's vote), `vote_unanimous_rate` and, for classification,
    `vote_entropy` (mean bits per row)."""
    rows = sampled_rows(outputs, samples, labels)
    if not rows:
        return {}
    voted = [voted_output(r, metrics, labels) for r in rows]
    examples = [Example(v.output, v.prediction or "", _reference(v), v.answer_found) for v in voted]
    aggregate = aggregate_metrics(metrics, examples, [v.scores for v in voted])
    result = {f"{VOTE_PREFIX}{k}": v for k, v in aggregate.items() if k != "n"}
    result["vote_agreement"] = sum(r.vote.agreement for r in rows) / len(rows)
    result["vote_unanimous_rate"] = sum(r.vote.agreement == 1 for r in rows) / len(rows)
    if labels:
        result["vote_entropy"] = sum(r.vote.entropy for r in rows) / len(rows)
    return result


def run_labels(store: Store, run: Run) -> tuple[bool, list[Metric]]:
    """Whether a run's dataset votes on labels, and the run's metrics as it scored them."""
    dataset = store.get_dataset_by_id(run.dataset_id)
    labels = dataset.task == "classification" and bool(dataset.labels)
    metrics = resolve_metrics(
        run.metric_names, dataset.task, dataset.labels, dataset.reference_column is not None
    )
    return labels, metrics


def voted_outputs(store: Store, run: Run, outputs: Sequence[RunOutput]) -> list[RunOutput]:
    """A run's rows (those given) as their majority votes, scored with the run's metrics."""
    labels, metrics = run_labels(store, run)
    rows = sampled_rows(outputs, store.run_samples(run.id), labels)
    return [voted_output(r, metrics, labels) for r in rows]

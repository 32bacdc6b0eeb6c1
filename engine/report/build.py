"""Assemble a decision report: choose the two runs, compare them, look up the data curve and
both sides' robustness suites, then derive the sentences from those numbers alone."""

from __future__ import annotations

from dataclasses import replace

from tunelab.engine.compare.runs import compare_runs
from tunelab.engine.compare.search_effort import prompt_effort
from tunelab.engine.report.records import DecisionReport
from tunelab.engine.report.selection import choose_runs
from tunelab.engine.report.sentences import decision_sentences
from tunelab.store import Store


def with_sentences(report: DecisionReport) -> DecisionReport:
    """The report with its sentences derived from its own numbers (any before are replaced)."""
    return replace(report, sentences=decision_sentences(report))


def build_report(
    store: Store,
    *,
    dataset: str | None = None,
    prompt_run: int | None = None,
    finetune_run: int | None = None,
    seed: int = 0,
    n_boot: int = 2000,
) -> DecisionReport:
    """The decision report for a dataset: the best (or named) prompt and fine-tuned runs.

    Args:
        store: the workspace store.
        dataset: only weigh runs on this dataset.
        prompt_run: the prompt side's run (default: the best finished one).
        finetune_run: the fine-tune side's run (default: the best finished one).
        seed: resampling seed of the comparison's intervals.
        n_boot: bootstrap replications per metric.

    Raises:
        BadInputError: see `selection.choose_runs` and `compare.runs.compare_runs`.
    """
    from tunelab.engine.curves.summary import latest_curve
    from tunelab.engine.robustness.summary import robustness_for_run

    choice = choose_runs(store, dataset=dataset, prompt_run=prompt_run, finetune_run=finetune_run)
    prompt, tuned = choice.prompt_run, choice.finetune_run
    # The fine-tune may have scored other rows than the prompt (a row limit); the report
    # weighs the rows both scored, and the comparison's notes say so.
    comparison = compare_runs(
        store, [prompt.id, tuned.id], seed=seed, n_boot=n_boot, shared_rows_only=True
    )
    tuned_model = store.get_model_by_id(tuned.model_id)
    assert tuned_model.base_model_id is not None  # choose_runs picked a fine-tuned model
    base = store.get_model_by_id(tuned_model.base_model_id)
    report = DecisionReport(
        dataset=prompt.dataset_name,
        split=prompt.split,
        metric=choice.metric,
        selection=choice.selection,
        comparison=comparison,
        prompt_effort=prompt_effort(store, prompt),
        finetune_effort=choice.finetune_effort,
        base_model=base.name,
        curve=latest_curve(store, dataset=prompt.dataset_name, base_model=base.name),
        prompt_robustness=robustness_for_run(store, prompt.id),
        finetune_robustness=robustness_for_run(store, tuned.id),
    )
    return with_sentences(report)

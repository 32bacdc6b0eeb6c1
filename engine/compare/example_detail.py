"""One compared row in full, for a detail view: the row's input, both outputs with their
scores, and the word diff between them (the comparison's own `RowDiff`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from tunelab.engine.compare.records import Comparison, RowDiff
    from tunelab.store import Store


@dataclass(frozen=True)
class ExampleDetail:
    """A row of a comparison's first pair (baseline against the next run)."""

    row_idx: int
    change: str
    """'fixed', 'broken' or 'differs' (`PairComparison.change`)."""
    shared_rows: int
    """How many rows the comparison covered (those every run has)."""
    labels: tuple[str, str]
    """What each side is, baseline first ("classify@1 on builtin")."""
    inputs: dict[str, object]
    """The dataset row's columns; empty when the row is no longer stored."""
    prompts: tuple[str, str]
    """The prompt each run rendered for the row."""
    diff: RowDiff


def example_detail(store: Store, comparison: Comparison, row_idx: int) -> ExampleDetail:
    """The detail of one highlighted row of `comparison`; BadInputError when it has none."""
    if not comparison.pairs:
        raise BadInputError("the comparison has no pair of runs")
    pair = comparison.pairs[0]
    diff = next((e for e in pair.examples if e.row_idx == row_idx), None)
    if diff is None:
        raise BadInputError(f"row {row_idx} is not one of the comparison's examples")
    runs = {r.id: r for r in comparison.runs}
    baseline, other = runs[pair.baseline_run_id], runs[pair.run_id]
    rows = store.dataset_rows(baseline.dataset_name, baseline.split, indices=[row_idx])
    prompts = []
    for run_id in (pair.baseline_run_id, pair.run_id):
        output = next((o for o in store.run_outputs(run_id) if o.row_idx == row_idx), None)
        prompts.append(output.rendered_prompt if output is not None else "")
    return ExampleDetail(
        row_idx=row_idx,
        change=pair.change(row_idx),
        shared_rows=comparison.rows,
        labels=(baseline.description or baseline.prompt_ref, other.description or other.prompt_ref),
        inputs=dict(rows[0].data) if rows else {},
        prompts=(prompts[0], prompts[1]),
        diff=diff,
    )

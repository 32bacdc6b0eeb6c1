"""Which aggregate a comparison reads when some runs are self-consistency (vote) runs.

A vote run has two answers per row, its first sample and its majority vote; a single-sample
run has only the first. Every run of a comparison is read the same way: by their first
samples, unless every run has a vote (then by default the vote, whose metrics are named
`vote_...`). A vote run's cost always counts all of its samples.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.samples import with_sample_costs
from tunelab.engine.evaluation.self_consistency import VOTE_PREFIX, voted_outputs
from tunelab.store import Run, RunOutput, Store

FIRST = "first"
VOTE = "vote"
AGGREGATES = (FIRST, VOTE)


def choose_aggregate(runs: Sequence[Run], requested: str | None) -> tuple[str, str | None]:
    """The aggregate to compare (`requested`, else the vote when every run has one, else the
    first sample) and the one-line note that says so (None when no run is a vote run).

    Raises:
        BadInputError: an unknown aggregate, or the vote asked of a single-sample run.
    """
    if requested is not None and requested not in AGGREGATES:
        raise BadInputError(f"aggregate must be one of {', '.join(AGGREGATES)}, not {requested!r}")
    single = [r for r in runs if r.samples < 2]
    if requested == VOTE and single:
        raise BadInputError(
            f"run {single[0].id} has one sample per row, so it has no vote; compare with "
            "--aggregate first"
        )
    if len(single) == len(runs):
        return FIRST, None
    chosen = requested or (FIRST if single else VOTE)
    sizes = ", ".join(f"run {r.id}: {r.samples}" for r in runs)
    if chosen == VOTE:
        return chosen, (
            f"compared on each run's majority vote ({VOTE_PREFIX}metrics; samples per row "
            f"{sizes}; cost counts every sample); --aggregate first compares first samples"
        )
    other = (
        "vote metrics are compared only when every run has them"
        if single
        else "--aggregate vote compares their majority votes"
    )
    return chosen, (
        f"compared on each run's first sample (samples per row {sizes}; cost counts every "
        f"sample); {other}"
    )


def aggregated_rows(
    store: Store, run: Run, outputs: Sequence[RunOutput], aggregate: str
) -> list[RunOutput]:
    """A run's rows as the comparison reads them: costed over all samples, and for the vote
    aggregate each row as its majority vote."""
    rows = with_sample_costs(outputs, store.run_samples(run.id)) if run.samples > 1 else outputs
    return voted_outputs(store, run, rows) if aggregate == VOTE else list(rows)

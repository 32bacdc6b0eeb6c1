"""Blind A/B preferences: recording one, a seeded blind session over two runs, the win rate.

A session shows two runs' outputs of the same row with the sides shuffled (seeded); the side
shown on the left is stored as A, so the store records where each run was shown. The win
rate counts decisive judgements only, with an exact binomial interval (scipy); ties are
reported beside it, never folded in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tunelab.engine.errors import BadInputError
from tunelab.store import Store
from tunelab.store.feedback import Preference, default_author

CONFIDENCE = 0.95
SIDES = {"left": "a", "right": "b", "tie": "tie"}
"""A side the user picks → the stored choice (the left output is stored as A)."""


@dataclass(frozen=True)
class BlindPair:
    """One row to judge: two runs' outputs side by side, which run is where kept apart from
    what the screen shows until the judgement is stored."""

    row_idx: int
    input_text: str
    """The row's input columns, as `name: value` lines (the same for both sides)."""
    left_text: str
    right_text: str
    left_output_id: int
    right_output_id: int
    left_run_id: int
    right_run_id: int


@dataclass(frozen=True)
class BlindSession:
    """Rows two runs both answered, in a seeded order with seeded sides, that `author` has
    not judged yet for this pair."""

    run_ids: tuple[int, int]
    seed: int
    author: str
    pairs: list[BlindPair] = field(default_factory=list)
    already_judged: int = 0
    """Shared rows this author had judged before (left out of `pairs`)."""
    labels: dict[int, str] = field(default_factory=dict)
    """Run id → 'run 3 (classify@2 on builtin)', revealed only once a row is judged."""


@dataclass(frozen=True)
class PreferenceTally:
    """Blind A/B judgements between two runs, from `run_id`'s side against `other_run_id`."""

    run_id: int
    other_run_id: int
    wins: int
    losses: int
    ties: int
    judges: int
    """How many different people judged."""
    win_rate: float | None
    """wins / (wins + losses); None with no decisive judgement."""
    ci_low: float | None
    ci_high: float | None
    confidence: float = CONFIDENCE

    @property
    def decisive(self) -> int:
        return self.wins + self.losses


def _row_input(data: dict[str, object], columns: list[str]) -> str:
    shown = [c for c in columns if c in data] or [c for c in data if not c.startswith("_")]
    return "\n".join(f"{c}: {data[c]}" for c in shown)


def blind_session(
    store: Store, run_a: int, run_b: int, seed: int = 0, author: str | None = None
) -> BlindSession:
    """The rows both runs answered, shuffled with `seed`, each with its sides drawn from the
    same generator, less the rows `author` already judged for this pair.

    Args:
        store: the workspace store.
        run_a, run_b: the two runs (different, on the same dataset and split).
        seed: the shuffle's seed; the same seed gives the same order and sides.
        author: who judges; default `TUNELAB_USER`, else the login name.
    """
    if run_a == run_b:
        raise BadInputError("blind A/B compares two different runs; pick two")
    first, second = store.get_run(run_a), store.get_run(run_b)
    if (first.dataset_id, first.split) != (second.dataset_id, second.split):
        raise BadInputError(
            f"runs {run_a} and {run_b} answered different data ({first.dataset_name}/"
            f"{first.split} and {second.dataset_name}/{second.split}); blind A/B needs one split"
        )
    who = author or default_author()
    outputs_a = {o.row_idx: o for o in store.run_outputs(run_a)}
    outputs_b = {o.row_idx: o for o in store.run_outputs(run_b)}
    shared = sorted(set(outputs_a) & set(outputs_b))
    judged = {p.row_idx for p in store.preferences((run_a, run_b)) if p.author == who}
    dataset = store.get_dataset(first.dataset_name)
    rows = {r.idx: r.data for r in store.dataset_rows(first.dataset_name, first.split, shared)}
    generator = random.Random(seed)
    order = list(shared)
    generator.shuffle(order)
    pairs = []
    for row_idx in order:
        swap = generator.random() < 0.5
        if row_idx in judged:
            continue
        left, right = (outputs_b[row_idx], outputs_a[row_idx]) if swap else (
            outputs_a[row_idx], outputs_b[row_idx])  # fmt: skip
        pairs.append(
            BlindPair(
                row_idx, _row_input(rows.get(row_idx, {}), dataset.input_columns), left.output,
                right.output, left.id, right.id, left.run_id, right.run_id,
            )
        )  # fmt: skip
    labels = {r.id: f"run {r.id} ({r.prompt_ref} on {r.model_name})" for r in (first, second)}
    return BlindSession((run_a, run_b), seed, who, pairs, len(judged & set(shared)), labels)


def prefer_pair(store: Store, pair: BlindPair, side: str, author: str | None = None) -> Preference:
    """Store a judgement of a blind pair: `left`, `right` or `tie` (the left output is A)."""
    if side not in SIDES:
        raise BadInputError(f"a blind judgement is one of {', '.join(SIDES)}, not {side!r}")
    return store.add_preference(pair.left_output_id, pair.right_output_id, SIDES[side], author)


def prefer_row(
    store: Store, run_a: int, run_b: int, row_idx: int, choice: str, author: str | None = None
) -> Preference:
    """Store a judgement between two runs' outputs of one row (`tunelab run prefer`): `a`
    (run_a's is better), `b` or `tie`.

    Args:
        store: the workspace store.
        run_a: the run shown as A; run_b: the run shown as B.
        row_idx: the row both runs answered.
        choice: `a`, `b` or `tie`.
        author: who judged; default `TUNELAB_USER`, else the login name.
    """
    output_ids = []
    for run_id in (run_a, run_b):
        store.get_run(run_id)
        found = [o for o in store.run_outputs(run_id) if o.row_idx == row_idx]
        if not found:
            raise BadInputError(f"run {run_id} has no output for row {row_idx}")
        output_ids.append(found[0].id)
    return store.add_preference(output_ids[0], output_ids[1], choice, author)


def preference_tally(store: Store, run_id: int, other_run_id: int) -> PreferenceTally:
    """How often `run_id`'s output was preferred to `other_run_id`'s in blind judgements,
    whichever side each was shown on; the interval is scipy's exact binomial one."""
    wins = losses = ties = 0
    judges = set()
    for p in store.preferences((run_id, other_run_id)):
        judges.add(p.author)
        if p.choice == "tie":
            ties += 1
        elif (p.choice == "a") == (p.run_a_id == run_id):
            wins += 1
        else:
            losses += 1
    decisive = wins + losses
    if decisive == 0:
        return PreferenceTally(run_id, other_run_id, 0, 0, ties, len(judges), None, None, None)
    from scipy.stats import binomtest  # scipy loads in a few hundred ms; only when needed

    interval = binomtest(wins, decisive).proportion_ci(CONFIDENCE, method="exact")
    return PreferenceTally(
        run_id, other_run_id, wins, losses, ties, len(judges), wins / decisive,
        float(interval.low), float(interval.high),
    )  # fmt: skip


def preference_tallies(store: Store, run_ids: list[int]) -> list[PreferenceTally]:
    """Each later run against the first (the baseline), for pairs that have judgements."""
    out = []
    for other in run_ids[1:]:
        tally = preference_tally(store, other, run_ids[0])
        if tally.decisive or tally.ties:
            out.append(tally)
    return out


def tally_line(tally: PreferenceTally) -> str:
    """The win rate as one sentence, as the Compare screen and `tunelab compare` print it."""
    judged = tally.decisive + tally.ties
    people = "1 person" if tally.judges == 1 else f"{tally.judges} people"
    head = (
        f"Blind A/B, run {tally.run_id} vs run {tally.other_run_id} ({judged} judged by {people})"
    )
    ties = f"{tally.ties} tie" + ("" if tally.ties == 1 else "s")
    if tally.win_rate is None or tally.ci_low is None or tally.ci_high is None:
        return f"{head}: no decisive judgement, {ties}"
    return (
        f"{head}: run {tally.run_id} preferred in {tally.wins} of {tally.decisive} decisive "
        f"({tally.win_rate:.0%}, {tally.confidence:.0%} CI {tally.ci_low:.0%}–"
        f"{tally.ci_high:.0%}), {ties}"
    )

"""Blind A/B in the engine: seeded sessions, stored sides, and the win rate with its interval."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from tests.compare_helpers import base_model, classification_run, dataset, prompt
from tunelab.engine.errors import BadInputError
from tunelab.engine.feedback.preferences import (
    blind_session,
    prefer_pair,
    prefer_row,
    preference_tallies,
    preference_tally,
    tally_line,
)
from tunelab.store import Run, Store


def _two_runs(store: Store, n: int = 6) -> tuple[Run, Run]:
    model = base_model(store)
    ds = dataset(store, n=n)
    return (
        classification_run(store, prompt(store, "p", "{{ text }}"), model, ds, [1] * n),
        classification_run(store, prompt(store, "p", "Label: {{ text }}"), model, ds, [0] * n),
    )


def test_a_session_is_seeded_and_shuffles_sides(store: Store) -> None:
    a, b = _two_runs(store, n=12)
    first = blind_session(store, a.id, b.id, seed=7, author="ann")
    again = blind_session(store, a.id, b.id, seed=7, author="ann")
    other = blind_session(store, a.id, b.id, seed=8, author="ann")
    assert first == again
    assert [p.row_idx for p in first.pairs] != [p.row_idx for p in other.pairs]
    assert sorted(p.row_idx for p in first.pairs) == list(range(12))
    assert {p.left_run_id for p in first.pairs} == {a.id, b.id}  # both runs appear on the left
    for pair in first.pairs:
        assert {pair.left_run_id, pair.right_run_id} == {a.id, b.id}
        left = next(o for o in store.run_outputs(pair.left_run_id) if o.row_idx == pair.row_idx)
        assert (left.id, left.output) == (pair.left_output_id, pair.left_text)
        assert f"text: row {pair.row_idx}" in pair.input_text
    assert first.labels[a.id] == f"run {a.id} (p@1 on base)"


def test_a_judgement_stores_the_left_output_as_a_and_leaves_the_row_out_next_time(
    store: Store,
) -> None:
    a, b = _two_runs(store)
    session = blind_session(store, a.id, b.id, seed=1, author="ann")
    pair = session.pairs[0]
    stored = prefer_pair(store, pair, "left", author="ann")
    assert (stored.output_a_id, stored.output_b_id, stored.choice) == (
        pair.left_output_id,
        pair.right_output_id,
        "a",
    )
    assert (stored.run_a_id, stored.author, stored.row_idx) == (
        pair.left_run_id,
        "ann",
        0 + pair.row_idx,
    )
    later = blind_session(store, a.id, b.id, seed=1, author="ann")
    assert pair.row_idx not in [p.row_idx for p in later.pairs]
    assert later.already_judged == 1
    assert len(blind_session(store, a.id, b.id, seed=1, author="bob").pairs) == 6
    with pytest.raises(BadInputError, match="left, right, tie"):
        prefer_pair(store, pair, "up", author="ann")


def test_sessions_refuse_one_run_or_two_splits(store: Store) -> None:
    a, _b = _two_runs(store)
    with pytest.raises(BadInputError, match="two different runs"):
        blind_session(store, a.id, a.id)
    ds = store.get_dataset("ds")
    other = classification_run(store, prompt(store, "q"), base_model(store), ds, [1], split="test")
    assert blind_session(store, a.id, other.id).pairs  # same split: fine
    with pytest.raises(BadInputError, match="no output for row 99"):
        prefer_row(store, a.id, other.id, 99, "a")


def test_the_win_rate_counts_sides_right_and_reports_ties_apart(store: Store) -> None:
    a, b = _two_runs(store)
    # b wins shown as A, b wins shown as B, a wins, and a tie: b wins 2 of 3 decisive.
    prefer_row(store, b.id, a.id, 0, "a", author="ann")
    prefer_row(store, a.id, b.id, 1, "b", author="bob")
    prefer_row(store, a.id, b.id, 2, "a", author="ann")
    prefer_row(store, a.id, b.id, 3, "tie", author="ann")
    tally = preference_tally(store, b.id, a.id)
    assert (tally.wins, tally.losses, tally.ties, tally.judges) == (2, 1, 1, 2)
    assert tally.win_rate == pytest.approx(2 / 3)
    exact = binomtest(2, 3).proportion_ci(0.95, method="exact")
    assert (tally.ci_low, tally.ci_high) == pytest.approx((exact.low, exact.high))
    mirror = preference_tally(store, a.id, b.id)
    assert (mirror.wins, mirror.losses, mirror.ties) == (1, 2, 1)
    assert preference_tallies(store, [a.id, b.id]) == [tally]
    line = tally_line(tally)
    assert line.startswith(f"Blind A/B, run {b.id} vs run {a.id} (4 judged by 2 people)")
    assert "preferred in 2 of 3 decisive (67%, 95% CI 9%–99%), 1 tie" in line


def test_no_judgements_no_line_and_ties_alone_have_no_rate(store: Store) -> None:
    a, b = _two_runs(store)
    assert preference_tallies(store, [a.id, b.id]) == []
    prefer_row(store, a.id, b.id, 0, "tie", author="ann")
    (tally,) = preference_tallies(store, [a.id, b.id])
    assert tally.win_rate is None and tally.ci_low is None
    assert tally_line(tally).endswith("no decisive judgement, 1 tie")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b", "tie"])), max_size=6))
def test_wins_losses_and_ties_partition_the_judgements(
    judgements: list[tuple[bool, str]],
) -> None:
    with Store.memory() as store:
        a, b = _two_runs(store)
        for row, (a_first, choice) in enumerate(judgements):
            first, second = (a, b) if a_first else (b, a)
            prefer_row(store, first.id, second.id, row, choice, author="ann")
        tally = preference_tally(store, a.id, b.id)
        mirror = preference_tally(store, b.id, a.id)
        assert tally.wins + tally.losses + tally.ties == len(judgements)
        assert (tally.wins, tally.losses, tally.ties) == (mirror.losses, mirror.wins, mirror.ties)
        if tally.win_rate is not None:
            assert tally.ci_low is not None and tally.ci_high is not None
            assert tally.ci_low <= tally.win_rate <= tally.ci_high

"""Prompt optimization (#22): the search space, the strategies, bad input, and a real search
with the built-in model on a few TweetEval irony rows."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import shared_dataset
from tunelab.engine.compare.report import render_markdown
from tunelab.engine.compare.runs import compare_runs
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.run import EvalRequest, evaluate
from tunelab.engine.optimize.history import search_history
from tunelab.engine.optimize.proposals import Proposals, clean_proposal, propose_instructions
from tunelab.engine.optimize.search import (
    OptimizeProgress,
    OptimizeRequest,
    optimize,
    rung_sizes,
    with_proposals,
)
from tunelab.engine.optimize.space import (
    CALIBRATIONS,
    SELECTIONS,
    Candidate,
    SearchSpace,
    candidate_content,
    parse_choices,
    parse_k_range,
)
from tunelab.engine.optimize.strategies import random_candidate, random_search, tpe_search
from tunelab.engine.prompts.calibration import Calibration
from tunelab.engine.prompts.search_note import SearchNote, parse_note
from tunelab.store import DatasetRow, NewDataset, NewSplit, PromptContent, Store

LABELS = ["irony", "non_irony"]
TEMPLATE = "Is this tweet ironic? Answer irony or non_irony.\n\nTweet: {{ text }}\nAnswer:"


def _rows(name: str, n: int) -> list[dict[str, Any]]:
    with shared_dataset(name).open(encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(n)]


@pytest.fixture
def irony(store: Store) -> Store:
    store.add_dataset(
        NewDataset(
            name="irony",
            source="tweeteval-irony",
            fingerprint="test",
            splits=[
                NewSplit("train", _rows("tweeteval-irony-train.jsonl", 6), "a"),
                NewSplit("validation", _rows("tweeteval-irony-val.jsonl", 4), "b"),
                NewSplit("test", _rows("tweeteval-irony-test.jsonl", 4), "c"),
            ],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=LABELS,
            metrics=["accuracy"],
        )
    )
    store.save_prompt_version("irony", PromptContent(template=TEMPLATE, mode="plain"))
    return store


def _request(**changes: Any) -> OptimizeRequest:
    base: dict[str, Any] = {
        "prompt": "irony@1",
        "dataset": "irony",
        "budget": 4,
        "first_rung": 2,
        "batch_size": 4,
        "space": SearchSpace(
            k_min=0,
            k_max=2,
            pool_size=4,
            instructions=("Classify the tweet.",),
            scorings=("likelihood",),
        ),
    }
    base.update(changes)
    return OptimizeRequest(**base)


# --- the space and the strategies, without a model -------------------------------------


@given(st.integers(1, 64), st.integers(1, 500))
def test_rungs_double_up_to_the_whole_split(first: int, total: int) -> None:
    sizes = rung_sizes(first, total)
    assert sizes[-1] == total
    assert sizes == sorted(set(sizes))
    if first < total:
        assert sizes[0] == first
        assert all(b == 2 * a for a, b in itertools.pairwise(sizes[:-1]))


def test_k_range_parses_and_refuses() -> None:
    assert parse_k_range("0..8") == (0, 8)
    assert parse_k_range("3") == (3, 3)
    with pytest.raises(BadInputError, match=r"LOW\.\.HIGH"):
        parse_k_range("a..b")
    with pytest.raises(BadInputError, match="k range"):
        SearchSpace(k_min=5, k_max=2)


def _fake_score(calls: list[tuple[Candidate, int]]) -> Any:
    def score(candidate: Candidate, rung: int) -> float:
        calls.append((candidate, rung))
        # Deterministic in the candidate: more demonstrations score higher, a bit of noise.
        return len(candidate.demos) + random.Random(str(candidate)).random() / 10

    return score


@given(st.integers(1, 12), st.integers(0, 1000), st.integers(1, 4))
def test_random_search_halves_and_repeats_itself(budget: int, seed: int, rungs: int) -> None:
    space = SearchSpace(k_min=0, k_max=6, pool_size=10, instructions=("a", "b"))
    first: list[tuple[Candidate, int]] = []
    trials = random_search(space, 10, budget, seed, rungs, _fake_score(first))
    again: list[tuple[Candidate, int]] = []
    random_search(space, 10, budget, seed, rungs, _fake_score(again))
    assert first == again
    assert len({t.candidate for t in trials}) == len(trials) == budget
    per_rung = [sum(1 for _, r in first if r == rung) for rung in range(rungs)]
    assert per_rung[0] == budget
    assert all(b <= max(1, -(-a // 2)) for a, b in itertools.pairwise(per_rung))
    # The survivors of a rung are its best: nobody dropped scores above a survivor.
    for rung in range(rungs - 1):
        reached = [t for t in trials if rung in t.scores]
        kept = [t for t in reached if rung + 1 in t.scores]
        dropped = [t for t in reached if rung + 1 not in t.scores]
        if kept and dropped:
            assert min(t.scores[rung] for t in kept) >= max(t.scores[rung] for t in dropped)


def test_random_search_stops_when_the_scorer_does() -> None:
    space = SearchSpace(k_min=0, k_max=4, pool_size=8)
    count = [0]

    def score(candidate: Candidate, rung: int) -> float | None:
        count[0] += 1
        return None if count[0] > 3 else 1.0

    trials = random_search(space, 8, 6, 0, 2, score)
    assert sum(1 for t in trials if t.scores) == 3


def test_tpe_search_is_seeded_and_prunes() -> None:
    space = SearchSpace(k_min=0, k_max=4, pool_size=8, instructions=("a",))
    first: list[tuple[Candidate, int]] = []
    trials = tpe_search(space, 8, 12, 3, 3, _fake_score(first))
    again: list[tuple[Candidate, int]] = []
    tpe_search(space, 8, 12, 3, 3, _fake_score(again))
    assert first == again
    assert len(trials) == 12
    assert all(0 in t.scores for t in trials)
    assert any(2 not in t.scores for t in trials), "successive halving pruned nothing"
    assert all(len(set(t.candidate.demos)) == len(t.candidate.demos) for t in trials)


def test_candidate_content_takes_demonstrations_from_the_pool_in_order(irony: Store) -> None:
    dataset = irony.get_dataset("irony")
    seed = irony.get_prompt_version("irony@1")
    pool = [
        DatasetRow(id=i, idx=10 + i, data={"text": f"t{i}", "label": "irony"}) for i in range(3)
    ]
    space = SearchSpace(k_max=3, instructions=("Be brief.",))
    content = candidate_content(seed, Candidate((2, 0), 0, "likelihood"), pool, dataset, space)
    assert [e["text"] for e in content.examples] == ["t2", "t0"]
    assert all(e["output"] == "irony" for e in content.examples)
    assert content.system == "Be brief."
    assert content.template == seed.template


@given(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=80),
    st.none() | st.floats(0, 1, allow_nan=False),
    st.integers(1, 500),
)
def test_search_notes_read_back(change: str, score: float | None, rows: int) -> None:
    change = " ".join(change.split()) or "x"
    if score is None:
        note = SearchNote("route@3", change)
    else:
        note = SearchNote("route@3", change, "macro_f1", round(score, 4), rows, rows, "d", "val")
    assert parse_note(note.message()) == note
    assert parse_note("fixed the typo in the instruction") is None


# --- bad input ---------------------------------------------------------------------------


def test_bad_requests_are_one_line_errors(irony: Store) -> None:
    with pytest.raises(BadInputError, match="budget must be at least 1"):
        _request(budget=0)
    with pytest.raises(BadInputError, match="unknown strategy 'grid'"):
        _request(strategy="grid")
    with pytest.raises(BadInputError, match="never uses the 'test' split"):
        _request(val_split="test")
    with pytest.raises(BadInputError, match="fewer than the first halving rung of 8"):
        optimize(irony, _request(first_rung=8))
    irony.save_prompt_version(
        "drawn", PromptContent(template=TEMPLATE, settings={"fewshot": {"k": 2}})
    )
    with pytest.raises(BadInputError, match="draws its own few-shot"):
        optimize(irony, _request(prompt="drawn@1"))
    irony.save_prompt_version("fixed", PromptContent(template="Is it ironic? Answer:"))
    with pytest.raises(BadInputError, match="no slot for demonstrations"):
        optimize(irony, _request(prompt="fixed@1"))
    assert irony.list_runs() == []
    assert [v.version for v in irony.list_prompt_versions("irony")] == [1]


# --- a real search with the built-in model -------------------------------------------------


def _record_splits(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    original = store.dataset_rows

    def recording(
        dataset: str, split: str, indices: Iterable[int] | None = None, limit: int | None = None
    ) -> list[DatasetRow]:
        read.append(split)
        return original(dataset, split, indices=indices, limit=limit)

    monkeypatch.setattr(store, "dataset_rows", recording)
    return read


@pytest.mark.model
def test_a_four_candidate_search_labels_the_best_and_repeats_itself(
    irony: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = _record_splits(irony, monkeypatch)
    result = optimize(irony, _request())
    assert "test" not in read and set(read) == {"train", "validation"}
    assert result.rung_rows == [2, 4]
    assert len(result.candidates) == 4
    assert result.best_ref is not None and result.best_score is not None
    best = irony.get_prompt_version(f"irony:{'optimized'}")
    assert best.ref == result.best_ref
    seed = irony.get_prompt_version("irony@1")
    # Every candidate is a version, a child of the seed, its message naming what changed
    # and its validation score.
    for candidate in result.candidates:
        version = irony.get_prompt_version(candidate.version_ref)
        if version.id != seed.id:
            assert version.parent_version_id == seed.id
            assert "validation accuracy=" in version.message
            assert "demos" in version.message
    # Halving: 4 on 2 rows, the best 2 on all 4, plus the seed on all 4.
    assert sum(1 for c in result.candidates if c.full) == 2
    assert result.rows_scored == 4 * 2 + 2 * 4 + 4
    assert result.rows_without_halving == (4 + 1) * 4
    assert result.generated_rows > 0

    again = optimize(irony, _request())
    assert [c.version_ref for c in again.candidates] == [c.version_ref for c in result.candidates]
    assert [c.scores for c in again.candidates] == [c.scores for c in result.candidates]
    assert again.best_ref == result.best_ref
    assert again.generated_rows == 0
    assert again.reused_evaluations == again.evaluations == result.evaluations
    assert "test" not in read

    # compare says how hard the prompt side tried, and which split chose the prompt.
    def run_on(ref: str, split: str) -> int:
        request = EvalRequest(
            prompt=ref, dataset="irony", split=split, scoring="likelihood", latency_probe=0
        )
        return evaluate(irony, request).run_id

    seed_run, best_run = run_on("irony@1", "test"), run_on("irony:optimized", "test")
    on_test = compare_runs(irony, [seed_run, best_run], n_boot=100)
    assert on_test.runs[0].prompt_effort == "one hand-written prompt"
    searched = sum(1 for c in result.candidates if c.version_ref != "irony@1")
    assert on_test.runs[1].prompt_effort == (
        f"best of {searched} prompt candidates searched from irony@1, selected on irony/validation"
    )
    assert f"; best of {searched} prompt candidates" in render_markdown(on_test)
    assert not any("selected on" in n for n in on_test.notes)
    val_runs = [run_on("irony@1", "validation"), run_on("irony:optimized", "validation")]
    on_val = compare_runs(irony, val_runs, n_boot=100)
    assert any("optimistic, not a held-out result" in n for n in on_val.notes)

    # The search read back: every evaluation in order, the best, and its val/test gap.
    history = search_history(irony, "irony@1")
    assert (history.dataset, history.split, history.metric) == ("irony", "validation", "accuracy")
    assert history.points[0].seed and history.points[0].rows == 4
    assert [p.order for p in history.points] == list(range(1, len(history.points) + 1))
    assert len(history.points) >= result.evaluations  # plus the two validation runs above
    assert history.best_ref == result.best_ref and history.best_validation == result.best_score
    best_test = float(irony.get_run(best_run).metrics["accuracy"])
    assert history.best_test == best_test
    assert history.gap == pytest.approx(result.best_score - best_test)
    assert history.seed_test == float(irony.get_run(seed_run).metrics["accuracy"])
    assert {c.version_ref for c in history.candidates} == {
        c.version_ref for c in result.candidates if c.version_ref != "irony@1"
    }


@pytest.mark.model
def test_a_stopped_search_keeps_its_candidates_and_a_rerun_finishes_it(irony: Store) -> None:
    seen: list[OptimizeProgress] = []
    stopped = optimize(
        irony, _request(), on_progress=seen.append, should_stop=lambda: len(seen) >= 3
    )
    assert stopped.interrupted
    assert stopped.best_ref is None and "optimized" not in irony.get_prompt("irony").labels
    kept = [c.version_ref for c in stopped.candidates]
    assert len(kept) == 2  # the seed's baseline, then two candidates on the first rung
    finished = optimize(irony, _request())
    assert not finished.interrupted
    assert [c.version_ref for c in finished.candidates][:2] == kept
    assert finished.reused_evaluations == 3
    assert irony.get_prompt_version("irony:optimized").ref == finished.best_ref


# --- calibration and retrieval as search dimensions ---------------------------------------


def test_new_dimensions_keep_the_draws_of_a_space_without_them_and_refuse_bad_choices() -> None:
    plain = SearchSpace(k_min=0, k_max=4, pool_size=8, scorings=("likelihood",))
    widened = SearchSpace(
        k_min=0, k_max=4, pool_size=8, scorings=("likelihood",), calibrations=("none",)
    )
    assert [random_candidate(plain, 8, random.Random(s)) for s in range(20)] == [
        random_candidate(widened, 8, random.Random(s)) for s in range(20)
    ]
    both = SearchSpace(
        k_min=1,
        k_max=3,
        pool_size=8,
        scorings=("likelihood", "generate"),
        calibrations=CALIBRATIONS,
        selections=SELECTIONS,
    )
    drawn = [random_candidate(both, 8, random.Random(s)) for s in range(200)]
    assert {c.calibration for c in drawn} == set(CALIBRATIONS)
    assert all(c.calibration == "none" for c in drawn if c.scoring == "generate")
    assert all(c.demos == () and 1 <= c.retrieved <= 3 for c in drawn if c.retrieved)
    assert any(c.retrieved for c in drawn) and any(c.demos for c in drawn)
    with pytest.raises(BadInputError, match="calibration applies to likelihood scoring"):
        SearchSpace(scorings=("generate",), calibrations=("none", "batch"))
    with pytest.raises(BadInputError, match=r"--calibration 'platt': choose from none"):
        parse_choices("platt", CALIBRATIONS, "--calibration")


@pytest.mark.model
def test_a_search_over_calibration_and_retrieval_stores_them_with_each_candidate(
    irony: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = _record_splits(irony, monkeypatch)
    space = SearchSpace(
        k_min=1,
        k_max=2,
        pool_size=4,
        scorings=("likelihood",),
        calibrations=CALIBRATIONS,
        selections=SELECTIONS,
    )
    result = optimize(irony, _request(space=space, budget=6, seed=3))
    assert "test" not in read and set(read) == {"train", "validation"}
    assert result.best_ref is not None
    kinds = set()
    for candidate in result.candidates:
        version = irony.get_prompt_version(candidate.version_ref)
        calibration = Calibration.from_settings(version.settings)
        retrieval = version.settings.get("retrieval")
        kinds.add((calibration.method if calibration else "none", retrieval is not None))
        if calibration is not None:
            assert f"{calibration.method} calibration" in version.message
            if calibration.method == "contextual":
                assert calibration.source == "content_free" and len(calibration.vector) == 2
            else:
                assert calibration.per_run
        if retrieval is not None:
            assert version.examples == [] and retrieval["split"] == "train"
            assert "bm25-retrieved demos" in version.message
    assert len(kinds) >= 3, kinds  # the seed's draws cover several kinds of candidate
    again = optimize(irony, _request(space=space, budget=6, seed=3))
    assert [c.version_ref for c in again.candidates] == [c.version_ref for c in result.candidates]
    assert again.generated_rows == 0


# --- model-proposed instructions -----------------------------------------------------------


def test_proposals_are_cleaned_and_join_the_users_list(
    irony: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert clean_proposal('Instruction: "Decide whether the tweet is ironic."\nmore', []) == (
        "Decide whether the tweet is ironic."
    )
    assert clean_proposal("irony", []) is None  # too short to instruct anyone
    assert clean_proposal("I love mondays so much", ["I love mondays so much!"]) is None
    with pytest.raises(BadInputError, match="from 0 to 32"):
        _request(propose_instructions=33)

    def fake_proposals(*args: Any) -> Proposals:
        return Proposals("builtin", ("Classify the tweet.", "Say whether the tweet is ironic."), 1)

    monkeypatch.setattr("tunelab.engine.optimize.search.propose_instructions", fake_proposals)
    request = _request(propose_instructions=3)
    space = with_proposals(irony, request, irony.get_dataset("irony"))
    # The user's "Classify the tweet." is not added twice; the new one is marked proposed.
    assert space.instructions == ("Classify the tweet.", "Say whether the tweet is ironic.")
    assert space.proposed == 1 and space.proposer == "builtin"
    described = Candidate((), 1, "likelihood").describe([], space)
    assert "instruction 2 (proposed by builtin): 'Say whether" in described
    assert "proposed" not in Candidate((), 0, "likelihood").describe([], space)


@pytest.mark.model
def test_the_builtin_model_proposes_from_train_rows_only_and_repeats_itself(
    irony: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = _record_splits(irony, monkeypatch)
    dataset = irony.get_dataset("irony")
    first = propose_instructions(irony, dataset, "train", "builtin", 1, seed=0)
    assert set(read) == {"train"}
    assert first.proposer == "builtin"
    assert len(first.instructions) + first.dropped == 1
    assert all(len(text.split()) >= 4 and "\n" not in text for text in first.instructions)
    calls: list[int] = []
    import tunelab.engine.generation.batched as batched

    original = batched.generate_batch

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(batched, "generate_batch", counting)
    assert propose_instructions(irony, dataset, "train", "builtin", 1, seed=0) == first
    assert calls == []  # the replies came from the response cache

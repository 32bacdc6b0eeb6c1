"""Self-consistency: N seeded samples per row, their majority vote, stability and compare."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli, shared_dataset
from tests.vote_helpers import stored_vote_run
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.metrics import get_metric
from tunelab.engine.evaluation.samples import sample_cache_key, sample_seed, with_sample_costs
from tunelab.engine.evaluation.self_consistency import vote_metrics
from tunelab.engine.evaluation.stability import run_stability
from tunelab.engine.evaluation.voting import answer_key, majority_vote
from tunelab.store import (
    NewDataset,
    NewRunOutput,
    NewRunSample,
    NewSplit,
    PromptContent,
    Store,
    Workspace,
)

# --------------------------------------------------------------------------------- voting

ANSWERS = st.none() | st.sampled_from(["7", "7.0", "8", "1,000", "1000", "cat", "Cat."])


@settings(deadline=None)  # the first vote imports scipy, slow on a busy machine
@given(st.lists(ANSWERS, min_size=1))
def test_the_vote_is_the_most_common_answer_and_ties_go_to_the_earliest(
    answers: list[str | None],
) -> None:
    vote = majority_vote(answers)
    keys = [None if a is None else answer_key(a, False) for a in answers]
    counts = Counter(k for k in keys if k is not None)
    assert sum(g.count for g in vote.groups) == len(answers)
    if not counts:
        assert vote.answer is None and vote.agreement == 0.0
        return
    best = max(counts.values())
    tied = [k for k in counts if counts[k] == best]
    expected = min(tied, key=keys.index)  # the tied answer given by the earliest sample
    assert vote.answer is not None and answer_key(vote.answer, False) == expected
    assert vote.answer == answers[keys.index(expected)]
    assert vote.agreement == pytest.approx(best / len(answers))


@settings(deadline=None)
@given(st.lists(st.sampled_from(["pos", "neg", "neutral", None]), min_size=1))
def test_entropy_is_the_spread_of_every_answer_in_bits(answers: list[str | None]) -> None:
    vote = majority_vote(answers, labels=True)
    shares = [c / len(answers) for c in Counter(answers).values()]
    assert vote.entropy == pytest.approx(-sum(p * math.log2(p) for p in shares), abs=1e-9)
    assert (vote.entropy == 0) == (len(set(answers)) == 1)


def test_equal_numbers_vote_together_and_labels_stay_apart() -> None:
    vote = majority_vote(["1,000", "999", "1000.0"])
    assert (vote.answer, vote.agreement) == ("1,000", pytest.approx(2 / 3))
    assert majority_vote(["8", "7", "7", "8"]).answer == "8"  # tie: the first sample's answer
    labelled = majority_vote(["non_irony", "irony", "irony"], labels=True)
    assert labelled.answer == "irony" and len(labelled.groups) == 2
    assert majority_vote([None, None, "3"]).agreement == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        majority_vote([])


def test_sample_seeds_and_cache_keys() -> None:
    assert sample_seed(42, 0) == 42 and sample_cache_key("k", 0) == "k"
    seeds = [sample_seed(42, k) for k in range(1, 6)]
    assert len(set(seeds)) == 5 and seeds == [sample_seed(42, k) for k in range(1, 6)]
    assert sample_seed(43, 1) != sample_seed(42, 1)
    keys = {sample_cache_key("row-key", k) for k in range(4)}
    assert len(keys) == 4 and sample_cache_key("other", 1) not in keys


# --------------------------------------------------------------- stored vote runs, no model


def test_vote_metrics_score_the_vote_and_its_agreement(store: Store) -> None:
    run = stored_vote_run(
        store, [["3", "4", "4"], [None, "5", None], ["9", "9", "9"]], ["4", "5", "1"]
    )
    metrics = vote_metrics(
        [get_metric("final_answer")], store.run_outputs(run.id), store.run_samples(run.id), False
    )
    assert metrics["vote_final_answer"] == pytest.approx(2 / 3)  # rows 0 and 1 vote right
    assert metrics["vote_extraction_failure_rate"] == 0.0  # every row has some answer
    assert metrics["vote_agreement"] == pytest.approx((2 / 3 + 1 / 3 + 1) / 3)
    assert metrics["vote_unanimous_rate"] == pytest.approx(1 / 3)
    assert "vote_entropy" not in metrics  # only classification reports it


def test_a_row_counts_as_written_only_with_its_samples(store: Store) -> None:
    run = stored_vote_run(store, [["1", "1"]], ["1"])
    again = store.add_sampled_outputs(
        run.id,
        [NewRunOutput(row_idx=0, rendered_prompt="q0", output="x")],
        [NewRunSample(row_idx=0, sample_idx=1, output="y")],
    )
    assert again == 0 and [s.output for s in store.run_samples(run.id)] == ["so the answer is 1"]


def test_stability_ranks_rows_by_disagreement(store: Store) -> None:
    run = stored_vote_run(
        store,
        [["4", "4", "4"], ["1", "2", "3"], ["5", "5", "6"], [None, None, "7"], ["2", "3", "3"]],
        ["4", "2", "5", "7", "3"],
    )
    ranked = run_stability(store, run.id)
    assert [r.row_idx for r in ranked.rows] == [1, 3, 2, 4, 0]
    assert (ranked.samples, ranked.rows_scored, ranked.unstable_rows) == (3, 5, 4)
    fragile = ranked.rows[0]
    assert [(g.answer, g.count, g.sample_indices, g.correct) for g in fragile.groups] == [
        ("1", 1, (0,), False), ("2", 1, (1,), True), ("3", 1, (2,), False),
    ]  # fmt: skip
    assert fragile.vote == "1" and fragile.groups[1].example_output == "so the answer is 2"
    no_answer = ranked.rows[1]
    assert no_answer.vote == "7" and no_answer.groups[0].answer is None
    assert [r.row_idx for r in run_stability(store, run.id, limit=2).rows] == [1, 3]
    with pytest.raises(BadInputError, match="at least 1"):
        run_stability(store, run.id, limit=0)
    single = stored_vote_run(store, [["4"]], ["4"])
    with pytest.raises(BadInputError, match="one sample per row"):
        run_stability(store, single.id)


def test_cost_counts_every_sample(store: Store) -> None:
    run = stored_vote_run(store, [["1", "1", "2"]], ["1"])
    costed = with_sample_costs(store.run_outputs(run.id), store.run_samples(run.id))
    assert (costed[0].tokens_in, costed[0].tokens_out) == (30, 15)
    assert costed[0].latency_ms == pytest.approx(300.0) and not costed[0].cached


def test_compare_reads_the_same_aggregate_on_both_sides(store: Store) -> None:
    from tunelab.engine.compare.runs import compare_runs

    references = [str(i) for i in range(6)]
    # The vote is right on every row, the first sample on half of them.
    vote_rows = [[r, r, r] if i % 2 else ["x", r, r] for i, r in enumerate(references)]
    vote = stored_vote_run(store, vote_rows, references)
    single = stored_vote_run(store, [[r if i % 2 else "x"] for i, r in enumerate(references)],
                         references)  # fmt: skip
    mixed = compare_runs(store, [single.id, vote.id], n_boot=200)
    assert [m.name for m in mixed.metrics] == ["final_answer"]
    assert mixed.metrics[0].values == [0.5, 0.5]  # first samples on both sides
    assert any("first sample" in n and "every run" in n for n in mixed.notes)
    single_cost, vote_cost = mixed.costs
    assert vote_cost.tokens_in_per_request == 3 * (single_cost.tokens_in_per_request or 0)
    with pytest.raises(BadInputError, match=f"run {single.id} has one sample per row"):
        compare_runs(store, [single.id, vote.id], aggregate="vote")
    other = stored_vote_run(store, [["x", "x", r] for r in references], references)
    votes = compare_runs(store, [other.id, vote.id], n_boot=200)
    assert [m.name for m in votes.metrics] == ["vote_final_answer"]
    assert votes.metrics[0].values == [0.0, 1.0]
    assert any("majority vote" in n for n in votes.notes)
    firsts = compare_runs(store, [other.id, vote.id], n_boot=200, aggregate="first")
    assert [m.name for m in firsts.metrics] == ["final_answer"]
    assert firsts.metrics[0].values == [0.0, 0.5]


# ----------------------------------------------------------------------- the real model


def _gsm8k(store: Store, n: int) -> None:
    with shared_dataset("gsm8k-test.jsonl").open(encoding="utf-8") as handle:
        rows = [json.loads(next(handle)) for _ in range(n)]
    store.add_dataset(
        NewDataset(
            name="gsm8k", source="gsm8k-test.jsonl", fingerprint="t",
            splits=[NewSplit("test", rows, "t")], task="generation",
            input_columns=["question"], reference_column="answer",
            metrics=["final_answer"], answer_rule="gsm8k",
        )
    )  # fmt: skip


def _texts(store: Store, run_id: int) -> list[list[str]]:
    samples = store.run_samples(run_id)
    return [
        [o.output, *(s.output for s in samples if s.row_idx == o.row_idx)]
        for o in store.run_outputs(run_id)
    ]


@pytest.mark.model
def test_seeded_samples_repeat_and_come_back_from_the_cache(store: Store) -> None:
    from tunelab.engine.evaluation.run import EvalRequest, evaluate, resume_run

    _gsm8k(store, 3)
    store.save_prompt_version(
        "cot",
        PromptContent(template="Question: {{ question }}", reasoning="cot",
                      settings={"max_new_tokens": 12, "temperature": 1.0, "seed": 5}),
    )  # fmt: skip

    def run(samples: int, use_cache: bool = True) -> Any:
        request = EvalRequest(prompt="cot", dataset="gsm8k", limit=3, batch_size=3,
                              latency_probe=0, samples=samples, use_cache=use_cache)  # fmt: skip
        return evaluate(store, request)

    first = run(3)
    texts = _texts(store, first.run_id)
    assert [len(t) for t in texts] == [3, 3, 3]
    assert any(len(set(t)) > 1 for t in texts)  # temperature 1: the samples differ
    assert {"vote_final_answer", "vote_agreement", "final_answer"} <= set(first.metrics)
    generated = [o.tokens_out for o in store.run_outputs(first.run_id)]
    generated += [s.tokens_out for s in store.run_samples(first.run_id)]
    assert first.metrics["tokens_out_mean"] == pytest.approx(sum(generated) / 3)  # all samples
    again = run(3)
    assert again.cached_rows == 3 and all(s.cached for s in store.run_samples(again.run_id))
    assert _texts(store, again.run_id) == texts
    fresh = run(3, use_cache=False)  # regenerated with the same seeds: the same samples
    assert fresh.cached_rows == 0 and _texts(store, fresh.run_id) == texts
    stopped: list[bool] = []
    request = EvalRequest(prompt="cot", dataset="gsm8k", limit=3, batch_size=2, latency_probe=0,
                          samples=3)  # fmt: skip
    cut = evaluate(store, request, lambda p: stopped.append(p.done >= 2), lambda: any(stopped))
    assert cut.interrupted and len(store.run_samples(cut.run_id)) == 2 * 2  # whole rows only
    resumed = resume_run(store, cut.run_id, batch_size=2, latency_probe=0)
    assert resumed.run.status == "succeeded" and _texts(store, cut.run_id) == texts
    alone = run(1)  # the first sample is what a single-sample run at that seed produces
    assert alone.cached_rows == 3 and [t[0] for t in _texts(store, alone.run_id)] == [
        t[0] for t in texts
    ]


@pytest.mark.model
def test_cli_samples_need_a_temperature_and_show_stability(workspace: Workspace) -> None:
    lines = shared_dataset("gsm8k-test.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines[:2]]
    data = workspace.root / "g.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert run_cli("dataset", "add", str(data), "--name", "g", workspace=workspace).returncode == 0
    template = workspace.root / "t.txt"
    template.write_text("Question: {{ question }}", encoding="utf-8")
    saved = run_cli("prompt", "new", "p", "-t", str(template), "--cot", "--max-tokens", "8",
                    workspace=workspace)  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    refused = run_cli("eval", "-p", "p", "-d", "g", "--samples", "3", workspace=workspace)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: --samples 3 at temperature 0 every sample is the same; set --temperature > 0"
    ]
    assert Store(workspace.db_path).list_runs() == []
    ran = run_cli("eval", "-p", "p", "-d", "g", "--samples", "2", "--temperature", "0.9",
                  "--seed", "3", "--no-latency-probe", "--json", workspace=workspace)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["metrics"]["vote_agreement"] >= 0
    shown = run_cli("run", "show", "1", "--stability", "--json", workspace=workspace)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["samples"] == 2 and len(view["rows"]) == 2
    assert all(sum(g["count"] for g in row["groups"]) == 2 for row in view["rows"])
    table = run_cli("run", "show", "1", "--stability", "--limit", "1", workspace=workspace)
    assert table.returncode == 0 and "mean agreement" in table.stdout

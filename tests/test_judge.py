"""The LLM judge: reply parsing, rubric variables, caching, pairwise swaps and ties,
agreement with human ratings, bad input on the CLI, and real runs of the built-in model and
of a judge behind `tunelab serve` (loopback only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.tune_helpers import tiny_model_dir
from tunelab.engine.errors import BadInputError
from tunelab.engine.judge import asking
from tunelab.engine.judge.agreement import agreement
from tunelab.engine.judge.pairwise import PairRequest, combine, judge_pair, pick_of, summarize_pairs
from tunelab.engine.judge.parsing import parse_pick, parse_score
from tunelab.engine.judge.rubric import ScoreScale, create_rubric
from tunelab.engine.judge.scoring import JudgeRequest, judge_run
from tunelab.store import (
    NewDataset,
    NewModel,
    NewPairVerdict,
    NewRunOutput,
    NewSplit,
    PromptContent,
    Store,
    Workspace,
)

QA_ROWS = [
    {"question": "What is the capital of France?", "answer": "Paris", "topic": "geography"},
    {"question": "How many legs does a dog have?", "answer": "Four", "topic": "animals"},
    {"question": "What colour is a clear sky?", "answer": "Blue", "topic": "nature"},
]
RUBRIC = (
    "Question: {{ input }}\nReference answer: {{ reference }}\nAnswer to grade: {{ output }}\n"
    "Rate how correct the answer is, from 1 (wrong) to 5 (fully correct)."
)


def seed_runs(store: Store, outputs: list[list[str]]) -> list[int]:
    """A QA dataset and one finished run per list of outputs (no model involved)."""
    dataset = store.add_dataset(
        NewDataset(
            name="qa",
            source="tests",
            fingerprint="fp-qa",
            splits=[NewSplit("test", QA_ROWS, "fp-test")],
            task="generation",
            input_columns=["question"],
            reference_column="answer",
            metrics=["exact_match"],
        )
    )
    model = store.add_model(NewModel("answerer", "base", "builtin", "/models/answerer"))
    version = store.save_prompt_version("qa", PromptContent(template="{{ question }}")).version
    run_ids = []
    for texts in outputs:
        run = store.create_run(version.id, model.id, dataset.id, "test", len(texts), {})
        store.add_run_outputs(
            run.id,
            [
                NewRunOutput(row_idx=i, rendered_prompt=QA_ROWS[i]["question"], output=text,
                             prediction=text, reference=QA_ROWS[i]["answer"], scores={},
                             latency_ms=1.0, tokens_in=5, tokens_out=2)
                for i, text in enumerate(texts)
            ],
        )  # fmt: skip
        store.finish_run(run.id, "succeeded", {})
        run_ids.append(run.id)
    return run_ids


# Parsing ---------------------------------------------------------------------------------

reasons = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60).filter(
    lambda t: not any(c.isdigit() for c in t)
)


LAYOUTS = [
    "Score: {s}\nReason: {r}",
    "score = {s}. Reason: {r}",
    "**Score:** {s}/{h}\nReason: {r}",
    "{s}\nReason: {r}",
]
"""Ways a judge writes a well-formed reply: the asked format, and what small models drift to."""


@settings(max_examples=200, deadline=None)
@given(st.integers(-3, 3), st.integers(1, 10), st.data(), reasons)
def test_a_well_formed_reply_parses_to_its_score_and_reason(
    low: int, width: int, data: st.DataObject, reason: str
) -> None:
    scale = ScoreScale(low, low + width)
    score = data.draw(st.integers(scale.low, scale.high))
    layout = data.draw(st.sampled_from(LAYOUTS))
    parsed = parse_score(layout.format(s=score, r=reason, h=scale.high), scale)
    assert (parsed.score, parsed.problem) == (score, None)
    assert parsed.rationale == " ".join(reason.split()).lstrip(" .,:;-")


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), st.integers(6, 99))
def test_doubtful_replies_are_unparseable_with_a_reason(score: int, off: int) -> None:
    scale = ScoreScale(1, 5)
    cases = {
        f"Score: {off}\nReason: x": "off the 1-5 scale",
        f"Score: {score}.5": "not whole",
        f"Score: {score}/{off}": f"out of {off}",
        f"Score: {score}. Later: score {off}": "several scores",
        "I think the answer is fine.": "no score",
    }
    for text, problem in cases.items():
        parsed = parse_score(text, scale)
        assert parsed.score is None and parsed.problem is not None and problem in parsed.problem


def test_picks_are_read_only_when_clear() -> None:
    assert parse_pick("Better: 2\nReason: shorter") == 2
    assert parse_pick("Better: Response 1") == 1
    assert parse_pick("1. It is correct") == 1
    assert parse_pick("Better: 1 ... no, better: 2") is None
    assert parse_pick("Both are fine.") is None
    for number in ("1.5", "12", "2,000", "150%"):
        assert parse_pick(f"Better: {number}\nReason: x") is None
    assert parse_pick("Better: 2.\nReason: x") == 2


@pytest.mark.parametrize("text", ["5-1", "1", "a-b", "1-500"])
def test_bad_scales_are_refused(text: str) -> None:
    with pytest.raises(BadInputError, match="scale"):
        ScoreScale.parse(text)


# Pairwise logic --------------------------------------------------------------------------


@given(st.sampled_from([1, 2, None]), st.sampled_from([1, 2, None]))
def test_two_passes_agree_or_tie(first_pass: int | None, second_pass: int | None) -> None:
    a_first = pick_of(first_pass, a_shown_first=True)
    b_first = pick_of(second_pass, a_shown_first=False)
    verdict = combine(a_first, b_first)
    if first_pass is None or second_pass is None:
        assert verdict == "unparsed"
    elif first_pass == second_pass:
        assert verdict == "tie"  # the same position both times: position bias, not quality
    else:
        assert verdict == ("a" if first_pass == 1 else "b")


def _verdict(verdict: str, a_first: str | None = "a", b_first: str | None = "a") -> NewPairVerdict:
    return NewPairVerdict(1, 2, a_first, b_first, verdict, "", "", False)


def test_pair_summary_counts_and_wilson_interval() -> None:
    from scipy.stats import binomtest

    verdicts = [_verdict("a")] * 7 + [_verdict("b", "b", "b")] * 2
    verdicts += [_verdict("tie", "a", "b")] * 3 + [_verdict("unparsed", None, "a")]
    summary = summarize_pairs(verdicts)
    assert (summary.wins, summary.losses, summary.ties, summary.unparsed) == (7, 2, 3, 1)
    interval = binomtest(7, 9).proportion_ci(0.95, method="wilson")
    assert summary.win_rate == pytest.approx(7 / 9)
    assert (summary.win_rate_low, summary.win_rate_high) == pytest.approx(
        (interval.low, interval.high)
    )
    # Readable passes: 12 with A first (7+2+3 picks), 13 with B first; the first-shown response
    # was picked by the 7+2 agreeing rows once each, and by every pass of a tie.
    assert summary.first_position_picks == pytest.approx((7 + 2 + 6) / 25)
    nothing = summarize_pairs([_verdict("tie", "a", "b")])
    assert nothing.win_rate is None and nothing.p_value is None


# Agreement -------------------------------------------------------------------------------


def test_agreement_with_humans() -> None:
    scale = ScoreScale(1, 5)
    unchecked = agreement([], scale)
    assert (unchecked.status, unchecked.rows, unchecked.spearman) == ("unchecked", 0, None)
    same = agreement([(1, 1), (3, 3), (5, 5)], scale)
    assert same.status == "checked" and same.spearman == pytest.approx(1.0)
    assert (same.exact, same.within_one, same.rows) == (1.0, 1.0, 3)
    off = agreement([(1, 2), (2, 4), (3, 3), (5, 1)], scale)
    assert off.exact == 0.25 and off.within_one == 0.5 and off.spearman is not None
    assert agreement([(3, 1), (3, 5)], scale).spearman is None  # a constant judge: undefined
    ten = agreement([(2, 1), (9, 5)], ScoreScale(0, 10))
    assert ten.exact is None and ten.spearman == pytest.approx(1.0)


# Rubrics and bad input -------------------------------------------------------------------


def test_rubric_variables_are_checked_at_creation_and_first_use(store: Store) -> None:
    seed_runs(store, [["Paris", "Four", "Blue"]])
    with pytest.raises(BadInputError, match=r"uses contxt.*may read input, output, reference"):
        create_rubric(store, "r", "{{ contxt }} {{ output }}", ScoreScale())
    assert "r" not in store.prompt_names()
    version, created = create_rubric(
        store, "r", "{{ topic }}: {{ output }}", ScoreScale(0, 10), dataset="qa"
    )
    assert created and version.settings["judge"] == {"scale": [0, 10]}
    # A plain prompt version used as a rubric is checked when it is first used.
    store.save_prompt_version("loose", PromptContent(template="{{ context }} {{ output }}"))
    with pytest.raises(BadInputError, match="rubric loose@1 uses context"):
        judge_run(store, JudgeRequest(1, "loose@1"))
    assert store.list_judge_runs() == []


@pytest.fixture
def qa_workspace(workspace: Workspace) -> Workspace:
    with workspace.open_store() as store:
        seed_runs(store, [["Paris", "Four", "Blue"]])
        create_rubric(store, "correct", RUBRIC, ScoreScale())
    return workspace


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["judge", "9", "--rubric", "correct@1"], "unknown run"),
        (["judge", "1", "--rubric", "nope@1"], "unknown prompt 'nope'"),
        (["judge", "1", "--rubric", "correct@1", "--batch-size", "0"], "batch size"),
        (["judge", "pair", "1", "1", "--rubric", "correct@1"], "two different runs"),
        (["judge", "rubric", "bad", "--template", "{{ contxt }}"], "uses contxt"),
        (["judge", "rubric", "bad", "--template", "{{ output }}", "--scale", "5-1"], "scale"),
        (["judge", "show", "7"], "unknown judge run"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_stores_nothing(
    qa_workspace: Workspace, args: list[str], needle: str
) -> None:
    result = run_cli(*args, workspace=qa_workspace)
    assert result.returncode == 2, result.stderr
    assert needle in _one_error_line(result.stderr)
    with qa_workspace.open_store() as store:
        assert store.list_judge_runs() == []
        assert "bad" not in store.prompt_names()


# Real judges -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("judge"))


def _add_tiny(store: Store, folder: Path) -> str:
    store.add_model(NewModel("tiny", "base", "hf_folder", str(folder)))
    return "tiny"


def test_a_second_judge_run_reads_the_cache_and_calls_no_model(
    store: Store, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, changed_id = seed_runs(store, [["Paris", "Five", "Blue"], ["Lyon", "Five", "Blue"]])
    rubric, _ = create_rubric(store, "correct", RUBRIC, ScoreScale(), max_new_tokens=8)
    first = judge_run(store, JudgeRequest(run_id, rubric.ref, _add_tiny(store, tiny_folder)))
    assert first.summary.rows == 3 and first.summary.cached == 0
    assert first.summary.scored + first.summary.unparseable == 3
    calls: list[int] = []
    real_generate = asking._generate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(asking, "_generate", counting)
    again = judge_run(store, JudgeRequest(run_id, rubric.ref, "tiny"))
    assert calls == [] and again.summary.cached == 3
    assert [j.raw for j in again.judgements] == [j.raw for j in first.judgements]
    # Another run with one output changed: only that row is a new request to the model.
    other = judge_run(store, JudgeRequest(changed_id, rubric.ref, "tiny"))
    assert calls == [1] and other.summary.cached == 2
    assert [j.cached for j in other.judgements] == [False, True, True]


def test_one_case_is_judged_and_cached(store: Store, tiny_folder: Path) -> None:
    from tunelab.engine.judge.asking import JudgeCase
    from tunelab.engine.judge.scoring import judge_one

    rubric, _ = create_rubric(store, "correct", RUBRIC, ScoreScale(), max_new_tokens=6)
    case = JudgeCase("What is 2 + 2?", "4", "4")
    first = judge_one(store, rubric.ref, case, _add_tiny(store, tiny_folder))
    assert first.raw.startswith("Score:") and not first.cached
    assert (first.score is None) == (first.problem is not None)
    assert judge_one(store, rubric.ref, case, "tiny") == replace(first, cached=True)
    store.save_prompt_version("topical", PromptContent(template="{{ topic }}: {{ output }}"))
    with pytest.raises(BadInputError, match="rubric topical@1 uses topic, which the case"):
        judge_one(store, "topical@1", case, "tiny")


def test_interrupted_judge_run_is_marked_and_keeps_what_it_did(
    store: Store, tiny_folder: Path
) -> None:
    (run_id,) = seed_runs(store, [["Paris", "Four", "Blue"]])
    rubric, _ = create_rubric(store, "correct", RUBRIC, ScoreScale(), max_new_tokens=4)
    report = judge_run(
        store,
        JudgeRequest(run_id, rubric.ref, _add_tiny(store, tiny_folder)),
        should_stop=lambda: True,
    )
    assert report.interrupted and report.run.status == "interrupted" and report.judgements == []


@pytest.fixture(scope="module")
def served_tiny(tiny_folder: Path) -> Iterator[Any]:
    from tunelab.engine.models.loading import ModelRef, load_ref
    from tunelab.engine.serving.server import ModelServer, ServeConfig

    loaded = load_ref(ModelRef("tiny", "hf_folder", "base", str(tiny_folder)), device="cpu")
    with ModelServer(loaded, "tiny", ServeConfig(port=0)) as running:
        yield running


def test_an_endpoint_model_judges_through_the_openai_client(
    store: Store, served_tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.engine.models.endpoint import register_endpoint

    (run_id,) = seed_runs(store, [["Paris", "Four", "Blue"]])
    rubric, _ = create_rubric(store, "correct", RUBRIC, ScoreScale(), max_new_tokens=6)
    register_endpoint(store, "openai:tiny", {"base_url": served_tiny.base_url})

    def no_local_generation(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an endpoint judge must not generate locally")

    monkeypatch.setattr("tunelab.engine.generation.batched.generate_batch", no_local_generation)
    report = judge_run(store, JudgeRequest(run_id, rubric.ref, "tiny"))
    assert report.run.judge_model_name == "tiny" and report.summary.rows == 3
    assert all(j.raw for j in report.judgements)
    assert report.summary.scored + report.summary.unparseable == 3


@pytest.mark.model
def test_builtin_judge_stores_score_and_rationale_per_output(store: Store) -> None:
    run_id, other_id = seed_runs(store, [["Paris", "Five", "Blue"], ["Lyon", "Four", "Green"]])
    rubric, _ = create_rubric(store, "correct", RUBRIC, ScoreScale())
    for output in store.run_outputs(run_id)[:2]:
        store.rate_output(output.id, 5 if output.row_idx == 0 else 1)
    report = judge_run(store, JudgeRequest(run_id, rubric.ref))
    stored = store.judgements(report.run.id)
    assert len(stored) == 3 and report.run.status == "succeeded"
    for judgement in stored:
        assert judgement.raw.startswith("Score:")
        assert (judgement.score is None) == (judgement.problem is not None)
        if judgement.score is not None:
            assert 1 <= judgement.score <= 5 and judgement.rationale
    assert report.summary.scored + report.summary.unparseable == 3
    assert sum(report.summary.distribution.values()) == report.summary.scored
    rated = [j for j in stored if j.rating is not None and j.score is not None]
    assert report.agreement.rows == len(rated)
    assert report.agreement.status == ("checked" if rated else "unchecked")
    assert store.latest_judgements(run_id)[stored[0].run_output_id].id == stored[0].id
    pair = judge_pair(store, PairRequest(run_id, other_id, rubric.ref))
    verdicts = store.pair_verdicts(pair.run.id)
    assert len(verdicts) == 3 and all(v.raw_a_first and v.raw_b_first for v in verdicts)
    s = pair.summary
    assert s.wins + s.losses + s.ties + s.unparsed == 3
    for v in verdicts:
        assert v.verdict == combine(v.a_first, v.b_first)


@pytest.mark.model
def test_cli_judge_json_and_unchecked(qa_workspace: Workspace) -> None:
    result = run_cli("judge", "1", "--rubric", "correct@1", "--json", workspace=qa_workspace)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["agreement"]["status"] == "unchecked"
    assert payload["summary"]["rows"] == 3 and len(payload["judgements"]) == 3
    shown = run_cli("judge", "show", str(payload["judge_run"]["id"]), workspace=qa_workspace)
    assert shown.returncode == 0 and "unchecked" in shown.stdout


def test_a_rubric_survives_the_editor_round_trip(store: Store) -> None:
    from tunelab.engine.judge.rubric import Rubric
    from tunelab.engine.prompts.text import (
        content_to_text,
        text_to_content,
        validated_content,
        version_to_content,
    )

    version, _ = create_rubric(store, "r", "{{ output }}", ScoreScale(0, 10))
    edited, _ = text_to_content(content_to_text(version_to_content(version), ""))
    again = store.save_prompt_version("r", validated_content(edited)).version
    assert again.ref == "r@1" and Rubric.from_version(again).scale == ScoreScale(0, 10)
    with pytest.raises(BadInputError, match=r"settings\.judge must be a mapping"):
        validated_content(PromptContent(template="{{ output }}", settings={"judge": 5}))


def test_eval_with_judge_scores_the_new_run(qa_workspace: Workspace, tiny_folder: Path) -> None:
    added = run_cli("model", "add", str(tiny_folder), "--name", "tiny", workspace=qa_workspace)
    assert added.returncode == 0, added.stderr
    refused = run_cli("eval", "--prompt", "qa", "--dataset", "qa", "--judge", "nope@1",
                      workspace=qa_workspace)  # fmt: skip
    assert refused.returncode == 2 and "unknown prompt 'nope'" in _one_error_line(refused.stderr)
    with qa_workspace.open_store() as store:
        assert len(store.list_runs()) == 1  # refused before the evaluation started
    evaluate = ["eval", "--prompt", "qa", "--model", "tiny", "--dataset", "qa"]
    options = ["--max-new-tokens", "4", "--latency-probe", "0", "--json"]
    judge = ["--judge", "correct@1", "--judge-model", "tiny"]
    result = run_cli(*evaluate, *options, *judge, workspace=qa_workspace)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["judge"]["judge_run"]["run_id"] == payload["run_id"] == 2
    assert payload["judge"]["summary"]["rows"] == 3
    assert payload["judge"]["agreement"]["status"] == "unchecked"

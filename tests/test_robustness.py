"""Robustness suites: seeded perturbations, prompt variants, lineage, paired drops, the
compare sentence, bad input through the CLI, and a real built-in-model suite on 8 rows."""

from __future__ import annotations

import random
import re
import sqlite3
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.compare_helpers import base_model, classification_run, dataset, finetuned_model, prompt
from tests.conftest import run_cli, shared_dataset
from tunelab.engine.compare.stats import ExactPairedAccuracy
from tunelab.engine.errors import BadInputError
from tunelab.engine.robustness.contrast import Side, contrast_sentences, robustness_contrast
from tunelab.engine.robustness.derived import derive_rows, store_derived
from tunelab.engine.robustness.perturb import (
    InputPerturbation,
    parse_input_perturbation,
)
from tunelab.engine.robustness.prompt_variants import (
    label_order,
    paraphrases,
    parse_prompt_variants,
    shot_order,
)
from tunelab.engine.robustness.records import PerturbationResult, RobustnessSummary
from tunelab.engine.robustness.suite import RobustnessRequest, run_suite
from tunelab.engine.robustness.summary import SOURCE_ROWS_KEY, robustness_for_run
from tunelab.store import (
    NewDataset,
    NewRobustnessItem,
    NewSplit,
    PromptContent,
    Store,
    Workspace,
)

ALL_SPECS = ["typos", "case:lower", "case:upper", "case:random", "whitespace", "punctuation",
             "emoji", "truncate"]  # fmt: skip
texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=80
) | st.sampled_from(["@user Oh, hidden revenge and anger...I remember 😡 #rage", "ÀÉ ça va?"])


@settings(max_examples=60, deadline=None)
@given(text=texts, seed=st.integers(0, 2**31), spec=st.sampled_from(ALL_SPECS))
def test_every_perturbation_is_seeded_and_leaves_the_label_alone(
    text: str, seed: int, spec: str
) -> None:
    perturbation = parse_input_perturbation(spec, rate=0.3)
    row = {"text": text, "label": text, "id": 7}
    once = perturbation.apply_row(row, ["text"], seed, source_idx=3)
    again = perturbation.apply_row(dict(row), ["text"], seed, source_idx=3)
    assert once == again  # byte-identical under the same seed
    assert once["label"] == text and once["id"] == 7  # only input columns change


@settings(max_examples=60, deadline=None)
@given(text=texts, seed=st.integers(0, 1000))
def test_each_perturbation_does_what_it_says(text: str, seed: int) -> None:
    def apply(spec: str) -> str:
        return parse_input_perturbation(spec, rate=0.5).apply_text(text, random.Random(seed))

    letters_out = [c for c in apply("typos") if not c.isalpha()]
    assert letters_out == [c for c in text if not c.isalpha()]  # typos touch letters only
    assert apply("case:lower") == text.lower()
    assert apply("case:upper") == text.upper()
    if text.isascii():  # outside ASCII a letter's upper case may be two letters (ß, SS)
        assert apply("case:random").lower() == text.lower()
    assert apply("whitespace").split() == text.split()
    assert not any(unicodedata.category(c).startswith("P") for c in apply("punctuation"))
    assert re.search(r"#\w", apply("emoji")) is None
    assert text.startswith(apply("truncate"))
    assert len(apply("truncate").split()) == -(-len(text.split()) // 2)


def test_emoji_and_hashtags_go_and_typos_follow_the_rate() -> None:
    emoji = InputPerturbation("emoji", None)
    assert emoji.apply_text("so happy 😀 today #blessed !", random.Random(0)) == "so happy today !"
    text = "abcdefghij" * 100
    changed = InputPerturbation("typos", 0.05).apply_text(text, random.Random(1))
    differing = sum(a != b for a, b in zip(text, changed, strict=False))
    assert changed != text and differing < len(text)  # some letters, not all
    assert InputPerturbation("typos", 1.0).apply_text("ab", random.Random(0)) != "ab"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("typoz", "unknown perturbation 'typoz'"),
        ("typos:0", "in (0, 1]"),
        ("truncate:1.5", "in (0, 1]"),
        ("case:shout", "case mode 'shout'"),
        ("emoji:2", "takes no parameter"),
    ],
)
def test_bad_perturbation_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace("]", r"\]")):
        parse_input_perturbation(spec, rate=0.05)


def test_a_rate_outside_0_1_is_refused() -> None:
    for rate in (0.0, -0.1, 1.01):
        with pytest.raises(BadInputError, match=r"the rate must be in \(0, 1\]"):
            RobustnessRequest(1, rate=rate)


def test_prompt_variants_change_only_what_they_name(tmp_path: Path) -> None:
    store = Store.memory()
    template = "Is it pos or neg? {{ text }}"
    pv = prompt(store, "p", template, examples=[{"text": "a", "output": "pos"},
                                                {"text": "b", "output": "neg"}])  # fmt: skip
    flipped = label_order(pv, ["pos", "neg"], seed=0)
    assert flipped.content.template == "Is it neg or pos? {{ text }}"
    assert flipped.content.examples == pv.examples
    reordered = shot_order(pv, seed=0)
    assert reordered.content.examples == list(reversed(pv.examples))
    lines = paraphrases(pv, ["Pos or neg: {{ text }}"])
    assert lines[0].content.template == "Pos or neg: {{ text }}"
    with pytest.raises(BadInputError, match="no system message"):
        paraphrases(pv, ["just words"])
    with pytest.raises(BadInputError, match="once each"):
        label_order(prompt(store, "q", "Label: {{ text }}"), ["pos", "neg"], seed=0)
    with pytest.raises(BadInputError, match="at least 2"):
        shot_order(prompt(store, "r", "{{ text }}"), seed=0)
    with pytest.raises(BadInputError, match="unknown prompt variant"):
        parse_prompt_variants(["label_ordr"])
    store.close()


def _suite_with_runs(store: Store, clean_correct: list[int], perturbed_correct: list[int]) -> int:
    """A clean run on rows 2.. of a dataset, its typo-perturbed copy, and a perturbed run."""
    ds = dataset(store, "ds", n=len(clean_correct) + 2)
    pv = prompt(store)
    model = base_model(store)
    indices = list(range(2, len(clean_correct) + 2))
    clean = classification_run(store, pv, model, ds, clean_correct, rows=indices)
    rows = store.dataset_rows("ds", "test", indices=indices)
    derived = derive_rows(clean, ds, rows, ["text"], InputPerturbation("typos", 0.2), seed=4)
    copy = store_derived(store, derived)
    perturbed = classification_run(store, pv, model, copy, perturbed_correct)
    suite = store.add_robustness_suite(
        clean.id, 4, "accuracy", {}, [NewRobustnessItem("typos", "input", derived.detail, copy.id)]
    )
    store.set_robustness_item_run(suite.items[0].id, perturbed.id)
    store.finish_robustness_suite(suite.id, "finished")
    return clean.id


def test_drop_is_clean_minus_perturbed_with_the_paired_interval(store: Store) -> None:
    clean_correct = [1] * 30 + [0] * 10
    perturbed_correct = [1] * 18 + [0] * 12 + [0] * 8 + [1] * 2
    clean_id = _suite_with_runs(store, clean_correct, perturbed_correct)
    summary = robustness_for_run(store, clean_id)
    assert summary is not None and summary.state == "finished"
    (result,) = summary.results
    assert result.clean_metric == pytest.approx(0.75)
    assert result.perturbed_metric == pytest.approx(0.5)
    assert result.drop == pytest.approx(0.25)  # positive: the perturbation hurt
    # Pairing: row i of the copy is source row i + 2; fixed = wrong -> right = 2, broken = 12.
    exact = ExactPairedAccuracy(fixed=2, broken=12, rows=40)
    low, high = exact.interval(0.95)
    assert result.ci == pytest.approx((-high, -low))
    assert result.p_value == pytest.approx(exact.p_value)
    assert result.ci is not None and result.ci[0] > 0  # significant, in the hurt direction
    lineage = store.dataset_lineage(
        store.get_robustness_suite(summary.suite_id).items[0].dataset_id or 0
    )
    assert lineage is not None and lineage[SOURCE_ROWS_KEY] == list(range(2, 42))
    assert lineage["filters"] == {"perturbation": "typos", "parameter": 0.2, "seed": 4}


def _summary(drop: float, ci: tuple[float, float], p: float, run_id: int) -> RobustnessSummary:
    result = PerturbationResult(
        "typos", "input", run_id + 10, "accuracy", 0.8, 0.8 - drop, drop, ci, p, 100,
        "typos at 5% of letters, seed 0",
    )  # fmt: skip
    return RobustnessSummary(run_id, run_id, 0, (result,))


def test_compare_sentence_puts_both_drops_side_by_side() -> None:
    fine_tune = Side("the fine-tune (run 5)", 5, _summary(0.04, (0.01, 0.07), 0.012, 5))
    prompt_side = Side("the prompt (run 3)", 3, _summary(0.11, (0.05, 0.17), 0.0004, 3))
    (sentence,) = contrast_sentences(fine_tune, prompt_side)
    assert sentence == (
        "under typos (typos at 5% of letters, seed 0), the fine-tune (run 5) loses 0.040 accuracy "
        "(95% CI +0.010 to +0.070, p=0.012, 100 rows), the prompt (run 3) loses 0.110 "
        "(95% CI +0.050 to +0.170, p<0.001, 100 rows)"
    )
    (missing,) = contrast_sentences(fine_tune, Side("the prompt (run 3)", 3, None))
    assert "the prompt (run 3) has none" in missing and "tunelab robustness 3" in missing
    assert contrast_sentences(Side("a", 1, None), Side("b", 2, None)) == []


def test_robustness_contrast_names_the_fine_tune_side(store: Store) -> None:
    clean_id = _suite_with_runs(store, [1, 0] * 5, [0, 0] * 5)
    base = store.get_model("base")
    tuned = finetuned_model(store, base)
    other = classification_run(
        store, prompt(store), tuned, store.get_dataset("ds"), [1] * 10, rows=range(2, 12)
    )
    (sentence,) = robustness_contrast(store, [clean_id, other.id])
    assert sentence.startswith(f"robustness: the prompt (run {clean_id}) has a suite")
    assert f"the fine-tune (run {other.id}) has none" in sentence


@pytest.fixture
def cli_workspace(workspace: Workspace) -> Workspace:
    with workspace.open_store() as store:
        ds = dataset(store, "ds", n=6)
        pv = prompt(store)
        model = base_model(store)
        classification_run(store, pv, model, ds, [1, 0, 1, 1, 0, 1])  # run 1, finished
        classification_run(store, pv, model, ds, [1, 0], finished=False)  # run 2, running
    return workspace


def _counts(workspace: Workspace) -> tuple[int, int, int]:
    with workspace.open_store() as store:
        versions = len(store.list_prompt_versions("cls"))
        return len(store.list_robustness_suites()), len(store.dataset_names()), versions


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["1", "--perturb", "typos,sarcasm"], "unknown perturbation 'sarcasm'"),
        (["1", "--rate", "1.5"], "the rate must be in (0, 1]"),
        (["2"], "run 2 is running"),
        (["1", "--prompt-variants", "shot_order"], "fixed demonstration"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_stores_nothing(
    cli_workspace: Workspace, args: list[str], message: str
) -> None:
    before = _counts(cli_workspace)
    result = run_cli("robustness", *args, workspace=cli_workspace)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _counts(cli_workspace) == before


def test_a_run_whose_rows_are_gone_is_refused(cli_workspace: Workspace) -> None:
    with sqlite3.connect(cli_workspace.db_path) as db:  # what no tunelab command can do
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("DELETE FROM dataset_rows WHERE idx >= 3")
    result = run_cli("robustness", "1", "--perturb", "case", workspace=cli_workspace)
    assert result.returncode == 2
    assert "run 1's rows are gone" in result.stderr
    assert _counts(cli_workspace)[0] == 0


def test_a_stopped_suite_keeps_its_perturbed_datasets_and_says_so(store: Store) -> None:
    ds = dataset(store, "ds", n=4)
    clean = classification_run(store, prompt(store), base_model(store), ds, [1, 0, 1, 1])
    request = RobustnessRequest(clean.id, ["typos", "truncate:0.5"], seed=1)
    summary = run_suite(store, request, should_stop=lambda: True)
    assert summary.state == "failed" and summary.results == ()
    suite = store.get_robustness_suite(summary.suite_id)
    assert suite.status == "interrupted" and [i.run_id for i in suite.items] == [None, None]
    cut = store.get_dataset_by_id(suite.items[1].dataset_id or 0)
    texts = [r.data["text"] for r in store.dataset_rows(cut.name, "test")]
    assert texts == ["row", "row", "row", "row"]  # "row 0" cut to its first half of words


def test_show_prints_the_suite_the_engine_summarises(workspace: Workspace) -> None:
    import json

    with workspace.open_store() as store:
        clean_id = _suite_with_runs(store, [1, 1, 0, 1], [0, 1, 0, 0])
        expected = robustness_for_run(store, clean_id)
    assert expected is not None
    shown = run_cli("robustness", "show", str(clean_id), "--json", workspace=workspace)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["suite_id"] == expected.suite_id
    assert data["results"][0]["drop"] == pytest.approx(expected.results[0].drop)
    assert data["results"][0]["detail"] == "typos at 20% of letters, seed 4"


@pytest.mark.model
def test_a_real_suite_on_8_rows_of_the_built_in_model(tmp_path: Path) -> None:
    import json

    path = shared_dataset("tweeteval-emotion-val.jsonl")
    rows = [json.loads(line) for _, line in zip(range(8), path.open(), strict=False)]
    labels = ["anger", "joy", "optimism", "sadness"]
    store = Store(tmp_path / "db.sqlite")
    store.add_dataset(
        NewDataset("emotion", "test", "emotion", [NewSplit("validation", rows, "v")],
                   task="classification", input_columns=["text"], reference_column="label",
                   labels=labels, metrics=["accuracy"])
    )  # fmt: skip
    template = "Emotion (anger, joy, optimism or sadness)?\n{{ text }}\nEmotion:"
    store.save_prompt_version("emo", PromptContent(template=template, mode="plain"))
    from tunelab.engine.evaluation.run import EvalRequest, evaluate

    clean = evaluate(
        store,
        EvalRequest(prompt="emo@1", dataset="emotion", scoring="likelihood", latency_probe=0),
    ).run
    request = RobustnessRequest(clean.id, ["typos:0.1", "case:upper"], seed=3,
                                prompt_variants=["label_order"])  # fmt: skip
    summary = run_suite(store, request)
    assert summary.state == "finished"
    assert [r.perturbation for r in summary.results] == ["typos", "case", "label_order"]
    assert all(r.rows == 8 and r.ci is not None for r in summary.results)
    for r in summary.results:
        assert r.drop == pytest.approx(r.clean_metric - r.perturbed_metric)
    suite = store.get_robustness_suite(summary.suite_id)
    typo_copy = store.get_dataset_by_id(suite.items[0].dataset_id or 0)
    copied = store.dataset_rows(typo_copy.name, "validation")
    assert [r.data["label"] for r in copied] == [r["label"] for r in rows]
    assert [r.data["text"] for r in copied] != [r["text"] for r in rows]
    child = store.get_prompt_version_by_id(suite.items[2].prompt_version_id or 0)
    assert child.parent_version_id == clean.prompt_version_id and "labels listed" in child.message
    again = run_suite(store, request)  # the same seed: the same derived datasets, reused
    second = store.get_robustness_suite(again.suite_id)
    assert [i.dataset_id for i in second.items] == [i.dataset_id for i in suite.items]
    assert [r.perturbed_metric for r in again.results] == [
        r.perturbed_metric for r in summary.results
    ]
    store.close()


async def test_the_compare_screen_shows_both_sides_robustness() -> None:
    from tests.fake_engine import FakeEngine
    from tests.tui_fixtures import seed_store
    from tests.tui_helpers import current_screen, show_screen, wait_for_text
    from tunelab.tui.app import make_app
    from tunelab.tui.screens.compare import CompareScreen

    store = Store.memory()
    seed_store(store)
    clean, other = store.get_run(2), store.get_run(3)
    # Run 3 covers run 2's rows, so it stands in for a prompt perturbation of run 2.
    item = NewRobustnessItem("paraphrase", "prompt", "instruction paraphrase 1")
    suite = store.add_robustness_suite(clean.id, 0, "accuracy", {}, [item])
    store.set_robustness_item_run(suite.items[0].id, other.id)
    store.finish_robustness_suite(suite.id, "finished")
    app = make_app(store, engine=FakeEngine(store))
    async with app.run_test(size=(120, 40)) as pilot:
        await show_screen(app, pilot, "5", "Compare")
        current_screen(app, CompareScreen).compare([2, 3])
        await wait_for_text(app, pilot, "robustness: the prompt (run 2) has a suite")
    store.close()

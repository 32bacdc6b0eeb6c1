"""Calibration of label-likelihood scores (#22): the math, the stored record, the evaluation
path applying it, and a real built-in-model run on a few TweetEval irony rows."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import run_cli, shared_dataset
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.calibrate import calibrate_version, measure_calibration
from tunelab.engine.evaluation.plan import cache_key
from tunelab.engine.evaluation.run import EvalRequest, evaluate
from tunelab.engine.models.loading import load_model
from tunelab.engine.models.sources import resolve_model
from tunelab.engine.prompts.calibration import (
    CONTENT_FREE_INPUTS,
    Calibration,
    calibrated_prediction,
    calibrated_scores,
    label_distribution,
    mean_distribution,
)
from tunelab.engine.prompts.text import validated_content
from tunelab.store import DatasetRow, NewDataset, NewSplit, PromptContent, Store, Workspace

LABELS = ["irony", "non_irony"]
TEMPLATE = "Is this tweet ironic? Answer irony or non_irony.\n\nTweet: {{ text }}\nAnswer:"

log_likelihoods = st.floats(-60, 0, allow_nan=False)
priors = st.floats(0.01, 1.0, allow_nan=False)


@st.composite
def scored_labels(draw: st.DrawFn) -> tuple[list[str], dict[str, float], list[float]]:
    n = draw(st.integers(2, 6))
    labels = [f"label{i}" for i in range(n)]
    scores = {label: draw(log_likelihoods) for label in labels}
    prior = [draw(priors) for _ in labels]
    return labels, scores, prior


# --- the math ----------------------------------------------------------------------------


@given(scored_labels(), st.randoms(use_true_random=False))
def test_calibration_commutes_with_relabelling(
    case: tuple[list[str], dict[str, float], list[float]], rng: Any
) -> None:
    labels, scores, prior = case
    order = list(range(len(labels)))
    rng.shuffle(order)
    permuted_labels = [labels[i] for i in order]
    permuted_prior = [prior[i] for i in order]
    straight = calibrated_scores(scores, labels, prior)
    permuted = calibrated_scores(scores, permuted_labels, permuted_prior)
    for label in labels:
        assert math.isclose(straight[label], permuted[label], abs_tol=1e-9)


@given(scored_labels(), st.floats(0.1, 10))
def test_calibrated_scores_are_a_distribution_and_ignore_the_prior_scale(
    case: tuple[list[str], dict[str, float], list[float]], scale: float
) -> None:
    labels, scores, prior = case
    calibrated = calibrated_scores(scores, labels, prior)
    assert math.isclose(sum(math.exp(v) for v in calibrated.values()), 1.0, rel_tol=1e-9)
    scaled = calibrated_scores(scores, labels, [p * scale for p in prior])
    assert all(math.isclose(calibrated[k], scaled[k], abs_tol=1e-9) for k in labels)


@given(scored_labels())
def test_a_uniform_prior_leaves_the_argmax_and_a_prior_equal_to_the_scores_flattens(
    case: tuple[list[str], dict[str, float], list[float]],
) -> None:
    labels, scores, _ = case
    uniform = [1 / len(labels)] * len(labels)
    best = max(scores.values())
    # Equal up to rounding: a uniform prior only renormalises the softmax.
    assert math.isclose(scores[calibrated_prediction(scores, labels, uniform)], best, abs_tol=1e-9)
    own = label_distribution(scores, labels)
    if min(own) > 1e-12:
        flat = calibrated_scores(scores, labels, own)
        assert all(math.isclose(v, -math.log(len(labels)), abs_tol=1e-6) for v in flat.values())


@given(st.lists(scored_labels(), min_size=1, max_size=5))
def test_the_mean_distribution_is_a_distribution(
    cases: list[tuple[list[str], dict[str, float], list[float]]],
) -> None:
    labels = cases[0][0]
    rows = [
        label_distribution({k: s[k] for k in labels}, labels)
        for _, s, _ in cases
        if list(s) == labels
    ]
    mean = mean_distribution(rows)
    assert math.isclose(sum(mean), 1.0, rel_tol=1e-9) and all(p >= 0 for p in mean)


def test_a_calibration_round_trips_and_refuses_malformed_records() -> None:
    stored = Calibration(
        "contextual", "content_free", ("a", "b"), (0.25, 0.75), CONTENT_FREE_INPUTS
    )
    assert Calibration.from_settings({"calibration": stored.to_dict()}) == stored
    assert Calibration.from_settings({}) is None
    with pytest.raises(BadInputError, match="method must be one of"):
        Calibration("platt", "split", ("a", "b"), (0.5, 0.5))
    with pytest.raises(BadInputError, match="2 entries for 3 labels"):
        Calibration("batch", "split", ("a", "b", "c"), (0.5, 0.5))
    with pytest.raises(BadInputError, match="stores no vector"):
        Calibration("batch", "scored_rows", ("a", "b"), (0.5, 0.5))
    with pytest.raises(BadInputError, match="neither"):
        Calibration("contextual", "scored_rows", ("a", "b"))
    with pytest.raises(BadInputError, match="unknown calibration setting"):
        Calibration.from_settings({"calibration": {"method": "batch", "weights": [1]}})
    # A version's text form keeps the record, normalised, and refuses a bad one.
    content = validated_content(
        PromptContent(template="{{ text }}", settings={"calibration": stored.to_dict()})
    )
    assert Calibration.from_settings(content.settings) == stored
    with pytest.raises(BadInputError, match="entries must be > 0"):
        validated_content(
            PromptContent(
                template="{{ text }}",
                settings={"calibration": {**stored.to_dict(), "vector": [0.0, 1.0]}},
            )
        )


# --- the evaluation path, with the real built-in model ---------------------------------------


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
                NewSplit("validation", _rows("tweeteval-irony-val.jsonl", 4), "b"),
                NewSplit("test", _rows("tweeteval-irony-test.jsonl", 3), "c"),
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


def _record_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    original = store.dataset_rows

    def recording(
        dataset: str, split: str, indices: Iterable[int] | None = None, limit: int | None = None
    ) -> list[DatasetRow]:
        read.append(split)
        return original(dataset, split, indices=indices, limit=limit)

    monkeypatch.setattr(store, "dataset_rows", recording)
    return read


def _label_scores(store: Store, prompt: str) -> dict[str, float]:
    loaded = load_model(store, resolve_model(store, "builtin"))
    key = cache_key(loaded.fingerprint, prompt, {}, "likelihood", LABELS)
    return dict(json.loads(store.cached_responses([key])[key].output))


def _likelihood_run(store: Store, ref: str, split: str = "test") -> int:
    request = EvalRequest(
        prompt=ref, dataset="irony", split=split, scoring="likelihood", latency_probe=0
    )
    return evaluate(store, request).run_id


@pytest.mark.model
def test_calibrated_versions_apply_their_prior_and_never_read_test_rows(
    irony: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = _record_reads(irony, monkeypatch)
    contextual = calibrate_version(irony, "irony@1", "irony", "validation", "contextual")
    batch = calibrate_version(irony, "irony@1", "irony", "validation", "batch")
    assert read == ["validation"]  # the batch prior's inputs; contextual reads no row at all
    assert (
        contextual.parent_version_id
        == batch.parent_version_id
        == irony.get_prompt_version("irony@1").id
    )
    assert "content-free inputs 'N/A', '', '[MASK]'" in contextual.message
    assert "4 rows of irony/validation" in batch.message
    stored = Calibration.from_settings(batch.settings)
    assert stored is not None and stored.rows == 4 and stored.model == "builtin"
    assert math.isclose(sum(stored.vector), 1.0, abs_tol=1e-5)
    # An identical calibration is the same version, not a new one.
    assert calibrate_version(irony, "irony@1", "irony", "validation", "batch").id == batch.id

    plain_run = _likelihood_run(irony, "irony@1")
    for version in (contextual, batch):
        calibration = Calibration.from_settings(version.settings)
        assert calibration is not None
        run_id = _likelihood_run(irony, version.ref)
        outputs = irony.run_outputs(run_id)
        assert all(o.cached for o in outputs)  # the label scores are the uncalibrated run's
        for output in outputs:
            scores = _label_scores(irony, output.rendered_prompt)
            assert output.prediction == calibrated_prediction(scores, LABELS, calibration.vector)
        assert irony.get_run(run_id).metrics["calibration"] == calibration.describe()
    assert "calibration" not in irony.get_run(plain_run).metrics

    # Batch over the rows each run scores: the prior is this run's mean, recorded with it.
    per_run = calibrate_version(irony, "irony@1", "irony", "validation", "batch", per_run=True)
    run = irony.get_run(_likelihood_run(irony, per_run.ref))
    assert str(run.metrics["calibration"]).startswith(
        "batch calibration from the inputs of the 3 rows this run scored (prior irony "
    )
    outputs = irony.run_outputs(run.id)
    prior = mean_distribution(
        [label_distribution(_label_scores(irony, o.rendered_prompt), LABELS) for o in outputs]
    )
    for output in outputs:
        scores = _label_scores(irony, output.rendered_prompt)
        assert output.prediction == calibrated_prediction(scores, LABELS, prior)
    # Reproducible: the same version on the same rows predicts the same.
    again = irony.run_outputs(_likelihood_run(irony, per_run.ref))
    assert [o.prediction for o in again] == [o.prediction for o in outputs]


@pytest.mark.model
def test_measure_calibration_on_unsaved_content_matches_the_saved_version(irony: Store) -> None:
    content = PromptContent(template=TEMPLATE, mode="plain", system="Tweets, labelled.")
    dataset = irony.get_dataset("irony")
    measured = measure_calibration(irony, content, dataset, "validation", "builtin", "contextual")
    assert measured.source == "content_free" and len(measured.vector) == 2
    assert irony.list_runs() == []  # measuring a prior is not a run


def test_bad_calibration_requests_are_refused_before_anything_is_saved(irony: Store) -> None:
    with pytest.raises(BadInputError, match="never measured on the test split"):
        calibrate_version(irony, "irony@1", "irony", "test", "batch")
    with pytest.raises(BadInputError, match="method must be one of"):
        calibrate_version(irony, "irony@1", "irony", "validation", "platt")
    per_run = calibrate_version(irony, "irony@1", "irony", "validation", "batch", per_run=True)
    with pytest.raises(BadInputError, match="applies to likelihood scoring"):
        evaluate(irony, EvalRequest(prompt=per_run.ref, dataset="irony", split="validation"))
    assert irony.list_runs() == []


def test_prompt_calibrate_bad_input_exits_2(workspace: Workspace) -> None:
    store = Store(workspace.db_path)
    store.add_dataset(
        NewDataset(
            name="irony",
            source="x",
            fingerprint="x",
            splits=[NewSplit("validation", _rows("tweeteval-irony-val.jsonl", 2), "v")],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=LABELS,
            metrics=["accuracy"],
        )
    )
    store.save_prompt_version("irony", PromptContent(template=TEMPLATE, mode="plain"))
    store.close()
    result = run_cli(
        "prompt", "calibrate", "irony@1", "--method", "platt", "--dataset", "irony",
        workspace=workspace,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: calibration method must be one of contextual, batch, got 'platt'"
    ]
    test = run_cli(
        "prompt", "calibrate", "irony@1", "--method", "batch", "--dataset", "irony",
        "--split", "test", workspace=workspace,
    )  # fmt: skip
    assert test.returncode == 2 and "Traceback" not in test.stderr

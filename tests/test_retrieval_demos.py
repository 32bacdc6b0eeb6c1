"""Retrieved demonstrations (#22): the k training rows nearest each row (BM25, `bm25s`),
stored with the version so evaluation reproduces them, read from the training pool only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.run import EvalRequest, evaluate
from tunelab.engine.optimize.space import Candidate, SearchSpace, candidate_content
from tunelab.engine.prompts.retrieval import RetrievalConfig, RetrievalSampler
from tunelab.engine.prompts.templates import RowRenderer
from tunelab.engine.prompts.text import validated_content
from tunelab.store import DatasetRow, NewDataset, NewSplit, PromptContent, Store

TEMPLATE = "Tweet: {{ text }}\nEmotion:"
TRAIN = [
    {"text": "I am furious about the late train again", "label": "anger"},
    {"text": "what a lovely sunny morning, so happy", "label": "joy"},
    {"text": "tomorrow will be better, I believe it", "label": "optimism"},
    {"text": "I miss my old dog so much, crying", "label": "sadness"},
    {"text": "the train was late and I am so angry", "label": "anger"},
    {"text": "happy birthday to my lovely sister", "label": "joy"},
]
VALIDATION = [
    {"text": "late train, furious commuters", "label": "anger"},
    {"text": "crying over my dog tonight", "label": "sadness"},
]
# Test rows share words with the validation rows: retrieval must still never return them.
TEST = [
    {"text": "late train furious furious commuters zebra", "label": "joy"},
    {"text": "crying dog tonight zebra", "label": "optimism"},
]


@pytest.fixture
def emotion(store: Store) -> Store:
    store.add_dataset(
        NewDataset(
            name="emotion",
            source="inline",
            fingerprint="test",
            splits=[
                NewSplit("train", TRAIN, "a"),
                NewSplit("validation", VALIDATION, "b"),
                NewSplit("test", TEST, "c"),
            ],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=["anger", "joy", "optimism", "sadness"],
            metrics=["accuracy"],
        )
    )
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


def test_the_nearest_training_rows_come_first_and_only_from_train(
    emotion: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = _record_reads(emotion, monkeypatch)
    dataset = emotion.get_dataset("emotion")
    sampler = RetrievalSampler(emotion, dataset, RetrievalConfig(k=2), "validation")
    assert read == ["train"]
    nearest = sampler.nearest(VALIDATION[0])
    assert [r.idx for r in nearest] == [0, 4]  # the two late-train rows
    assert next(r.idx for r in sampler.nearest(VALIDATION[1])) == 3
    # A query sharing no word with the pool gets the first pool rows, the same every time.
    assert [r.idx for r in sampler.nearest({"text": "zebra"})] == [0, 1]
    # The label of the row being answered plays no part: only its input columns.
    assert sampler.nearest({**VALIDATION[0], "label": "joy"}) == nearest


def test_a_row_of_the_pool_split_never_retrieves_itself(emotion: Store) -> None:
    dataset = emotion.get_dataset("emotion")
    sampler = RetrievalSampler(emotion, dataset, RetrievalConfig(k=1), "train")
    assert [r.idx for r in sampler.nearest(TRAIN[0], row_idx=0)] == [4]
    assert [r.idx for r in sampler.nearest(TRAIN[0], row_idx=None)] == [0]


# The store is only read here, so sharing it across examples is safe.
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(min_size=0, max_size=40), st.integers(1, 8), st.integers(0, 6))
def test_retrieval_returns_at_most_k_distinct_pool_rows(
    emotion: Store, query: str, k: int, pool_size: int
) -> None:
    dataset = emotion.get_dataset("emotion")
    config = RetrievalConfig(k=k, pool_size=pool_size, seed=1)
    sampler = RetrievalSampler(emotion, dataset, config, "validation")
    pool = {r.idx for r in sampler.pool}
    assert len(pool) == (pool_size or len(TRAIN))
    found = sampler.nearest({"text": query})
    assert len(found) == min(k, len(pool))
    assert len({r.idx for r in found}) == len(found) and {r.idx for r in found} <= pool


def test_a_retrieving_version_renders_its_nearest_rows_last_and_reproduces(
    emotion: Store,
) -> None:
    content = validated_content(
        PromptContent(template=TEMPLATE, mode="plain", settings={"retrieval": {"k": 2}})
    )
    assert content.settings["retrieval"] == RetrievalConfig(k=2).to_dict()
    version = emotion.save_prompt_version("emo", content).version
    dataset = emotion.get_dataset("emotion")
    renderer = RowRenderer(emotion, version, None, dataset, "validation")
    text = renderer.render(VALIDATION[0], 0).text
    assert text.endswith("Tweet: late train, furious commuters\nEmotion:")
    blocks = text.split("\n\n")
    assert blocks[-2] == f"Tweet: {TRAIN[0]['text']}\nEmotion: anger"  # the nearest, last
    assert blocks[-3] == f"Tweet: {TRAIN[4]['text']}\nEmotion: anger"
    again = RowRenderer(emotion, version, None, dataset, "validation").render(VALIDATION[0], 0)
    assert again.text == text


def test_bad_retrieval_settings_are_refused() -> None:
    with pytest.raises(BadInputError, match=r"retrieval\.k must be from 1 to 64"):
        RetrievalConfig(k=0)
    with pytest.raises(BadInputError, match="never reads the test split"):
        RetrievalConfig(k=2, split="test")
    with pytest.raises(BadInputError, match=r"retrieval\.method must be one of bm25"):
        RetrievalConfig(k=2, method="dense")
    with pytest.raises(BadInputError, match="unknown retrieval setting"):
        RetrievalConfig.from_settings({"retrieval": {"k": 2, "index": "faiss"}})
    with pytest.raises(BadInputError, match="both choose the examples"):
        validated_content(
            PromptContent(template=TEMPLATE, settings={"retrieval": {"k": 2}, "fewshot": {"k": 2}})
        )
    with pytest.raises(BadInputError, match="need k >= 1"):
        SearchSpace(k_min=0, k_max=0, selections=("fixed", "bm25"))
    with pytest.raises(BadInputError, match="demonstration selections"):
        SearchSpace(selections=("dense",))


def test_a_retrieval_candidate_stores_its_setting_instead_of_fixed_demos(emotion: Store) -> None:
    seed = emotion.save_prompt_version("emo", PromptContent(template=TEMPLATE)).version
    dataset = emotion.get_dataset("emotion")
    space = SearchSpace(k_min=1, k_max=3, selections=("fixed", "bm25"))
    pool = emotion.dataset_rows("emotion", "train")
    content = candidate_content(
        seed, Candidate((), None, "generate", "none", 3), pool, dataset, space
    )
    assert content.examples == []
    assert content.settings["retrieval"] == {
        "k": 3,
        "split": "train",
        "method": "bm25",
        "pool_size": 0,
        "seed": 0,
    }
    fixed = candidate_content(seed, Candidate((1, 0), None, "generate"), pool, dataset, space)
    assert [e["output"] for e in fixed.examples] == ["joy", "anger"]
    assert "retrieval" not in fixed.settings


@pytest.mark.model
def test_an_evaluation_of_a_retrieving_version_reads_train_and_the_scored_split_only(
    emotion: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = emotion.save_prompt_version(
        "emo", PromptContent(template=TEMPLATE, mode="plain", settings={"retrieval": {"k": 2}})
    ).version
    read = _record_reads(emotion, monkeypatch)
    request = EvalRequest(
        prompt=version, dataset="emotion", split="validation", scoring="likelihood",
        latency_probe=0,
    )  # fmt: skip
    result = evaluate(emotion, request)
    assert set(read) == {"train", "validation"}
    outputs: list[Any] = emotion.run_outputs(result.run_id)
    assert all(TRAIN[0]["text"] in o.rendered_prompt for o in outputs[:1])
    assert not any("zebra" in o.rendered_prompt for o in outputs)
    rerun = evaluate(emotion, request)
    assert [o.rendered_prompt for o in emotion.run_outputs(rerun.run_id)] == [
        o.rendered_prompt for o in outputs
    ]
    assert rerun.cached_rows == len(outputs)

"""SFT and DPO exports: rows match the feedback, the test split stays out, lineage is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.compare_helpers import base_model, classification_run, dataset, prompt
from tunelab.engine.data.importing import fingerprint_rows
from tunelab.engine.errors import BadInputError
from tunelab.engine.feedback.export import (
    ExportOptions,
    export_dpo_from_preferences,
    export_dpo_from_ratings,
    export_sft,
)
from tunelab.engine.prompts.templates import RowRenderer
from tunelab.store import NotFoundError, PromptVersion, Run, Store

pytest_plugins = ["tests.model_fixtures"]


def _runs(
    store: Store, mode: str = "plain", split: str = "train", **prompt_kw: Any
) -> tuple[PromptVersion, Run, Run]:
    pv = prompt(store, template="Q: {{ text }}\nA:", mode=mode, **prompt_kw)
    model = base_model(store)
    ds = dataset(store, n=4, splits=("train", "test"))
    first = classification_run(store, pv, model, ds, [1, 0, 1, 0], split=split)
    second = classification_run(store, pv, model, ds, [0, 1, 1, 0], split=split)
    return pv, first, second


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    import datasets

    return [dict(r) for r in datasets.load_dataset("json", data_files=str(path), split="train")]


def test_sft_exports_good_and_corrected_rows_through_the_runs_prompt(
    store: Store, tmp_path: Path
) -> None:
    pv, run, _ = _runs(store, system="Be brief.")
    outputs = store.run_outputs(run.id)
    store.rate_output(outputs[0].id, 5, author="dee")
    store.rate_output(outputs[1].id, 2)
    store.correct_output(outputs[1].id, "first try", author="ann")
    store.correct_output(outputs[1].id, "The answer is neg", author="bob")
    store.rate_output(outputs[2].id, 3)  # below the bar, uncorrected: left out

    result = export_sft(store, tmp_path, [run.id], ExportOptions())

    ds = store.get_dataset_by_id(run.dataset_id)
    renderer = RowRenderer(store, pv, None, ds, "train")
    rows = {r.idx: r.data for r in store.dataset_rows(ds.name, "train")}
    expected = [
        {"prompt": renderer.render(rows[0], 0).text, "completion": outputs[0].output},
        {"prompt": renderer.render(rows[1], 1).text, "completion": "The answer is neg"},
    ]
    assert _load_jsonl(result.path) == expected
    assert expected[0]["prompt"].startswith("Be brief.")
    # Registered: rows, fingerprint and lineage.
    stored = [r.data for r in store.dataset_rows(result.dataset.name, "train")]
    assert stored == expected
    assert result.dataset.split("train").fingerprint == fingerprint_rows(expected)
    lineage = store.dataset_lineage(result.dataset.id)
    assert lineage == result.lineage
    assert lineage is not None
    assert [o["run_output_id"] for o in lineage["outputs"]] == [outputs[0].id, outputs[1].id]
    assert lineage["outputs"][1]["correction_version"] == 2
    assert lineage["outputs"][1]["corrected_by"] == "bob"
    assert lineage["outputs"][0]["rated_by"] == "dee"
    assert lineage["filters"]["min_rating"] == 4
    assert lineage["excluded"] == {"held_out": 0, "unrated": 1, "rated_below": 1}

    only_corrected = export_sft(store, tmp_path, [run.id], ExportOptions(corrected_only=True))
    assert [r["completion"] for r in _load_jsonl(only_corrected.path)] == ["The answer is neg"]
    assert only_corrected.dataset.name != result.dataset.name  # a second export, not a clash


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ratings=st.lists(st.one_of(st.none(), st.integers(1, 5)), min_size=4, max_size=4),
       bar=st.integers(1, 5))  # fmt: skip
def test_sft_keeps_exactly_the_outputs_rated_at_the_bar(
    tmp_path_factory: pytest.TempPathFactory, ratings: list[int | None], bar: int
) -> None:
    with Store.memory() as store:
        _, run, _ = _runs(store)
        outputs = store.run_outputs(run.id)
        for output, rating in zip(outputs, ratings, strict=True):
            if rating is not None:
                store.rate_output(output.id, rating)
        kept = [
            o.output for o, r in zip(outputs, ratings, strict=True) if r is not None and r >= bar
        ]
        folder = tmp_path_factory.mktemp("sft")
        if not kept:
            with pytest.raises(BadInputError, match="nothing to export"):
                export_sft(store, folder, [run.id], ExportOptions(min_rating=bar))
            assert store.dataset_names() == ["ds"]
            assert not (folder / "exports").exists() or not any((folder / "exports").iterdir())
            return
        result = export_sft(store, folder, [run.id], ExportOptions(min_rating=bar))
        lines = result.path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["completion"] for line in lines] == kept


def test_rows_of_the_evaluated_split_stay_out_of_training(store: Store, tmp_path: Path) -> None:
    _, run, _ = _runs(store, split="test")
    for output in store.run_outputs(run.id):
        store.rate_output(output.id, 5)
    with pytest.raises(BadInputError, match=r"not on the training split 'train'.*--include-eval"):
        export_sft(store, tmp_path, [run.id], ExportOptions())
    assert store.dataset_names() == ["ds"]
    leaked = export_sft(store, tmp_path, [run.id], ExportOptions(include_eval_split=True))
    assert leaked.rows == 4
    assert leaked.lineage["filters"]["include_eval_split"] is True


def test_sft_of_a_chat_prompt_writes_messages(store: Store, tmp_path: Path) -> None:
    _, run, _ = _runs(store, mode="chat", system="Sort tickets.")
    output = store.run_outputs(run.id)[0]
    store.rate_output(output.id, 4)
    result = export_sft(store, tmp_path, [run.id], ExportOptions(format="hf"))
    import datasets

    loaded = datasets.load_from_disk(str(result.path))
    assert loaded.column_names == ["messages"]
    assert loaded[0]["messages"] == [
        {"role": "system", "content": "Sort tickets."},
        {"role": "user", "content": "Q: row 0\nA:"},
        {"role": "assistant", "content": output.output},
    ]


def test_dpo_from_ratings_pairs_differently_rated_outputs_of_a_row(
    store: Store, tmp_path: Path
) -> None:
    _, first, second = _runs(store)
    a, b = store.run_outputs(first.id), store.run_outputs(second.id)
    store.rate_output(a[0].id, 5)
    store.rate_output(b[0].id, 1)  # row 0: a over b
    store.rate_output(a[1].id, 2)
    store.rate_output(b[1].id, 4, author="cy")  # row 1: b over a
    store.rate_output(a[2].id, 3)
    store.rate_output(b[2].id, 3)  # row 2: a tie makes no pair
    result = export_dpo_from_ratings(store, tmp_path, [first.id, second.id], ExportOptions())
    assert _load_jsonl(result.path) == [
        {"prompt": "Q: row 0\nA:", "chosen": a[0].output, "rejected": b[0].output},
        {"prompt": "Q: row 1\nA:", "chosen": b[1].output, "rejected": a[1].output},
    ]
    assert result.lineage["excluded"]["equal_ratings"] == 1
    assert result.lineage["pairs"][1]["chosen"] == {
        "run_id": second.id,
        "run_output_id": b[1].id,
        "rating": 4,
        "rated_by": "cy",
    }
    with pytest.raises(BadInputError, match="two or more runs"):
        export_dpo_from_ratings(store, tmp_path, [first.id], ExportOptions())


def test_dpo_from_preferences_follows_the_choice_and_skips_ties(
    store: Store, tmp_path: Path
) -> None:
    _, first, second = _runs(store, mode="chat")
    a, b = store.run_outputs(first.id), store.run_outputs(second.id)
    store.add_preference(a[0].id, b[0].id, "b", author="ann")
    store.add_preference(a[1].id, b[1].id, "a")
    store.add_preference(a[2].id, b[2].id, "tie")
    result = export_dpo_from_preferences(store, tmp_path, (first.id, second.id), ExportOptions())
    rows = _load_jsonl(result.path)
    assert [r["chosen"][0]["content"] for r in rows] == [b[0].output, a[1].output]
    assert [r["rejected"][0]["content"] for r in rows] == [a[0].output, b[1].output]
    assert rows[0]["prompt"] == [{"role": "user", "content": "Q: row 0\nA:"}]
    assert [p["author"] for p in result.lineage["preferences"]][:1] == ["ann"]
    assert result.lineage["excluded"] == {"held_out": 0, "ties": 1}
    # TRL reads it as conversational preference data.
    from trl.data_utils import is_conversational

    assert is_conversational(rows[0])


def test_preferences_spanning_datasets_are_refused(store: Store, tmp_path: Path) -> None:
    _, first, second = _runs(store)
    pv = prompt(store, name="other")
    model = base_model(store)
    other = dataset(store, name="ds2", n=2, splits=("train",))
    third = classification_run(store, pv, model, other, [1, 0], split="train")
    fourth = classification_run(store, pv, model, other, [0, 1], split="train")
    store.add_preference(store.run_outputs(first.id)[0].id, store.run_outputs(second.id)[0].id, "a")
    store.add_preference(store.run_outputs(third.id)[0].id, store.run_outputs(fourth.id)[0].id, "a")
    with pytest.raises(BadInputError, match="different datasets"):
        export_dpo_from_preferences(store, tmp_path, None, ExportOptions())
    with pytest.raises(BadInputError, match="different datasets"):
        export_dpo_from_ratings(store, tmp_path, [first.id, third.id], ExportOptions())
    assert export_dpo_from_preferences(store, tmp_path, (third.id, fourth.id), ExportOptions()).rows


@pytest.mark.parametrize("bad", [0, 6, -1])
def test_min_rating_outside_1_to_5_is_bad_input(bad: int) -> None:
    with pytest.raises(BadInputError, match="--min-rating is 1 to 5"):
        ExportOptions(min_rating=bad)


def test_unknown_run_and_existing_out_are_refused(store: Store, tmp_path: Path) -> None:
    _, run, _ = _runs(store)
    store.rate_output(store.run_outputs(run.id)[0].id, 5)
    with pytest.raises(NotFoundError, match="unknown run"):
        export_sft(store, tmp_path, [99], ExportOptions())
    taken = tmp_path / "taken.jsonl"
    taken.write_text("keep me\n")
    with pytest.raises(BadInputError, match="already exists"):
        export_sft(store, tmp_path, [run.id], ExportOptions(out=taken))
    assert taken.read_text() == "keep me\n"
    export_sft(store, tmp_path, [run.id], ExportOptions(name="mine"))
    with pytest.raises(BadInputError, match="'mine' already exists"):
        export_sft(store, tmp_path, [run.id], ExportOptions(name="mine"))


@pytest.mark.model
def test_a_real_runs_export_is_the_text_the_model_saw(
    store: Store, tmp_path: Path, builtin_model: Any
) -> None:
    """The exported chat messages, through the built-in model's chat template, are exactly
    the prompt the run generated from (few-shot examples drawn the same way)."""
    from tunelab.engine.evaluation.request import EvalRequest
    from tunelab.engine.evaluation.run import evaluate
    from tunelab.store import NewDataset, NewSplit

    rows = [
        {"text": f"ticket {i}: my card was charged twice", "label": "billing"} for i in range(3)
    ]
    store.add_dataset(
        NewDataset("tickets", "t", "f", [NewSplit("train", rows, "f")], input_columns=["text"],
                   reference_column="label", labels=["billing", "bug"], task="classification")
    )  # fmt: skip
    prompt(store, name="route", template="Route this ticket: {{ text }}", mode="chat",
           system="Answer billing or bug.",
           settings={"max_new_tokens": 3, "fewshot": {"k": 1, "split": "train"}})  # fmt: skip
    result = evaluate(
        store,
        EvalRequest(prompt="route", dataset="tickets", limit=2, batch_size=2, latency_probe=0),
    )
    outputs = store.run_outputs(result.run.id)
    store.rate_output(outputs[0].id, 5)
    store.correct_output(outputs[1].id, "billing")
    exported = export_sft(store, tmp_path, [result.run.id], ExportOptions())
    lines = [json.loads(x) for x in exported.path.read_text(encoding="utf-8").splitlines()]
    assert [m["messages"][-1]["content"] for m in lines] == [outputs[0].output, "billing"]
    tokenizer = builtin_model.tokenizer
    for line, output in zip(lines, outputs, strict=True):
        assert len(line["messages"]) == 5  # system, one drawn example (2), the row, the answer
        seen = tokenizer.apply_chat_template(
            line["messages"][:-1], tokenize=False, add_generation_prompt=True
        )
        assert seen == output.rendered_prompt

"""Vote runs written straight into a store, for tests that need no model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.compare_helpers import base_model, prompt
from tunelab.engine.evaluation.answers import answers_match
from tunelab.store import NewDataset, NewRunOutput, NewRunSample, NewSplit, Run, Store


def _math_dataset(store: Store, references: Sequence[str]) -> None:
    rows = [{"question": f"q{i}", "answer": f"work\n#### {r}"} for i, r in enumerate(references)]
    store.add_dataset(
        NewDataset(
            name="math",
            source="math.jsonl",
            fingerprint="f",
            splits=[NewSplit("test", rows, "f")],
            task="generation",
            input_columns=["question"],
            reference_column="answer",
            metrics=["final_answer"],
            answer_rule="gsm8k",
        )
    )


def stored_vote_run(
    store: Store, rows: Sequence[Sequence[str | None]], references: Sequence[str]
) -> Run:
    """A run whose row i has samples `rows[i]` (None: extraction failed); one sample: no vote."""
    if not store.list_datasets():
        _math_dataset(store, references)
        prompt(store, "cot", "{{ question }}", reasoning="cot")
    samples = len(rows[0])
    run = store.create_run(
        store.get_prompt_version("cot").id, base_model(store).id,
        store.get_dataset("math").id, "test", len(rows), {"temperature": 0.7},
        metric_names=["final_answer"], samples=samples,
    )  # fmt: skip
    outputs: list[NewRunOutput] = []
    others: list[NewRunSample] = []
    for idx, (answers, ref) in enumerate(zip(rows, references, strict=True)):
        for k, answer in enumerate(answers):
            right = float(answer is not None and answers_match(answer, ref))
            text = f"so the answer is {answer}" if answer is not None else "I am not sure"
            fields: dict[str, Any] = {
                "output": text, "prediction": answer or "", "answer_found": answer is not None,
                "scores": {"final_answer": right}, "tokens_in": 10, "tokens_out": 5,
                "latency_ms": 100.0,
            }  # fmt: skip
            if k == 0:
                outputs.append(
                    NewRunOutput(row_idx=idx, rendered_prompt=f"q{idx}", reference=f"#### {ref}",
                                 reference_answer=ref, **fields)
                )  # fmt: skip
            else:
                others.append(NewRunSample(row_idx=idx, sample_idx=k, **fields))
    assert store.add_sampled_outputs(run.id, outputs, others) == len(rows)
    return store.finish_run(run.id, "succeeded", {})

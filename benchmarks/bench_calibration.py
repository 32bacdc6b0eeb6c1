"""Calibration of the built-in model's zero-shot likelihood prompt on TweetEval emotion (#22):
uncalibrated vs contextual (content-free inputs) vs batch calibration (the mean label
distribution over the validation split's inputs), each a calibrated child version made by
`calibrate_version` and evaluated through `evaluate`: accuracy, macro-F1, and how many rows
land on the majority predicted class.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_calibration.py [--rows 374]
        [--workspace DIR]

Label scores go through the response cache, so the three evaluations score each row once.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tunelab.engine.evaluation.calibrate import calibrate_version
from tunelab.engine.evaluation.run import EvalRequest, evaluate
from tunelab.store import NewDataset, NewSplit, PromptContent, PromptVersion, Store, StoreError

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
LABELS = ["anger", "joy", "optimism", "sadness"]
TEMPLATE = (
    "Which emotion does this tweet express: anger, joy, optimism or sadness?\n\n"
    "Tweet: {{ text }}\nEmotion:"
)


def _setup(store: Store, rows: int) -> None:
    try:
        store.get_dataset("emotion")
        return
    except StoreError:
        pass
    with (DATA / "tweeteval-emotion-val.jsonl").open(encoding="utf-8") as handle:
        val = [json.loads(line) for line in handle][:rows]
    store.add_dataset(
        NewDataset(
            name="emotion",
            source=str(DATA / "tweeteval-emotion-val.jsonl"),
            fingerprint="bench",
            splits=[NewSplit("validation", val, "v")],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=LABELS,
            metrics=["macro_f1", "accuracy"],
        )
    )
    store.save_prompt_version("emotion", PromptContent(template=TEMPLATE, mode="plain"))


def _measure(store: Store, version: PromptVersion, name: str) -> dict[str, object]:
    started = time.perf_counter()
    request = EvalRequest(
        prompt=version,
        dataset="emotion",
        split="validation",
        scoring="likelihood",
        batch_size=16,
        latency_probe=0,
    )
    result = evaluate(store, request)
    predictions = Counter(o.prediction for o in store.run_outputs(result.run_id))
    label, count = predictions.most_common(1)[0]
    return {
        "calibration": name,
        "version": version.ref,
        "accuracy": round(float(result.metrics["accuracy"]), 4),
        "macro_f1": round(float(result.metrics["macro_f1"]), 4),
        "majority_class": label,
        "rows_on_majority": count,
        "rows": result.rows,
        "wall_s": round(time.perf_counter() - started, 1),
        "prior": version.settings.get("calibration", {}).get("vector"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=374)
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args()
    if args.workspace is not None:
        args.workspace.mkdir(parents=True, exist_ok=True)
    store = Store(args.workspace / "bench.db") if args.workspace else Store.memory()
    _setup(store, args.rows)
    seed = store.get_prompt_version("emotion@1")
    results = [_measure(store, seed, "none")]
    for method in ("contextual", "batch"):
        version = calibrate_version(store, seed.ref, "emotion", "validation", method)
        results.append(_measure(store, version, method))
    per_run = calibrate_version(store, seed.ref, "emotion", "validation", "batch", per_run=True)
    results.append(_measure(store, per_run, "batch (per run)"))
    for r in results:
        print(json.dumps(r))
    base = results[0]
    for r in results[1:]:
        print(
            f"{r['calibration']}: macro-F1 {base['macro_f1']} -> {r['macro_f1']}, accuracy "
            f"{base['accuracy']} -> {r['accuracy']}, rows on the majority class "
            f"{base['rows_on_majority']} -> {r['rows_on_majority']} of {r['rows']}"
        )


if __name__ == "__main__":
    main()

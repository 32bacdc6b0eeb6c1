"""A prompt search on TweetEval emotion with the built-in model (#22): the best candidate's
validation macro-F1 against the seed zero-shot prompt's, the paired test from `compare` on
the validation rows and on held-out rows the search never saw (the rest of the validation
file), wall time, and the rows successive halving saved.

    .venv/bin/python benchmarks/bench_optimize.py [--budget 32] [--strategy random]
        [--k-range 0..4] [--first-rung 16] [--val-rows 246] [--heldout-rows 128]
        [--workspace DIR] [--calibration none,contextual,batch] [--demo-selection fixed,bm25]

Re-running with the same --workspace reuses every finished evaluation (resume).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tunelab.engine.compare.runs import compare_runs
from tunelab.engine.evaluation.plan import resolve_model_arg
from tunelab.engine.evaluation.run import EvalRequest, evaluate
from tunelab.engine.models.loading import load_model
from tunelab.engine.optimize.search import OptimizeProgress, OptimizeRequest, optimize
from tunelab.engine.optimize.space import (
    CALIBRATIONS,
    SELECTIONS,
    SearchSpace,
    parse_choices,
    parse_k_range,
)
from tunelab.store import NewDataset, NewSplit, PromptContent, Store, StoreError

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
LABELS = ["anger", "joy", "optimism", "sadness"]
TEMPLATE = (
    "Which emotion does this tweet express: anger, joy, optimism or sadness?\n\n"
    "Tweet: {{ text }}\nEmotion:"
)
INSTRUCTIONS = (
    "Classify the emotion of the tweet as anger, joy, optimism or sadness.",
    "You label tweets by emotion. Answer with one word: anger, joy, optimism or sadness.",
    "Read the tweet and name the feeling behind it (anger, joy, optimism or sadness).",
)


def _read(name: str, limit: int | None) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return rows[:limit] if limit else rows


def _setup(store: Store, train_rows: int, val_rows: int, heldout_rows: int) -> None:
    try:
        store.get_dataset("emotion")
        return
    except StoreError:
        pass
    val = _read("tweeteval-emotion-val.jsonl", None)
    store.add_dataset(
        NewDataset(
            name="emotion",
            source=str(DATA / "tweeteval-emotion-{train,val}.jsonl"),
            fingerprint="bench",
            splits=[
                NewSplit("train", _read("tweeteval-emotion-train.jsonl", train_rows), "t"),
                NewSplit("validation", val[:val_rows], "v"),
                # Validation rows the search never sees: what the selection bias costs.
                NewSplit("test", val[val_rows : val_rows + heldout_rows], "h"),
            ],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=LABELS,
            metrics=["macro_f1", "accuracy"],
        )
    )
    store.save_prompt_version("emotion", PromptContent(template=TEMPLATE, mode="plain"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--strategy", default="random")
    parser.add_argument("--k-range", default="0..4")
    parser.add_argument("--first-rung", type=int, default=16)
    parser.add_argument("--pool-size", type=int, default=32)
    parser.add_argument("--train-rows", type=int, default=512)
    parser.add_argument("--val-rows", type=int, default=246)
    parser.add_argument("--heldout-rows", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--calibration", default="none", help="e.g. none,contextual,batch")
    parser.add_argument("--demo-selection", default="fixed", help="e.g. fixed,bm25")
    args = parser.parse_args()

    if args.workspace is not None:
        args.workspace.mkdir(parents=True, exist_ok=True)
    store = Store(args.workspace / "bench.db") if args.workspace else Store.memory()
    _setup(store, args.train_rows, args.val_rows, args.heldout_rows)
    load_model(store, resolve_model_arg(store, "builtin"))  # loading is not what we time
    k_min, k_max = parse_k_range(args.k_range)
    request = OptimizeRequest(
        prompt="emotion@1",
        dataset="emotion",
        budget=args.budget,
        strategy=args.strategy,
        space=SearchSpace(
            k_min=k_min,
            k_max=k_max,
            pool_size=args.pool_size,
            instructions=INSTRUCTIONS,
            scorings=("likelihood",),
            calibrations=parse_choices(args.calibration, CALIBRATIONS, "--calibration"),
            selections=parse_choices(args.demo_selection, SELECTIONS, "--demo-selection"),
        ),
        seed=args.seed,
        first_rung=args.first_rung,
        batch_size=args.batch_size,
    )

    def progress(p: OptimizeProgress) -> None:
        e = p.evaluation
        print(f"[{p.evaluations}] {e.version_ref} on {e.rows}: {e.score:.4f}", flush=True)

    started = time.perf_counter()
    result = optimize(store, request, on_progress=progress)
    wall = time.perf_counter() - started
    full = result.rung_rows[-1]

    def full_run(ref: str, split: str) -> int:
        return evaluate(
            store,
            EvalRequest(
                prompt=ref,
                dataset="emotion",
                split=split,
                limit=full if split == "validation" else None,
                scoring="likelihood",
                latency_probe=0,
            ),
        ).run_id

    def macro_f1_delta(split: str) -> dict[str, object]:
        runs = [full_run("emotion@1", split), full_run("emotion:optimized", split)]
        comparison = compare_runs(store, runs)
        macro = next(m for m in comparison.metrics if m.name == "macro_f1")
        d = macro.deltas[0]
        return {
            "seed": store.get_run(runs[0]).metrics["macro_f1"],
            "best": store.get_run(runs[1]).metrics["macro_f1"],
            "delta": d.delta,
            "ci": d.ci,
            "p_value": d.p_value,
            "effort": comparison.runs[1].prompt_effort,
        }

    summary = {
        "budget": args.budget,
        "strategy": args.strategy,
        "calibration": args.calibration,
        "demo_selection": args.demo_selection,
        "best_change": next(
            (c.description for c in result.candidates if c.version_ref == result.best_ref), ""
        ),
        "rungs": result.rung_rows,
        "seed_macro_f1": result.seed_score,
        "best": result.best_ref,
        "best_macro_f1": result.best_score,
        "validation": macro_f1_delta("validation"),
        "heldout": macro_f1_delta("test"),
        "wall_s": round(wall, 1),
        "evaluations": result.evaluations,
        "rows_scored": result.rows_scored,
        "rows_without_halving": result.rows_without_halving,
        "rows_generated": result.generated_rows,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

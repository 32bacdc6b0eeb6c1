"""The LLM judge on real outputs: the README's "LLM judge" figures, through the CLI.

Two prompts answer the first N GSM8K test questions with the built-in model; a 1-5
correctness rubric (shown the reference solution) judges each run's outputs, then run 1
against run 2 in both positions. Every command runs in a fresh `tunelab` process; CPU is
the child processes' user + system time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_judge.py --rows 10 --workspace WS

Prints each judge run's scored / unparseable counts and score distribution, the CPU ratio of
a fully cached rerun to the first run (the cache at work: no generation, only start-up and
rendering), and the pairwise wins / losses / ties with the share of passes that picked the
response shown first.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gsm8k-test.jsonl"
RUBRIC = """You grade answers to math word problems.

Problem: {{ input }}

Reference solution: {{ reference }}

Answer to grade: {{ output }}

Give 5 if the answer reaches the reference's final number with sound steps, 3 if the steps \
are partly right, 1 if the answer is wrong or missing.
"""
PROMPTS = {
    "direct": "{{ question }}",
    "steps": "Solve the problem step by step, then give the final number.\n\n{{ question }}",
}


def tunelab(workspace: Path, *args: str) -> tuple[str, float]:
    """Run one tunelab command; its stdout and the CPU seconds it took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-m", "tunelab", *args],
        cwd=workspace,
        capture_output=True,
        text=True,
        env={**os.environ, "TUNELAB_WORKSPACE": str(workspace)},
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"tunelab {' '.join(args)} failed: {result.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result.stdout, cpu


def judged(workspace: Path, run_id: int) -> tuple[dict[str, Any], float]:
    out, cpu = tunelab(workspace, "judge", str(run_id), "--rubric", "math@1", "--json")
    return json.loads(out), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--workspace", type=Path, default=None, help="default: a temp folder")
    args = parser.parse_args()
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="bench-judge-"))
    workspace.mkdir(parents=True, exist_ok=True)
    tunelab(workspace, "init", str(workspace))
    tunelab(workspace, "dataset", "add", str(DATA), "--name", "gsm8k", "--split", "test")
    for name, template in PROMPTS.items():
        (workspace / f"{name}.j2").write_text(template)
        tunelab(workspace, "prompt", "new", name, "-t", str(workspace / f"{name}.j2"),
                "--max-tokens", str(args.max_tokens))  # fmt: skip
    (workspace / "rubric.j2").write_text(RUBRIC)
    tunelab(workspace, "judge", "rubric", "math", "-t", str(workspace / "rubric.j2"))
    run_ids = []
    for name in PROMPTS:
        out, _ = tunelab(workspace, "eval", "--prompt", f"{name}@1", "--dataset", "gsm8k",
                         "--limit", str(args.rows), "--latency-probe", "0", "--json")  # fmt: skip
        result = json.loads(out)
        run_ids.append(result["run_id"])
        print(f"run {result['run_id']} ({name}): final-answer accuracy "
              f"{result['metrics'].get('final_answer')}")  # fmt: skip
    for run_id in run_ids:
        report, cpu = judged(workspace, run_id)
        s = report["summary"]
        print(f"judge run {report['judge_run']['id']} on run {run_id}: {s['scored']} scored, "
              f"{s['unparseable']} unparseable, distribution {s['distribution']}, "
              f"agreement {report['agreement']['status']}, {cpu:.1f} s CPU")  # fmt: skip
        if run_id == run_ids[0]:
            again, cached_cpu = judged(workspace, run_id)
            print(f"  rerun: {again['summary']['cached']}/{s['rows']} rows from the cache, "
                  f"CPU ratio rerun/first {cached_cpu / cpu:.2f}")  # fmt: skip
    out, cpu = tunelab(workspace, "judge", "pair", str(run_ids[0]), str(run_ids[1]),
                       "--rubric", "math@1", "--json")  # fmt: skip
    s = json.loads(out)["summary"]
    first = s["first_position_picks"]
    print(f"pair run {run_ids[0]} vs {run_ids[1]}: A {s['wins']}, B {s['losses']}, ties "
          f"{s['ties']}, unparsed {s['unparsed']}; first-shown picks "
          f"{'—' if first is None else f'{first:.0%}'}; {cpu:.1f} s CPU")  # fmt: skip
    print(f"workspace: {workspace}")


if __name__ == "__main__":
    main()

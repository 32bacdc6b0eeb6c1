"""tunelab eval against lm-evaluation-harness, whole processes, same prompts, same rows.

Every figure is the wall time of a fresh process (start-up, imports, model load, the run,
store writes), cache off, greedy, stop at newline, on TweetEval irony validation rows:

- zero-shot generation: tunelab vs `lm_eval --model hf` (target >= 1.5x);
- 8-shot with fixed examples (the first 8 rows, ~400 shared tokens): tunelab, which prefills
  the shared prefix once, vs the harness (target >= 3x);
- label-likelihood scoring of the 8-shot rows vs tunelab's own generation (target >= 3x);
- process overhead: `tunelab eval --limit 1`, as a share of the zero-shot run (<= 15%), and
  the part of it any evaluator on these libraries pays (a process that imports torch and
  transformers and loads the model and tokenizer, nothing else) apart from tunelab's own;
- under load: zero-shot runs alternating quiet, beside a CPU hog (one `while True` process
  this benchmark starts and stops), quiet again; the medians' ratio (>= 40%), each run's
  1-minute load average and the thread count tunelab chose (its --verbose line);
- prefill and decode tokens/s of 32 zero-shot rows in this process, each next to the floor a
  torch matmul of the model's layer shapes sets, measured in the same run.

Ratios are taken within one invocation, so a busy machine slows both sides alike; --repeat
alternates the two sides of a ratio that many times and reports medians. `--only likelihood`
runs just the 8-shot generation against likelihood (and the token counts each costs per row);
`--only load` just the quiet/loaded alternation.

    .venv/bin/python benchmarks/bench_eval_harness.py [--rows 256] [--no-harness]
        [--only all|likelihood|load] [--repeat N]

Without lm-eval installed (it is in the `dev` extra) the harness figures are skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "tweeteval-irony-val.jsonl"
SHOTS = 8
HEAD = "Label each tweet as irony or non_irony.\n\n"
TEXT = "Tweet: {{ text }}\nLabel:"
MAX_NEW = 16


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("OMP_NUM_THREADS", None)  # let each side choose its threads, as users run them
    env.update(extra)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stderr) of a fresh process."""
    began, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    wall, cpu = time.perf_counter() - began, _children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return wall, cpu, done.stderr


def _timed(cmd: list[str], cwd: Path) -> float:
    return _run(cmd, cwd)[0]


LIBRARY_FLOOR = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
AutoTokenizer.from_pretrained(sys.argv[1])
AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
"""


def _tunelab(*args: str) -> list[str]:
    return [str(ROOT / ".venv" / "bin" / "tunelab"), *args]


def _setup(work: Path, rows: list[dict[str, str]]) -> str:
    """A workspace with the rows and the zero-shot, 8-shot prompts; returns the shot block."""
    shots = "".join(f"Tweet: {r['text']}\nLabel: {r['label']}\n\n" for r in rows[:SHOTS])
    (work / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[SHOTS:]))
    (work / "zs.txt").write_text(HEAD + TEXT)
    (work / "fs.txt").write_text(HEAD + shots.replace("{", "{{ '{' }}") + TEXT)
    ws = ["-w", str(work)]
    _timed(_tunelab("init", str(work)), work)
    labels = ["--labels", "irony,non_irony", "--task", "classification"]
    add = ["dataset", "add", str(work / "rows.jsonl"), "--name", "irony", "--input", "text"]
    _timed(_tunelab(*ws, *add, "--reference", "label", *labels), work)
    settings = ["--mode", "plain", "--stop", "\n", "--max-tokens", str(MAX_NEW), "-m", "bench"]
    for name in ("zs", "fs"):
        _timed(
            _tunelab(*ws, "prompt", "new", name, "-t", str(work / f"{name}.txt"), *settings), work
        )
    return shots


def _tunelab_eval(
    work: Path, prompt: str, rows: int, scoring: str = "generate", verbose: bool = False
) -> list[str]:
    return _tunelab(
        *(["--verbose"] if verbose else []), "-w", str(work), "eval",
        "-p", prompt, "-d", "irony", "--limit", str(rows),
        "--scoring", scoring, "--no-cache", "--no-latency-probe", "--batch-size", "32",
    )  # fmt: skip


def _harness_task(work: Path, name: str, shots: int) -> None:
    """An lm-eval task reading the same rows from the local file, the same prompt text."""
    train, test = json.dumps(str(work / "shots.jsonl")), json.dumps(str(work / "rows.jsonl"))
    # doc_to_text + " " + label + "\n\n" per shot: the same text as tunelab's 8-shot template.
    few = (
        f'num_fewshot: {shots}\nfewshot_split: train\nfewshot_delimiter: "\\n\\n"\n'
        "fewshot_config:\n  sampler: first_n\n"
        if shots
        else ""
    )
    (work / "tasks" / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    train: {train}\n    test: {test}\n"
        "test_split: test\noutput_type: generate_until\n"
        f"description: {json.dumps(HEAD)}\n"
        'doc_to_text: "Tweet: {{text}}\\nLabel:"\ndoc_to_target: "{{label}}"\n'
        "target_delimiter: ' '\n"
        f"{few}"
        f"generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: {MAX_NEW}\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n"
    )


def _harness(work: Path, task: str, rows: int, model_dir: str) -> list[str]:
    return [
        str(ROOT / ".venv" / "bin" / "lm_eval"), "--model", "hf",
        "--model_args", f"pretrained={model_dir},dtype=float32", "--device", "cpu",
        "--tasks", task, "--include_path", str(work / "tasks"), "--batch_size", "32",
        "--limit", str(rows),
    ]  # fmt: skip


def _matmul_rate(torch: Any, tokens: int, hidden: int, inner: int) -> float:
    """FLOP/s of the model's MLP matmul shapes at `tokens` rows, best of a few repeats."""
    x, up, down = (
        torch.randn(tokens, hidden),
        torch.randn(hidden, inner),
        torch.randn(inner, hidden),
    )
    best = float("inf")
    with torch.inference_mode():
        for _ in range(5):
            began = time.perf_counter()
            (x @ up) @ down
            best = min(best, time.perf_counter() - began)
    return 4 * tokens * hidden * inner / best


def _phases(rows: list[dict[str, str]]) -> None:
    """Prefill and decode tokens/s of one 32-row zero-shot batch against the matmul floor."""
    import torch  # heavy import

    from tunelab.engine.generation import threads
    from tunelab.engine.models.loading import load_builtin
    from tunelab.engine.prompts.templates import prompt_token_ids

    threads.apply_once()
    loaded = load_builtin()
    model, config = loaded.model, loaded.model.config
    encoded = [
        prompt_token_ids(loaded.tokenizer, HEAD + f"Tweet: {r['text']}\nLabel:") for r in rows[:32]
    ]
    width = max(len(e) for e in encoded)
    pad = loaded.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # Weights the matmuls touch per token: every layer's projections plus the head (last token).
    per_token = 2 * sum(p.numel() for n, p in model.named_parameters() if "layers." in n)
    with torch.inference_mode():
        began = time.perf_counter()
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        prefill_s = time.perf_counter() - began
        cache = getattr(out, "cache", None) or out.past_key_values
        step = out.logits[:, -1].argmax(-1)[:, None]
        following = positions[:, -1:] + 1
        steps = MAX_NEW
        began = time.perf_counter()
        for _ in range(steps):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            out = model(
                input_ids=step,
                attention_mask=mask,
                position_ids=following,
                cache=cache,
                use_cache=True,
            )
            cache = getattr(out, "cache", None) or out.past_key_values
            step, following = out.logits[:, -1].argmax(-1)[:, None], following + 1
        decode_s = time.perf_counter() - began
    prefill_tokens = int(mask[:, :width].sum())
    hidden, inner = config.hidden_size, config.intermediate_size
    for name, tokens, seconds, rate_rows in (
        ("prefill", prefill_tokens, prefill_s, ids.numel()),
        ("decode", len(encoded) * steps, decode_s, len(encoded)),
    ):
        floor = _matmul_rate(torch, rate_rows, hidden, inner) / per_token
        measured = tokens / seconds
        print(
            f"{name + ':':26}{measured:7.0f} tokens/s  (matmul floor {floor:7.0f} tokens/s; "
            f"{measured / floor:5.1%} of it)"
        )


def _alternate(
    runs: dict[str, list[str]], work: Path, repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall, CPU) seconds of each command, run in turn `repeat` times (ABAB..., not AABB)."""
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, cmd in runs.items():
            wall, cpu, _ = _run(cmd, work)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return walls, cpus


def _seconds(values: list[float]) -> str:
    listed = "" if len(values) == 1 else f" (median of {', '.join(f'{v:.1f}' for v in values)})"
    return f"{statistics.median(values):7.1f}s{listed}"


def _likelihood_vs_generation(work: Path, n: int, repeat: int) -> float:
    """Prints 8-shot generation against likelihood; returns the generation median (s)."""
    times, cpus = _alternate(
        {
            "generate": _tunelab_eval(work, "fs", n),
            "likelihood": _tunelab_eval(work, "fs", n, "likelihood"),
        },
        work,
        repeat,
    )
    fs, fs_ll = (statistics.median(times[k]) for k in ("generate", "likelihood"))
    cpu, cpu_ll = (statistics.median(cpus[k]) for k in ("generate", "likelihood"))
    print(f"tunelab 8-shot:           {_seconds(times['generate'])}  ({n / fs:5.1f} rows/s)")
    print(
        f"tunelab 8-shot likelihood:{_seconds(times['likelihood'])}  "
        f"({fs / fs_ll:5.2f}x its generation; >= 3)"
    )
    print(
        f"  CPU time (what the load cannot stretch): generation {cpu:.1f}s, likelihood "
        f"{cpu_ll:.1f}s ({cpu / cpu_ll:5.2f}x)"
    )
    _token_costs(work)
    return fs


def _token_costs(work: Path) -> None:
    """Tokens each way costs per row of the last 8-shot generation run: both prefill the rows'
    own suffix after the shared prefix; generation then decodes, likelihood feeds labels."""
    from tunelab.engine.generation.likelihood import _label_ids, _LabelTree
    from tunelab.engine.generation.prefix_cache import common_prefix
    from tunelab.engine.models.loading import load_builtin
    from tunelab.engine.prompts.templates import prompt_token_ids
    from tunelab.store.workspace import find_workspace

    store = find_workspace(work).open_store()
    runs = [r for r in store.list_runs() if r.scoring == "generate"]
    outputs = store.run_outputs(max(r.id for r in runs))
    tokenizer = load_builtin().tokenizer
    encoded = [prompt_token_ids(tokenizer, o.rendered_prompt) for o in outputs]
    shared = common_prefix(encoded)
    suffix = sum(len(e) for e in encoded) / len(encoded) - shared
    out = sum(o.tokens_out for o in outputs) / len(outputs)
    ids = _label_ids(tokenizer, ["irony", "non_irony"], spaced=True)
    fed = len(_LabelTree.of(ids).tokens)
    print(
        f"  tokens per row: shared prefix {shared} (prefilled once), own suffix {suffix:.1f} "
        f"(prefilled by both); generation then {out:.2f} tokens out = {max(out - 1, 0):.2f} "
        f"decode steps past the prefill; likelihood {fed} label tokens fed "
        f"(labels {', '.join(str(len(i)) for i in ids)} tokens, first tokens from the prefill)"
    )


def _under_load(work: Path, n: int, repeat: int) -> None:
    """Zero-shot quiet, beside a CPU hog, quiet, ... (`repeat` loaded runs); medians' ratio."""
    quiet: list[float] = []
    loaded: list[float] = []
    cmd = _tunelab_eval(work, "zs", n, verbose=True)
    for turn in range(2 * repeat + 1):
        hog = None
        if turn % 2:
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)  # running before tunelab measures the cores' load
        load = os.getloadavg()[0]
        try:
            wall, _, err = _run(cmd, work)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        chosen = next(
            (line.split("tunelab: ", 1)[1] for line in err.splitlines() if "torch threads" in line),
            "torch threads: not reported",
        )
        (loaded if hog is not None else quiet).append(wall)
        side = "loaded" if hog is not None else "quiet "
        print(f"  {side} {wall:6.1f}s  (1-minute load {load:4.2f} at start; {chosen})")
    ratio = statistics.median(quiet) / statistics.median(loaded)
    print(
        f"zero-shot beside a hog:   {_seconds(loaded)}  ({ratio:5.1%} of quiet "
        f"throughput, quiet {_seconds(quiet).strip()}; >= 40%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--no-harness", action="store_true")
    parser.add_argument("--only", choices=("all", "likelihood", "load"), default="all")
    parser.add_argument(
        "--repeat", type=int, default=None, help="alternations per ratio (default 1; 3 with --only)"
    )
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.only == "all" else 3)
    with DATA.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(SHOTS + args.rows), handle, strict=False)]
    harness = (
        args.only == "all"
        and not args.no_harness
        and importlib.util.find_spec("lm_eval") is not None
    )
    from tunelab.engine.models.cache import builtin_model_dir

    model_dir = str(builtin_model_dir())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _setup(work, rows)
        n = args.rows
        print(
            f"rows: {n}, max_new_tokens: {MAX_NEW}, cores: {len(os.sched_getaffinity(0))}, "
            f"1-minute load: {os.getloadavg()[0]:.2f}"
        )
        if args.only == "likelihood":
            _likelihood_vs_generation(work, n, repeat)
            return
        if args.only == "load":
            _under_load(work, n, repeat)
            return
        if harness:
            (work / "tasks").mkdir()
            # The harness's few-shot examples come from "train": the same 8 fixed rows.
            shots = "".join(json.dumps(r) + "\n" for r in rows[:SHOTS])
            (work / "shots.jsonl").write_text(shots)
            _harness_task(work, "bench_zs", 0)
            _harness_task(work, "bench_fs", SHOTS)
        startup = _timed(_tunelab("--help"), work)
        python = str(ROOT / ".venv" / "bin" / "python")
        # Alternated three times, medians: single second-scale runs swing with the machine.
        small, _ = _alternate(
            {
                "floor": [python, "-c", LIBRARY_FLOOR, model_dir],
                "overhead": _tunelab_eval(work, "zs", 1),
            },
            work,
            3,
        )
        floor, overhead = (statistics.median(small[k]) for k in ("floor", "overhead"))
        zs = _timed(_tunelab_eval(work, "zs", n), work)
        print(f"tunelab zero-shot:        {zs:7.1f}s  ({n / zs:5.1f} rows/s)")
        fs = _likelihood_vs_generation(work, n, repeat)
        print(
            f"process overhead (1 row): {_seconds(small['overhead'])}  "
            f"({overhead / zs:5.1%} of zero-shot; <= 15%)"
        )
        print(f"  of which start-up:      {startup:7.1f}s  (tunelab --help: interpreter, CLI)")
        print(
            f"  libraries' floor:       {_seconds(small['floor'])}  (import torch and "
            f"transformers, load the model and tokenizer: any evaluator on them pays it)"
        )
        own = overhead - floor
        print(f"  tunelab's own overhead: {own:7.1f}s  ({own / zs:5.1%} of zero-shot)")
        _under_load(work, n, repeat)
        if harness:
            h_zs = _timed(_harness(work, "bench_zs", n, model_dir), work)
            h_fs = _timed(_harness(work, "bench_fs", n, model_dir), work)
            print(f"harness zero-shot:        {h_zs:7.1f}s  (tunelab {h_zs / zs:5.2f}x; >= 1.5)")
            print(f"harness 8-shot:           {h_fs:7.1f}s  (tunelab {h_fs / fs:5.2f}x; >= 3)")
        else:
            print("harness: skipped (lm-eval not installed, or --no-harness)")
    _phases(rows[SHOTS:])


if __name__ == "__main__":
    main()

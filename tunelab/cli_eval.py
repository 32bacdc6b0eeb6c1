"""`tunelab eval`, `tunelab run list|show|rate` and `tunelab generate`.

Thin front ends over `engine.evaluation` and the model engine; the engine modules (and so
torch) are imported inside the commands, which keeps `tunelab --help` fast.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import (
    console,
    emit_json,
    err_console,
    fail,
    slurm_options,
    state,
    stop_on_sigint,
)
from tunelab.cli_eval_remote import cluster_option, submit_remote_eval
from tunelab.cli_judge import check_rubric_arg, judge_finished_run, print_report, report_json
from tunelab.engine.evaluation.latency_probe import DEFAULT_PROBE_REQUESTS
from tunelab.engine.evaluation.request import DEFAULT_BATCH_SIZE
from tunelab.engine.evaluation.run_detail import SPEED_NOTES
from tunelab.store import Run

if TYPE_CHECKING:
    from tunelab.engine.evaluation.case_report import CaseVerdict
    from tunelab.engine.evaluation.run import EvalProgress, EvalRequest, EvalResult

run_app = typer.Typer(help="List, inspect and rate evaluation runs.", no_args_is_help=True)


def parse_assignments(items: list[str], option: str) -> dict[str, Any]:
    """`key=value` pairs; values are read as JSON when they parse (numbers, lists), else text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"{option} {item!r}: write KEY=VALUE, e.g. {option} temperature=0.7")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _run_with_progress(
    request: EvalRequest | None,
    resume_id: int | None,
    batch_size: int,
    show_progress: bool,
    latency_probe: int,
) -> EvalResult:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from tunelab.engine.evaluation.run import evaluate, resume_run

    store = state.store()
    flag, previous = stop_on_sigint()
    progress = Progress(
        TextColumn("[bold]eval[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[cached]} cached"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not show_progress,
        transient=True,
    )
    task = progress.add_task("eval", total=None, cached=0)

    def on_progress(p: EvalProgress) -> None:
        progress.update(task, total=p.total, completed=p.done, cached=p.cached)

    try:
        with progress:
            if resume_id is not None:
                return resume_run(
                    store, resume_id, on_progress, lambda: flag[0], batch_size, latency_probe
                )
            assert request is not None
            return evaluate(store, request, on_progress, lambda: flag[0])
    finally:
        signal.signal(signal.SIGINT, previous)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}


_SPEED_NOTES = SPEED_NOTES
"""What each speed figure measures (the engine's table, which the TUI's run view shows too)."""


def headline_metrics(run: Run) -> str:
    """The run's declared metrics, or '—' when it scored no rows (never 'accuracy 0.000')."""
    if run.rows_done == 0:
        return "—"
    return (
        ", ".join(
            f"{name}={_fmt(run.metrics[name])}"
            for name in run.metric_names
            if isinstance(run.metrics.get(name), int | float)
        )
        or "—"
    )


def _print_summary(run: Run, metrics: dict[str, Any], cached_rows: int, new_rows: int) -> None:
    status_style = {"succeeded": "green", "interrupted": "yellow", "failed": "red"}
    console.print(
        Text.assemble(
            (f"run {run.id}", "bold"),
            f"  {run.prompt_ref} · {run.model_name} · {run.dataset_name}/{run.split}  ",
            (run.status, status_style.get(run.status, "")),
            f"  {run.rows_done}/{run.rows_total} rows ({new_rows} now, {cached_rows} from cache)",
            f"  {run.samples} samples per row (vote_: their vote)" if run.samples > 1 else "",
        )
    )
    if run.rows_done == 0:
        console.print("metrics: — (no rows scored)")
    table = Table("metric", "value", "measures")
    for name, value in _scalar_metrics(metrics).items():
        if run.rows_done == 0 and name in run.metric_names:
            continue
        table.add_row(name, _fmt(value), _SPEED_NOTES.get(name, ""))
    console.print(table)
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, dict) and matrix.get("labels"):
        labels = [str(label) for label in matrix["labels"]]
        grid = Table("true \\ predicted", *labels, title="confusion matrix")
        for label, row in zip(labels, matrix["matrix"], strict=False):
            if label != "invalid" or any(row):  # references are never "invalid"
                grid.add_row(label, *(str(c) for c in row))
        console.print(grid)
    if run.status == "interrupted":
        console.print(f"Resume with: tunelab eval --resume {run.id}")


def _result_json(result: EvalResult) -> dict[str, Any]:
    run = result.run
    return {
        "run_id": run.id,
        "status": run.status,
        "prompt": run.prompt_ref,
        "model": run.model_name,
        "dataset": run.dataset_name,
        "split": run.split,
        "rows": result.rows,
        "rows_total": run.rows_total,
        "new_rows": result.new_rows,
        "cached_rows": result.cached_rows,
        "metrics": result.metrics,
    }


def _start_detached(request: EvalRequest | None, judge: str | None, json_output: bool) -> None:
    """`eval --detach`: create the run, start its worker, print how to follow it."""
    from tunelab.engine.evaluation.detached import eval_log_path, start_evaluation

    if request is None:
        fail("--detach starts a new run; resume in the foreground (drop --detach)")
    if judge is not None:
        fail("--judge needs the finished run; judge it afterwards with `tunelab judge RUN`")
    workspace = state.workspace()
    run = start_evaluation(workspace, state.store(), request)
    if json_output:
        emit_json({"run_id": run.id, "status": run.status, "pid": run.pid,
                   "log": str(eval_log_path(workspace, run.id))})  # fmt: skip
        return
    console.print(
        f"run {run.id} started in the background (pid {run.pid}); follow it with "
        f"`tunelab run show {run.id}` or the TUI's Runs screen; log: "
        f"{eval_log_path(workspace, run.id)}"
    )


def _refresh_remote_runs() -> None:
    """Ingest what Slurm evaluations reported, before runs are read."""
    from tunelab.engine.training.remote_eval import refresh_remote_runs

    refresh_remote_runs(state.workspace(), state.store())


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        prompt: str | None = typer.Option(
            None, "--prompt", "-p", help="Prompt: NAME, NAME@VERSION or NAME:LABEL."
        ),
        model: str = typer.Option("builtin", "--model", "-m", help="Model name or 'builtin'."),
        dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset name."),
        split: str | None = typer.Option(None, "--split", help="Split (if several)."),
        limit: int | None = typer.Option(None, "--limit", help="Evaluate the first N rows."),
        sample: int | None = typer.Option(None, "--sample", help="Evaluate N random rows."),
        seed: int | None = typer.Option(
            None,
            "--seed",
            help="Seed for --sample (default 0), and the generation seed of --samples "
            "(default: the prompt's seed setting).",
        ),
        samples: int = typer.Option(
            1,
            "--samples",
            help="Generate N outputs per row (temperature > 0) and score their majority vote.",
        ),
        temperature: float | None = typer.Option(
            None, "--temperature", help="Override the prompt's temperature (0 = greedy)."
        ),
        scoring: str = typer.Option(
            "generate", "--scoring", help="generate, or likelihood (classification only)."
        ),
        metric: list[str] = typer.Option(
            [], "--metric", help="Metric name (repeatable); default: the dataset's metrics."
        ),
        set_: list[str] = typer.Option(
            [], "--set", help="Generation setting override KEY=VALUE (repeatable)."
        ),
        max_new_tokens: int | None = typer.Option(
            None, "--max-new-tokens", help="Override max_new_tokens."
        ),
        batch_size: int = typer.Option(
            DEFAULT_BATCH_SIZE,
            "--batch-size",
            help="Rows generated together, at most (fewer where long prompts would not fit).",
        ),
        resume: int | None = typer.Option(
            None, "--resume", help="Finish the missing rows of an interrupted run."
        ),
        no_cache: bool = typer.Option(False, "--no-cache", help="Ignore the response cache."),
        latency_probe: int = typer.Option(
            DEFAULT_PROBE_REQUESTS,
            "--latency-probe",
            help="After the run, time N rows one at a time (batch size 1) for per-request latency.",
        ),
        no_latency_probe: bool = typer.Option(
            False, "--no-latency-probe", help="Skip the latency probe (no per-request latency)."
        ),
        judge: str | None = typer.Option(
            None, "--judge", help="Then score the outputs with this rubric (NAME@VERSION)."
        ),
        judge_model: str = typer.Option(
            "builtin", "--judge-model", help="The model that judges, with --judge."
        ),
        detach: bool = typer.Option(
            False,
            "--detach",
            help="Run in a background process that outlives the terminal; prints the run id.",
        ),
        on: str = typer.Option(
            "local",
            "--on",
            help="Where to run: local, or slurm (sbatch).",
            rich_help_panel="Cluster",
        ),
        partition: str = cluster_option("partition"),
        gpus_per_node: int = cluster_option("gpus_per_node"),
        time_limit: str = cluster_option("time_limit"),
        slurm_arg: list[str] = cluster_option("slurm_arg"),
        slurm_allow_local_fs: bool = cluster_option("slurm_allow_local_fs"),
        wait: bool = typer.Option(
            False,
            "--wait",
            help="With --on slurm: follow the run until it ends.",
            rich_help_panel="Cluster",
        ),
        json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Evaluate a prompt version on a model over a dataset split; scores go to the store."""
        from tunelab.engine.evaluation.run import EvalRequest

        slurm = slurm_options(on, partition, gpus_per_node, 1, time_limit, slurm_arg,
                              slurm_allow_local_fs)  # fmt: skip
        if wait and slurm is None:
            fail("--wait follows a Slurm evaluation; a local one runs in the foreground")

        if latency_probe < 0:
            fail(f"--latency-probe must be 0 or more, got {latency_probe}")
        probe = 0 if no_latency_probe else latency_probe
        request = None
        if resume is None:
            if not prompt or not dataset:
                fail("name --prompt and --dataset (or --resume RUN_ID)")
            overrides = parse_assignments(set_, "--set")
            if max_new_tokens is not None:
                overrides["max_new_tokens"] = max_new_tokens
            if temperature is not None:
                overrides["temperature"] = temperature
            if samples > 1 and seed is not None:
                overrides.setdefault("seed", seed)
            request = EvalRequest(
                prompt=prompt,
                model=model,
                dataset=dataset,
                split=split,
                limit=limit,
                sample=sample,
                seed=0 if seed is None else seed,
                settings=overrides,
                scoring=scoring,
                metrics=list(metric),
                batch_size=batch_size,
                use_cache=not no_cache,
                latency_probe=probe,
                samples=samples,
            )
        elif prompt or dataset:
            fail("--resume continues a run with its own prompt and dataset; drop those options")
        if batch_size < 1:
            fail(f"--batch-size must be at least 1, got {batch_size}")
        show = not json_output and sys.stderr.isatty()
        if slurm is not None:
            if request is None or judge is not None or detach:
                fail("--on slurm starts a new run; drop --resume, --judge and --detach")
            submit_remote_eval(request, slurm, wait, json_output)
            return
        if detach:
            _start_detached(request, judge, json_output)
            return
        if judge is not None:  # a bad rubric fails before the evaluation starts
            check_rubric_arg(judge, dataset, split, resume)
        result = _run_with_progress(request, resume, batch_size, show, probe)
        judged = (
            judge_finished_run(result.run.id, judge, judge_model, not no_cache, show)
            if judge is not None and not result.interrupted
            else None
        )
        if json_output:
            judge_part = {"judge": report_json(judged)} if judged is not None else {}
            emit_json({**_result_json(result), **judge_part})
        else:
            _print_summary(result.run, result.metrics, result.cached_rows, result.new_rows)
            if judged is not None:
                print_report(judged, rows=False)
        if result.interrupted:
            raise typer.Exit(130)

    @run_app.command("list")
    def run_list(
        limit: int = typer.Option(50, "--limit", help="Show the newest N runs."),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """List evaluation runs, newest first."""
        from tunelab.engine.evaluation.run import refresh_run_states

        _refresh_remote_runs()
        refresh_run_states(state.store())  # a killed run reads 'interrupted', not 'running'
        runs = state.store().list_runs(limit=limit)
        if json_output:
            emit_json(runs)
            return
        table = Table("run", "status", "prompt", "model", "dataset", "rows", "metrics", "started")
        for run in runs:
            headline = headline_metrics(run)
            table.add_row(
                str(run.id),
                run.status,
                run.prompt_ref,
                run.model_name,
                f"{run.dataset_name}/{run.split}",
                f"{run.rows_done}/{run.rows_total}",
                headline,
                run.started_at,
            )
        console.print(table)

    def _print_cases(cases: list[CaseVerdict]) -> None:
        failed = [c for c in cases if not c.passed]
        console.print(f"cases: {len(cases) - len(failed)} of {len(cases)} passed")
        if not failed:
            return
        table = Table("row", "case", "failed assertion", "why", "output")
        for case in failed:
            for verdict in (v for v in case.assertions if not v.passed):
                table.add_row(
                    str(case.row_idx),
                    case.description,
                    verdict.assertion,
                    verdict.reason,
                    case.output[:60].replace("\n", " "),
                )
        console.print(table)

    @run_app.command("show")
    def run_show(
        run_id: int = typer.Argument(..., help="The run's id."),
        outputs: bool = typer.Option(False, "--outputs", help="Include per-example outputs."),
        stability: bool = typer.Option(
            False,
            "--stability",
            help="A vote run's rows ranked by disagreement, each with its samples grouped.",
        ),
        limit: int | None = typer.Option(
            None, "--limit", help="With --stability: only the K most fragile rows."
        ),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Show a run's settings and metrics, and with --outputs its per-example results."""
        from tunelab.engine.evaluation.run import refresh_run_states

        store = state.store()
        run = store.get_run(run_id)
        if run.status == "running":
            _refresh_remote_runs()
            run = store.get_run(run_id)
        if run.status == "running" and refresh_run_states(store):
            run = store.get_run(run_id)
        if limit is not None and not stability:
            fail("--limit goes with --stability (the most fragile rows first)")
        if stability:
            from tunelab.cli_stability import print_stability
            from tunelab.engine.evaluation.stability import run_stability

            ranked = run_stability(store, run_id, limit)
            if json_output:
                emit_json(ranked)
            else:
                print_stability(ranked)
            return
        from tunelab.engine.evaluation.case_report import case_verdicts

        rows = store.run_outputs(run_id) if outputs else []
        cases = case_verdicts(store, run_id)
        if json_output:
            payload: dict[str, Any] = {"run": run}
            if outputs:
                payload["outputs"] = rows
            if cases is not None:
                payload["cases"] = cases
            emit_json(payload)
            return
        _print_summary(run, run.metrics, run.cached_rows, 0)
        console.print(Text(f"settings: {json.dumps(run.settings, sort_keys=True)}", style="dim"))
        if run.error:
            console.print(Text(f"error: {run.error}", style="red"))
        if cases is not None:
            _print_cases(cases)
        if outputs:
            # With an answer rule, the extracted answers stand next to each other, so a wrong
            # score reads as a wrong answer or as a failed extraction at a glance.
            ruled = any(out.answer_found is not None for out in rows)
            answer_columns = (
                ("answer", "reference answer") if ruled else ("prediction", "reference")
            )
            table = Table("id", "row", *answer_columns, "scores", "cached", "output")
            for out in rows:
                scores = " ".join(f"{k}={_fmt(v)}" for k, v in out.scores.items())
                if ruled:
                    shown = (
                        "(not found)" if out.answer_found is False else out.prediction or "",
                        out.reference_answer or "",
                    )
                else:
                    shown = (out.prediction or "", out.reference or "")
                table.add_row(
                    str(out.id),
                    str(out.row_idx),
                    *shown,
                    scores,
                    "yes" if out.cached else "",
                    out.output[:80].replace("\n", " "),
                )
            console.print(table)

    @run_app.command("rate")
    def run_rate(
        output_id: int = typer.Argument(..., help="The output's id (see run show --outputs)."),
        rating: int = typer.Argument(..., help="1 (bad) to 5 (good)."),
        note: str = typer.Option("", "--note", help="Why."),
        by: str | None = typer.Option(
            None, "--by", help="Who rates (default: TUNELAB_USER, else the login name)."
        ),
    ) -> None:
        """Rate one output of a run, 1 to 5."""
        state.store().rate_output(output_id, rating, note, by)
        console.print(f"Rated output {output_id}: {rating}")

    app.add_typer(run_app, name="run")

    @app.command("generate")
    def generate_command(
        prompt: str = typer.Option(..., "--prompt", "-p", help="NAME, NAME@VERSION or NAME:LABEL."),
        model: str = typer.Option("builtin", "--model", "-m", help="Model name or 'builtin'."),
        dataset: str | None = typer.Option(None, "--dataset", "-d", help="Take a dataset row."),
        split: str | None = typer.Option(None, "--split", help="The row's split."),
        row: int | None = typer.Option(None, "--row", help="The row's index in the split."),
        input_: list[str] = typer.Option(
            [], "--input", "-i", help="Template variable KEY=VALUE (repeatable)."
        ),
        set_: list[str] = typer.Option([], "--set", help="Setting override KEY=VALUE."),
        show_prompt: bool = typer.Option(False, "--show-prompt", help="Print the prompt first."),
    ) -> None:
        """Render one prompt and stream the model's output; reports time to first token."""
        from tunelab.cli_generate import stream_one

        if input_ and (dataset or row is not None):
            fail("give either --input KEY=VALUE or --dataset/--row, not both")
        if not input_ and (dataset is None or row is None):
            fail("give --dataset NAME --row N (and --split), or --input KEY=VALUE")
        values: dict[str, str] = {}
        for item in input_:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                fail(f"--input {item!r}: write KEY=VALUE, e.g. --input text='hello'")
            values[key.strip()] = raw
        started = time.perf_counter()
        stream_one(
            state.store(),
            prompt,
            model,
            dataset,
            split,
            row,
            values,
            parse_assignments(set_, "--set"),
            show_prompt,
            started,
        )

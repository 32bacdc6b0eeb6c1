"""`tunelab curve`, `tunelab curve list|show|extend|resume`: how much data fine-tuning needs.

`tunelab curve --sizes 25,50,all ...` queues one fine-tuning job per size and repeat and a
detached driver that evaluates each one; it returns at once (`--wait` follows it). The table,
the chart and the crossover sentence come from `engine.curves.summarize_curve`, the record
the TUI and the decision report read too. Nothing here imports torch.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import (
    EXIT_FAILURE,
    cluster_option,
    console,
    emit_json,
    fail,
    slurm_options,
    state,
    to_jsonable,
)
from tunelab.cli_tune import _with_config_options, training_config

if TYPE_CHECKING:
    from tunelab.engine.curves.records import CurveSummary

curve_app = typer.Typer(
    help="Data-efficiency curves: fine-tune on nested subsets of growing size, against the "
    "prompt. `tunelab curve --sizes 25,50,all ...` starts one; list, show, extend, resume.",
    no_args_is_help=False,
    invoke_without_command=True,
)


def curve(
    ctx: typer.Context,
    base: str = typer.Option("builtin", "--base", help="Base model: builtin, a name, a folder."),
    dataset: str = typer.Option("", "--dataset", help="Dataset name in the workspace."),
    prompt: str = typer.Option("", "--prompt", help="Prompt version that renders rows: NAME@V."),
    sizes: str = typer.Option(
        "", "--sizes", help="Training-set sizes, comma-separated; `all` is the whole split."
    ),
    repeats: int = typer.Option(1, "--repeats", help="Subsets per size, each its own seed."),
    against: int | None = typer.Option(
        None, "--against", help="The prompt run to beat (default: the best one, or a new one)."
    ),
    eval_split: str | None = typer.Option(
        None, "--eval-split", help="Split each checkpoint is evaluated on (default: validation)."
    ),
    eval_limit: int | None = typer.Option(
        None, "--eval-limit", help="Evaluate on the first N rows of that split."
    ),
    scoring: str = typer.Option(
        "generate", "--scoring", help="generate or likelihood, for a prompt run the curve makes."
    ),
    steps_cap: int | None = typer.Option(
        None, "--steps-cap", help="Train --epochs of each subset, but at most N steps per job."
    ),
    gpus: int = typer.Option(0, "--gpus", help="GPUs per job (N > 1 trains data-parallel)."),
    config_file: Path | None = typer.Option(
        None, "--config", help="A .json or .toml training config; flags override it."
    ),
    json_output: bool = typer.Option(False, "--json", help='Print {"curve_id": N, ...}.'),
    wait: bool = typer.Option(False, "--wait", help="Follow the curve until it ends."),
    on: str = cluster_option("on", per="job"),
    partition: str = cluster_option("partition"),
    gpus_per_node: int = cluster_option("gpus_per_node"),
    nodes: int = cluster_option("nodes", per="job"),
    time_limit: str = cluster_option("time_limit", per="job"),
    slurm_arg: list[str] = cluster_option("slurm_arg"),
    slurm_allow_local_fs: bool = cluster_option("slurm_allow_local_fs"),
    **settings: Any,
) -> None:
    """Start a data-efficiency curve: one fine-tuning job per size and repeat, each evaluated
    against the prompt run on the same rows; prints its id at once."""
    if ctx.invoked_subcommand is not None:
        return
    from tunelab.engine.curves.launch import CurveRequest, launch_curve

    missing = [f"--{n}" for n, v in (("dataset", dataset), ("prompt", prompt), ("sizes", sizes))
               if not v]  # fmt: skip
    if missing:
        fail(f"tunelab curve needs {', '.join(missing)} (see `tunelab curve --help`)")
    slurm = slurm_options(on, partition, gpus_per_node, nodes, time_limit, slurm_arg,
                          slurm_allow_local_fs)  # fmt: skip
    config, given = training_config(config_file, settings)
    request = CurveRequest(
        base=base, dataset=dataset, prompt=prompt, sizes=sizes, config=config, repeats=repeats,
        against=against, eval_split=eval_split, eval_limit=eval_limit, scoring=scoring,
        seed=config.seed, given=list(given), gpus=gpus, steps_cap=steps_cap, slurm=slurm,
    )  # fmt: skip
    store = state.store()
    created = launch_curve(state.workspace(), store, request)
    entries = store.curve_entries(created.id)
    if json_output:
        emit_json({"curve_id": created.id, "job_ids": [e.job_id for e in entries],
                   "prompt_run_id": created.prompt_run_id})  # fmt: skip
    else:
        side = (
            f"against run {created.prompt_run_id}"
            if created.prompt_run_id is not None
            else "against the prompt on the base model (evaluated first)"
        )
        console.print(
            f"Started curve {created.id}: {len(entries)} {config.method} jobs on "
            f"{created.dataset_name}, {side}; see it with `tunelab curve show {created.id}`"
        )
    if wait:
        _follow(created.id, quiet=json_output)


curve.__signature__ = _with_config_options(inspect.signature(curve))  # type: ignore[attr-defined]


@curve_app.command("list")
def curve_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List curves, newest first, with how many points are evaluated."""
    store = state.store()
    curves = store.list_curves()
    rows = []
    for c in curves:
        entries = store.curve_entries(c.id)
        evaluated = sum(1 for e in entries if e.finished_at and e.run_id is not None)
        sizes = ",".join(str(s) for s in sorted({e.size for e in entries}))
        rows.append((c, sizes, evaluated, len(entries)))
    if json_output:
        emit_json([{**to_jsonable(c), "sizes": s, "points_evaluated": done, "points": total}
                   for c, s, done, total in rows])  # fmt: skip
        return
    table = Table("id", "dataset", "base", "method", "prompt", "sizes", "evaluated", "created")
    for c, s, done, total in rows:
        table.add_row(str(c.id), c.dataset_name, c.base_model_name, c.method, c.prompt_ref, s,
                      f"{done}/{total}", c.created_at[:19])  # fmt: skip
    console.print(table)


@curve_app.command("show")
def curve_show(
    curve_id: int = typer.Argument(..., help="Curve id."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    chart: bool = typer.Option(True, "--chart/--no-chart", help="Draw the curve in the terminal."),
) -> None:
    """Show a curve: each size's metric and interval, its paired delta against the prompt run,
    its training time and cost, and where it crosses the prompt."""
    from tunelab.engine.curves import crossover_sentence, summarize_curve

    summary = summarize_curve(state.store(), curve_id)
    if json_output:
        emit_json({**to_jsonable(summary), "crossover": crossover_sentence(summary)})
        return
    print_summary(summary)
    if chart and any(p.metric_mean is not None for p in summary.points):
        console.print(Text.from_ansi(curve_chart(summary)))


@curve_app.command("extend")
def curve_extend(
    curve_id: int = typer.Argument(..., help="Curve id."),
    sizes: str = typer.Option(..., "--sizes", help="More sizes, comma-separated (or `all`)."),
) -> None:
    """Add sizes to a curve; the sizes it has are kept, not trained again."""
    from tunelab.engine.curves.launch import extend_curve

    store = state.store()
    before = {e.id for e in store.curve_entries(curve_id)}
    extend_curve(state.workspace(), store, curve_id, sizes)
    added = [e for e in store.curve_entries(curve_id) if e.id not in before]
    jobs = ", ".join(str(e.job_id) for e in added)
    console.print(f"curve {curve_id}: added {len(added)} jobs ({jobs}); "
                  f"see it with `tunelab curve show {curve_id}`")  # fmt: skip


@curve_app.command("resume")
def curve_resume(curve_id: int = typer.Argument(..., help="Curve id.")) -> None:
    """Queue the curve's failed or cancelled jobs again and restart its driver if it is gone."""
    from tunelab.engine.curves.launch import resume_curve

    resumed = resume_curve(state.workspace(), state.store(), curve_id)
    what = f"resumed jobs {', '.join(map(str, resumed))}" if resumed else "no job to resume"
    console.print(f"curve {curve_id}: {what}; its driver is running")


def print_summary(summary: CurveSummary) -> None:
    from tunelab.engine.curves import crossover_sentence

    level = f"{summary.confidence * 100:.3g}%"
    console.print(Text(
        f"curve {summary.curve_id}: {summary.state}, {summary.method} on {summary.base_model}, "
        f"{summary.dataset}/{summary.eval_split}, prompt {summary.prompt_ref}"
    ))  # fmt: skip
    band = "not evaluated yet"
    if summary.prompt_metric is not None:
        band = f"{summary.metric} {summary.prompt_metric:.3f} {_interval(summary.prompt_ci)}"
    console.print(Text(f"prompt run {summary.prompt_run_id or '-'} "
                       f"({summary.prompt_run_source}): {band}"))  # fmt: skip
    table = Table(
        "size", "repeats", f"{summary.metric} ({level} CI)", "Δ vs prompt (CI)", "p",
        "train time", "cost", "device",
    )  # fmt: skip
    for p in summary.points:
        value = "-" if p.metric_mean is None else f"{p.metric_mean:.3f} {_interval(p.ci)}"
        delta = "-" if p.delta_vs_prompt is None else (
            f"{p.delta_vs_prompt:+.3f} {_interval(p.delta_ci, signed=True)}"
            + (" ★" if p.significantly_better else "")
        )  # fmt: skip
        table.add_row(
            str(p.size), f"{p.repeats_done}/{p.repeats_planned}", value, delta, _p(p.p_value),
            _duration(p.train_seconds) if p.repeats_done else "-",
            "-" if p.train_cost_usd is None else f"${p.train_cost_usd:.4f}",
            ",".join(p.devices) or "-",
        )  # fmt: skip
    console.print(table)
    console.print(Text(crossover_sentence(summary)))
    if summary.wall_seconds is not None:
        console.print(Text(f"wall time {_duration(summary.wall_seconds)}"))
    for note in summary.notes:
        console.print(Text(f"note: {note}"))


def curve_chart(summary: CurveSummary, width: int = 64, height: int = 16) -> str:
    """The metric against training-set size (log scale), the prompt run as a flat line."""
    import plotext as plt

    points = [p for p in summary.points if p.metric_mean is not None]
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    sizes = [p.size for p in points]
    plt.plot(sizes, [p.metric_mean for p in points], marker="dot", label=summary.method)
    if summary.prompt_metric is not None:
        span = [min(sizes), max(sizes)] if len(sizes) > 1 else [sizes[0], sizes[0] * 2]
        plt.plot(span, [summary.prompt_metric] * 2, label=f"prompt run {summary.prompt_run_id}")
    plt.xscale("log")
    plt.xlabel("training examples")
    plt.ylabel(summary.metric)
    return str(plt.build())


def _interval(ci: tuple[float, float] | None, signed: bool = False) -> str:
    if ci is None:
        return ""
    spec = "+.3f" if signed else ".3f"
    return f"[{ci[0]:{spec}}, {ci[1]:{spec}}]"


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _follow(curve_id: int, quiet: bool = False, poll_s: float = 3.0) -> None:
    """Print the curve's progress as it changes until it ends; exit 1 when it failed."""
    from tunelab.engine.curves import summarize_curve
    from tunelab.engine.training.jobs import refresh_job_states

    store = state.store()
    last = ""
    while True:
        refresh_job_states(store, state.workspace())
        summary = summarize_curve(store, curve_id)
        done = sum(1 for p in summary.points for _ in p.run_ids)
        planned = sum(p.repeats_planned for p in summary.points)
        line = f"curve {curve_id} {summary.state}: {done}/{planned} points evaluated"
        if line != last and not quiet:
            console.print(Text(line))
            last = line
        if summary.state != "running":
            break
        time.sleep(poll_s)
    if not quiet:
        print_summary(summary)
    if summary.state == "failed":
        fail(f"curve {curve_id} failed: {'; '.join(summary.notes) or 'see tunelab curve show'}",
             EXIT_FAILURE)  # fmt: skip


def register(app: typer.Typer) -> None:
    curve_app.callback()(curve)
    app.add_typer(curve_app, name="curve")

"""`tunelab robustness RUN`, `tunelab robustness show RUN|SUITE|sSUITE` and `list`: perturbation
suites and each perturbation's paired drop against the clean run.

A thin front end over `engine.robustness`; the engine (and so torch) is imported inside
the commands, which keeps `tunelab --help` fast.
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import (
    console,
    default_command_group,
    emit_json,
    err_console,
    fail,
    state,
    stop_on_sigint,
)

if TYPE_CHECKING:
    from tunelab.engine.robustness.records import RobustnessSummary
    from tunelab.engine.robustness.suite import RobustnessRequest, SuiteProgress


robustness_app = typer.Typer(
    cls=default_command_group("run"),  # `tunelab robustness 3` runs a suite on run 3
    help="Perturbation suites: re-run a finished run on perturbed rows or prompts and report "
    "each perturbation's paired drop. `tunelab robustness RUN` starts one.",
    no_args_is_help=True,
)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def print_summary(summary: RobustnessSummary) -> None:
    """The suite's table: each perturbation's drop with its paired interval and p-value."""
    level = f"{summary.confidence:.0%}"
    table = Table(
        "perturbation",
        "rows",
        "clean",
        "pert.",
        "drop",
        f"{level} CI",
        "p",
        "p Holm",
        title=f"suite s{summary.suite_id} of run {summary.clean_run_id} "
        f"(seed {summary.seed}, {summary.state})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.columns[5].min_width = len("+0.000..+0.000")  # an interval never wraps or clips
    for r in summary.results:
        ci = "-" if r.ci is None else f"{r.ci[0]:+.3f}..{r.ci[1]:+.3f}"
        table.add_row(
            r.perturbation,
            str(r.rows),
            f"{r.clean_metric:.3f}",
            f"{r.perturbed_metric:.3f}",
            f"{r.drop:+.3f}",
            ci,
            _fmt_p(r.p_value),
            _fmt_p(r.p_adjusted),
        )
    console.print(table)
    for r in summary.results:
        console.print(Text(f"  {r.perturbation}: {r.detail} ({r.kind}, run {r.perturbed_run_id})"))
    if summary.results:
        first = summary.results[0]
        console.print(
            f"drop = clean {first.metric} minus perturbed on the paired rows (positive: the "
            f"perturbation hurt); {first.test or 'paired test'}; Holm adjusts for the suite's "
            f"{len(summary.results)} perturbations"
        )
    worst = summary.worst()
    if worst is not None and worst.drop > 0:
        console.print(Text(f"largest drop: {worst.perturbation}, {worst.drop:.3f}"))


def _run_suite(request: RobustnessRequest, show_progress: bool) -> RobustnessSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tunelab.engine.robustness.suite import run_suite

    flag, previous = stop_on_sigint()
    progress = Progress(
        TextColumn("[bold]{task.fields[label]}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        disable=not show_progress,
        transient=True,
    )
    task = progress.add_task("robustness", total=None, label="robustness")

    def on_progress(p: SuiteProgress) -> None:
        label = f"{p.position}/{p.total} {p.perturbation}"
        progress.update(task, total=p.eval.total, completed=p.eval.done, label=label)

    try:
        with progress:
            return run_suite(state.store(), request, on_progress, lambda: flag[0])
    finally:
        signal.signal(signal.SIGINT, previous)


def _resolve_suite(ref: str) -> int:
    """`sN` (or `suite:N`) is suite N; a bare number is the latest suite of run N."""
    store = state.store()
    text = ref.strip().lower()
    for prefix in ("suite:", "s"):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            return store.get_robustness_suite(int(text[len(prefix) :])).id
    if not text.isdigit():
        fail(f"{ref!r} is neither a run id (3) nor a suite id (s3)")
    suites = store.list_robustness_suites(clean_run_id=int(text))
    if not suites:
        store.get_run(int(text))  # an unknown run says so
        fail(f"run {text} has no robustness suite; start one with `tunelab robustness {text}`")
    return suites[0].id


def register(app: typer.Typer) -> None:
    app.add_typer(robustness_app, name="robustness")


@robustness_app.command("run")
def robustness_run(
    run_id: int = typer.Argument(..., help="The finished run to perturb."),
    perturb: str = typer.Option(
        "",
        "--perturb",
        help="Input perturbations, comma-separated, each NAME or NAME:VALUE: typos[:RATE], "
        "case[:lower|upper|random], whitespace[:P], punctuation, emoji, truncate[:KEEP] "
        "(default: all of them unless only --prompt-variants are given).",
    ),
    rate: float = typer.Option(
        0.05, "--rate", help="Typo rate: the fraction of letters changed, in (0, 1]."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds every perturbation (same seed, same rows)."),
    prompt_variants: str = typer.Option(
        "",
        "--prompt-variants",
        help="Prompt perturbations, comma-separated: paraphrase=FILE (one instruction per "
        "line), label_order, shot_order.",
    ),
    metric: str | None = typer.Option(
        None, "--metric", help="Metric whose drop is reported (default: the run's first)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Rows generated together."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Re-run a finished run on perturbed copies of its rows (and prompt variants) and report
    each perturbation's paired drop against it."""
    from tunelab.engine.robustness.suite import RobustnessRequest

    request = RobustnessRequest(
        run_id=run_id,
        perturbations=_split(perturb),
        rate=rate,
        seed=seed,
        prompt_variants=_split(prompt_variants),
        metric=metric,
        batch_size=batch_size,
    )
    summary = _run_suite(request, not json_output and sys.stderr.isatty())
    if json_output:
        emit_json(summary)
    else:
        print_summary(summary)
    if summary.state != "finished":
        console.print(f"suite {summary.suite_id} is {summary.state}")
        raise typer.Exit(130 if summary.state == "running" else 1)


@robustness_app.command("show")
def robustness_show(
    ref: str = typer.Argument(..., help="A run id (its latest suite) or a suite id as sN."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a suite: each perturbation's drop, paired interval and p-value."""
    from tunelab.engine.robustness.summary import summarize_suite

    store = state.store()
    summary = summarize_suite(store, store.get_robustness_suite(_resolve_suite(ref)))
    if json_output:
        emit_json(summary)
    else:
        print_summary(summary)


@robustness_app.command("list")
def robustness_list(
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List robustness suites, newest first."""
    suites = state.store().list_robustness_suites()
    if json_output:
        emit_json(suites)
        return
    table = Table("suite", "clean run", "status", "seed", "metric", "perturbations", "created")
    for suite in suites:
        names = ", ".join(dict.fromkeys(i.perturbation for i in suite.items))
        table.add_row(
            f"s{suite.id}",
            str(suite.clean_run_id),
            suite.status,
            str(suite.seed),
            suite.metric,
            names,
            suite.created_at,
        )
    console.print(table)

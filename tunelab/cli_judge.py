"""`tunelab judge RUN|pair|rubric|show|list`: a rubric applied by a workspace model to a
run's outputs (a score and rationale each), or to two runs' outputs (positions swapped).

A thin front end over `engine.judge`; the engine (and so torch) is imported inside the
commands, which keeps `tunelab --help` fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import console, default_command_group, emit_json, err_console, fail, state

if TYPE_CHECKING:
    from tunelab.engine.judge.records import Agreement, JudgeProgress, JudgeReport, PairReport


judge_app = typer.Typer(
    cls=default_command_group("score"),  # `tunelab judge 3` scores run 3
    help="Judge a run's outputs with a rubric (tunelab judge RUN --rubric NAME@V), or two "
    "runs against each other (tunelab judge pair A B --rubric NAME@V).",
    no_args_is_help=True,
)

RUBRIC_HELP = "Rubric: NAME@VERSION (a prompt version saved with `tunelab judge rubric`)."
JUDGE_MODEL_HELP = (
    "The model that judges: builtin, or any workspace model (local, fine-tuned, endpoint)."
)


def _progress(label: str, show: bool) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[cached]} cached"),
        console=err_console,
        disable=not show,
        transient=True,
    )
    task = progress.add_task(label, total=None, cached=0)

    def on_progress(p: JudgeProgress) -> None:
        progress.update(task, total=p.total, completed=p.done, cached=p.cached)

    return progress, on_progress


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def agreement_line(agreement: Agreement) -> str:
    """One line on whether the judge was checked against human ratings, and how it did."""
    if agreement.status == "unchecked":
        return "agreement with humans: unchecked (no judged output has a human rating)"
    parts = [f"agreement with humans over {agreement.rows} rated outputs:"]
    parts.append(f"Spearman {_fmt(agreement.spearman)} (p {_fmt(agreement.spearman_p)})")
    if agreement.exact is not None and agreement.within_one is not None:
        parts.append(f"exact {agreement.exact:.0%}, within one {agreement.within_one:.0%}")
    return " ".join(parts)


def print_report(report: JudgeReport, rows: bool) -> None:
    """A score run's summary, agreement line and, with `rows`, every judgement."""
    run = report.run
    summary = report.summary
    console.print(
        Text.assemble(
            (f"judge run {run.id}", "bold"),
            f"  run {run.run_id} · rubric {run.rubric_ref} · judge {run.judge_model_name} · "
            f"scale {run.scale_min}-{run.scale_max}  ",
            (run.status, "green" if run.status == "succeeded" else "yellow"),
        )
    )
    console.print(
        f"{summary.scored} scored, {summary.unparseable} unparseable of {summary.rows} outputs "
        f"({summary.cached} from cache); mean score {_fmt(summary.mean, 2)}"
    )
    console.print(
        "distribution: " + "  ".join(f"{k}: {v}" for k, v in summary.distribution.items())
    )
    console.print(agreement_line(report.agreement))
    if rows:
        table = Table("row", "score", "rating", "reason")
        for j in report.judgements:
            score = str(j.score) if j.score is not None else f"unparseable ({j.problem})"
            table.add_row(str(j.row_idx), score, "—" if j.rating is None else str(j.rating),
                          Text(j.rationale or "—"))  # fmt: skip
        console.print(table)


def report_json(report: JudgeReport) -> dict[str, Any]:
    """What `tunelab judge --json` prints (and `tunelab eval --judge --json` under `judge`)."""
    return {
        "judge_run": report.run,
        "summary": report.summary,
        "agreement": report.agreement,
        "judgements": report.judgements,
        "interrupted": report.interrupted,
    }


def _print_pair(report: PairReport, show_rows: bool) -> None:
    run = report.run
    s = report.summary
    console.print(
        Text.assemble(
            (f"judge run {run.id}", "bold"),
            f"  run {run.run_id} (A) vs run {run.run_b_id} (B) · rubric {run.rubric_ref} · "
            f"judge {run.judge_model_name}  ",
            (run.status, "green" if run.status == "succeeded" else "yellow"),
        )
    )
    console.print(
        f"{s.rows} shared rows, each judged twice with the positions swapped: "
        f"A wins {s.wins}, B wins {s.losses}, ties {s.ties} (the passes disagreed), "
        f"unparsed {s.unparsed} ({s.cached} from cache)"
    )
    if s.win_rate is None:
        console.print("A's win rate: — (no row was decided)")
    else:
        console.print(
            f"A's win rate over {s.wins + s.losses} decided rows: {s.win_rate:.1%} "
            f"(95% Wilson {_fmt(s.win_rate_low)}-{_fmt(s.win_rate_high)}, binomial p "
            f"{_fmt(s.p_value)})"
        )
    if s.first_position_picks is not None:
        console.print(
            f"position bias: {s.first_position_picks:.0%} of readable passes picked the "
            "response shown first (50% is none)"
        )
    if show_rows:
        table = Table("row", "A first", "B first", "verdict")
        for v in report.verdicts:
            table.add_row(str(v.row_idx), v.a_first or "?", v.b_first or "?", v.verdict)
        console.print(table)


def _pair_json(report: PairReport) -> dict[str, Any]:
    return {
        "judge_run": report.run,
        "summary": report.summary,
        "verdicts": report.verdicts,
        "interrupted": report.interrupted,
    }


def check_rubric_arg(
    rubric: str, dataset: str | None, split: str | None, run_id: int | None
) -> None:
    """Check a rubric against the data an evaluation is about to produce (`eval --judge`)."""
    from tunelab.engine.judge.rubric import check_rubric_for, load_rubric

    store = state.store()
    if run_id is not None:
        run = store.get_run(run_id)
        dataset, split = run.dataset_name, run.split
    assert dataset is not None
    found = store.get_dataset(dataset)
    check_rubric_for(store, load_rubric(store, rubric), found, split or found.splits[0].name)


def judge_finished_run(
    run_id: int, rubric: str, judge_model: str, use_cache: bool, show_progress: bool
) -> JudgeReport:
    """Score a run that just finished (`tunelab eval --judge`)."""
    from tunelab.engine.judge.scoring import JudgeRequest, judge_run

    progress, on_progress = _progress("judge", show_progress)
    with progress:
        return judge_run(
            state.store(),
            JudgeRequest(run_id, rubric, judge_model, use_cache=use_cache),
            on_progress,
        )


@judge_app.command("score")
def judge_score(
    run_id: int = typer.Argument(..., help="The run whose outputs are judged."),
    rubric: str = typer.Option(..., "--rubric", "-r", help=RUBRIC_HELP),
    judge_model: str = typer.Option("builtin", "--judge-model", help=JUDGE_MODEL_HELP),
    batch_size: int = typer.Option(8, "--batch-size", help="Outputs judged together."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ignore the response cache."),
    rows: bool = typer.Option(False, "--rows", help="Print each output's score and reason."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score every output of a run on a rubric; stores score and rationale per output."""
    from tunelab.engine.judge.scoring import JudgeRequest, judge_run

    request = JudgeRequest(run_id, rubric, judge_model, batch_size, not no_cache)
    progress, on_progress = _progress("judge", not json_output and sys.stderr.isatty())
    with progress:
        report = judge_run(state.store(), request, on_progress)
    if json_output:
        emit_json(report_json(report))
    else:
        print_report(report, rows)


@judge_app.command("pair")
def judge_pair_command(
    run_a: int = typer.Argument(..., help="Run A (its wins are counted)."),
    run_b: int = typer.Argument(..., help="Run B, on the same dataset split."),
    rubric: str = typer.Option(..., "--rubric", "-r", help=RUBRIC_HELP),
    judge_model: str = typer.Option("builtin", "--judge-model", help=JUDGE_MODEL_HELP),
    batch_size: int = typer.Option(8, "--batch-size", help="Rows judged together."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ignore the response cache."),
    rows: bool = typer.Option(False, "--rows", help="Print each row's two picks and verdict."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pick the better of two runs' outputs per shared row, judged in both orders."""
    from tunelab.engine.judge.pairwise import PairRequest, judge_pair

    request = PairRequest(run_a, run_b, rubric, judge_model, batch_size, not no_cache)
    progress, on_progress = _progress("judge pair", not json_output and sys.stderr.isatty())
    with progress:
        report = judge_pair(state.store(), request, on_progress)
    if json_output:
        emit_json(_pair_json(report))
    else:
        _print_pair(report, rows)


@judge_app.command("rubric")
def judge_rubric(
    name: str = typer.Argument(..., help="The rubric's name (a prompt name)."),
    template_file: Path | None = typer.Option(
        None, "--template-file", "-t", help="The rubric's template (Jinja2)."
    ),
    template: str | None = typer.Option(None, "--template", help="The template, inline."),
    scale: str = typer.Option("1-5", "--scale", help="Score scale LOW-HIGH, e.g. 1-5 or 0-10."),
    system: str = typer.Option("", "--system", help="System message."),
    mode: str = typer.Option("chat", "--mode", help="chat (the model's chat template) or plain."),
    max_tokens: int = typer.Option(48, "--max-tokens", help="Room for the judge's reply."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Allow (and check) this dataset's columns as variables."
    ),
    message: str = typer.Option("", "--message", "-m", help="Commit message for the version."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Save a rubric: a prompt version reading input, output and reference, with a scale."""
    from tunelab.engine.judge.rubric import ScoreScale, create_rubric

    if (template_file is None) == (template is None):
        fail("give the rubric's text with --template-file FILE or --template TEXT (one of them)")
    if template_file is not None:
        try:
            text = template_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read rubric file {template_file}: {exc.__class__.__name__}")
    else:
        assert template is not None
        text = template
    version, created = create_rubric(
        state.store(), name, text, ScoreScale.parse(scale), system, mode, message, dataset,
        max_tokens,
    )  # fmt: skip
    if json_output:
        emit_json({"rubric": version.ref, "created": created, "scale": scale})
    elif created:
        console.print(f"Saved rubric {version.ref} (scale {scale})")
    else:
        console.print(f"No change: identical to {version.ref}; nothing saved")


@judge_app.command("show")
def judge_show(
    judge_run_id: int = typer.Argument(..., help="The judge run's id."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a judge run: every judgement (or pairwise verdict) and the summary."""
    from tunelab.engine.judge.pairwise import pair_report_of
    from tunelab.engine.judge.scoring import report_of

    store = state.store()
    if store.get_judge_run(judge_run_id).kind == "pair":
        pair = pair_report_of(store, judge_run_id)
        if json_output:
            emit_json(_pair_json(pair))
        else:
            _print_pair(pair, True)
        return
    report = report_of(store, judge_run_id)
    if json_output:
        emit_json(report_json(report))
    else:
        print_report(report, True)


@judge_app.command("list")
def judge_list(
    run_id: int | None = typer.Option(None, "--run", help="Only judge runs of this run."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List judge runs, newest first."""
    runs = state.store().list_judge_runs(run_id)
    if json_output:
        emit_json(runs)
        return
    table = Table("id", "kind", "run(s)", "rubric", "judge", "status", "summary")
    for r in runs:
        judged = f"{r.run_id}" if r.run_b_id is None else f"{r.run_id} vs {r.run_b_id}"
        if r.kind == "pair":
            s = r.summary
            brief = f"A {s.get('wins', 0)} / B {s.get('losses', 0)} / tie {s.get('ties', 0)}"
        else:
            mean = r.summary.get("mean")
            brief = f"mean {_fmt(mean, 2)}, unparseable {r.summary.get('unparseable', 0)}"
        table.add_row(str(r.id), r.kind, judged, r.rubric_ref, r.judge_model_name, r.status, brief)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(judge_app, name="judge")

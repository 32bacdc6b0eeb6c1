"""`tunelab compare` and `tunelab diff prompt|model|run`: which run is better, and what changed.

The renderers here (`render_comparison`, `render_prompt_diff`, ...) return rich renderables so
other commands (`tunelab prompt diff`) can print the same views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import console, emit_json, state, to_jsonable
from tunelab.engine.compare.records import Comparison, RowDiff
from tunelab.engine.compare.report import (
    comparison_to_dict,
    cost_rows,
    fmt_ci,
    fmt_delta,
    fmt_delta_p,
    fmt_value,
    run_label,
    write_report,
)
from tunelab.engine.compare.run_diff import RunDiff, diff_runs
from tunelab.engine.compare.runs import compare_row, compare_runs
from tunelab.engine.feedback.preferences import preference_tallies, tally_line
from tunelab.engine.models.diff import ModelDiff, diff_models
from tunelab.engine.prompts.diff import PromptDiff, diff_prompts
from tunelab.engine.robustness.contrast import robustness_contrast
from tunelab.engine.text_diff import ValueChange

diff_app = typer.Typer(
    help="Show what changed between prompts, models or runs.", no_args_is_help=True
)

_DIFF_STYLES = {"delete": "red strike", "insert": "green bold"}


_DIFF_MARKS = {"delete": ("[-", "-]"), "insert": ("{+", "+}")}


def render_word_diff(row: RowDiff) -> Text:
    """One row's outputs as one line, git word-diff style: [-removed-]{+added+}, coloured.

    The marks keep the diff readable where colour is off (pipes, NO_COLOR, logs).
    """
    text = Text()
    for seg in row.segments:
        opening, closing = _DIFF_MARKS.get(seg.op, ("", ""))
        style = _DIFF_STYLES.get(seg.op, "")
        text.append(f"{opening}{seg.text}{closing}", style=style)
    return text


def _metric_table(c: Comparison) -> Table:
    table = Table(
        title=f"Metrics on {c.rows} shared rows (baseline run {c.runs[0].id})", title_justify="left"
    )
    table.add_column("metric")
    for run in c.runs:
        table.add_column(f"run {run.id}", justify="right")
    for name in ("run", "delta", f"{c.confidence:.0%} CI", "p", "test"):
        table.add_column(name, justify="right" if name in ("delta", "p") else "left")
    for m in c.metrics:
        for i, d in enumerate(m.deltas):
            values = [fmt_value(v) for v in m.values] if i == 0 else [""] * len(m.values)
            style = "green" if d.significant else "dim"
            table.add_row(
                m.name if i == 0 else "",
                *values,
                str(d.run_id),
                Text(fmt_delta(d.delta), style=style),
                fmt_ci(d),
                fmt_delta_p(d),
                d.test,
            )
    return table


def _verdict_lines(c: Comparison) -> list[Text]:
    """One sentence per metric and run, under the table so narrow terminals keep it readable."""
    return [
        Text.assemble(
            (f"{m.name}, run {d.run_id}: ", "bold"),
            (d.verdict, "green" if d.significant else "dim"),
        )
        for m in c.metrics
        for d in m.deltas
    ]


def _examples_table(c: Comparison) -> Table | None:
    rows = [p for p in c.pairs if p.counts is not None]
    if not rows:
        return None
    table = Table(title="Per example", title_justify="left")
    for name in (
        "run vs baseline",
        "score",
        "fixed",
        "broken",
        "both right",
        "both wrong",
        "outputs differ",
    ):
        table.add_column(name, justify="left" if name in ("run vs baseline", "score") else "right")
    for p in rows:
        k = p.counts
        assert k is not None
        table.add_row(
            f"{p.run_id} vs {p.baseline_run_id}",
            k.score,
            Text(str(k.fixed), "green"),
            Text(str(k.broken), "red"),
            str(k.both_right),
            str(k.both_wrong),
            str(len(p.differing_rows)),
        )
    return table


def _cost_table(c: Comparison) -> Table:
    table = Table(
        title=f"Cost and speed (${c.price_per_gpu_hour:g} per GPU-hour, "
        f"${c.price_per_cpu_hour:g} per CPU-hour; latency from the probe, cost from throughput)",
        title_justify="left",
    )
    table.add_column("")
    for run in c.runs:
        table.add_column(f"run {run.id}", justify="right")
    for label, cells in cost_rows(c):
        table.add_row(label, *cells)
    return table


def render_comparison(c: Comparison, *, examples: bool = True) -> RenderableType:
    """The whole comparison: runs, metric table, per-example counts, cost and break-even."""
    parts: list[RenderableType] = [
        Text(f"{run_label(c, r.id)}: {r.dataset_name}/{r.split}, {r.rows} rows, {r.status}")
        for r in c.runs
    ]
    parts += [Text(f"note: {n}", style="yellow") for n in c.notes]
    parts.append(_metric_table(c))
    parts += _verdict_lines(c)
    examples_table = _examples_table(c)
    if examples_table is not None:
        parts.append(examples_table)
    if examples:
        for p in c.pairs:
            for row in p.examples:
                parts.append(
                    Text.assemble(
                        (f"run {p.run_id} row {row.row_idx} {p.change(row.row_idx)} ", "bold"),
                        (f"(reference {row.reference!r}): ", "dim"),
                        render_word_diff(row),
                    )
                )
    parts.append(_cost_table(c))
    parts += [
        Text(f"break-even, run {b.run_id} vs run {b.baseline_run_id}: {b.verdict}")
        for b in c.break_even
    ]
    return Group(*parts)


def _changes_table(title: str, changes: list[ValueChange], a: str, b: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("key")
    table.add_column(a, style="red")
    table.add_column(b, style="green")
    for ch in changes:
        table.add_row(
            ch.key,
            "" if ch.change == "added" else repr(ch.a),
            "" if ch.change == "removed" else repr(ch.b),
        )
    return table


def render_prompt_diff(diff: PromptDiff, *, side_by_side: bool = False) -> RenderableType:
    """A coloured unified (or side-by-side) diff of two prompt versions."""
    if not diff.changed:
        return Text(f"{diff.a_ref} and {diff.b_ref} are identical")
    parts: list[RenderableType] = []
    for t in diff.texts:
        if not t.changed:
            continue
        if side_by_side:
            table = Table(title=t.name, title_justify="left", show_lines=False)
            table.add_column(diff.a_ref)
            table.add_column(diff.b_ref)
            for line in t.side_by_side:
                changed = line.tag != "equal"
                table.add_row(
                    Text(line.left or "", style="red" if changed else ""),
                    Text(line.right or "", style="green" if changed else ""),
                )
            parts.append(table)
            continue
        for unified_line in t.unified:
            style = ""
            if unified_line.startswith(("+++", "---")):
                style = "bold"
            elif unified_line.startswith("+"):
                style = "green"
            elif unified_line.startswith("-"):
                style = "red"
            elif unified_line.startswith("@@"):
                style = "cyan"
            parts.append(Text(unified_line, style=style))
    if diff.changes:
        parts.append(
            _changes_table("mode, reasoning and settings", diff.changes, diff.a_ref, diff.b_ref)
        )
    return Group(*parts)


def render_model_diff(diff: ModelDiff) -> RenderableType:
    parts: list[RenderableType] = [
        Text(f"lineage {diff.a_name}: " + " → ".join(diff.lineage_a)),
        Text(f"lineage {diff.b_name}: " + " → ".join(diff.lineage_b)),
        Text(f"common ancestor: {diff.common_ancestor or 'none'}", style="dim"),
    ]
    for title, changes in (
        ("model", diff.changes),
        ("training config", diff.config_changes),
        ("metrics", diff.metric_changes),
    ):
        if changes:
            parts.append(_changes_table(title, changes, diff.a_name, diff.b_name))
    if not (diff.changes or diff.config_changes or diff.metric_changes):
        parts.append(Text("no differences in fields, training config or metrics"))
    return Group(*parts)


def render_run_diff(diff: RunDiff) -> RenderableType:
    a, b = f"run {diff.a.id}", f"run {diff.b.id}"
    parts: list[RenderableType] = []
    for title, changes in (
        ("run", diff.changes),
        ("settings", diff.settings_changes),
        ("stored metrics", diff.metric_changes),
    ):
        if changes:
            parts.append(_changes_table(title, changes, a, b))
    if diff.prompt is not None:
        parts.append(Panel(render_prompt_diff(diff.prompt), title="prompt", title_align="left"))
    if diff.model is not None:
        parts.append(Panel(render_model_diff(diff.model), title="model", title_align="left"))
    if diff.comparison is not None:
        parts.append(render_comparison(diff.comparison, examples=False))
    elif diff.comparison_error:
        parts.append(Text(f"rows not compared: {diff.comparison_error}", style="yellow"))
    return Group(*parts)


def _run_diff_dict(diff: RunDiff) -> dict[str, Any]:
    return {
        "a": to_jsonable(diff.a), "b": to_jsonable(diff.b),
        "changes": to_jsonable(diff.changes),
        "settings_changes": to_jsonable(diff.settings_changes),
        "metric_changes": to_jsonable(diff.metric_changes),
        "prompt": to_jsonable(diff.prompt), "model": to_jsonable(diff.model),
        "comparison": None if diff.comparison is None else comparison_to_dict(diff.comparison),
        "comparison_error": diff.comparison_error,
    }  # fmt: skip


@diff_app.command("prompt")
def diff_prompt_command(
    a: str = typer.Argument(..., help="First version: NAME@1, NAME:production or NAME."),
    b: str = typer.Argument(..., help="Second version, e.g. NAME@3."),
    side_by_side: bool = typer.Option(False, "--side-by-side", "-s", help="Two columns."),
    json_output: bool = typer.Option(False, "--json", help="Print the diff as JSON."),
) -> None:
    """Template, system message, examples and settings of two prompt versions."""
    diff = diff_prompts(state.store(), a, b)
    if json_output:
        emit_json({"changed": diff.changed, **to_jsonable(diff)})
        return
    console.print(render_prompt_diff(diff, side_by_side=side_by_side))


@diff_app.command("model")
def diff_model_command(
    a: str = typer.Argument(..., help="First model name."),
    b: str = typer.Argument(..., help="Second model name."),
    json_output: bool = typer.Option(False, "--json", help="Print the diff as JSON."),
) -> None:
    """Training configuration, metrics and lineage of two models."""
    diff = diff_models(state.store(), a, b)
    if json_output:
        emit_json(diff)
        return
    console.print(render_model_diff(diff))


@diff_app.command("run")
def diff_run_command(
    a: int = typer.Argument(..., help="First run id."),
    b: int = typer.Argument(..., help="Second run id."),
    seed: int = typer.Option(0, "--seed", help="Resampling seed."),
    json_output: bool = typer.Option(False, "--json", help="Print the diff as JSON."),
) -> None:
    """Settings, prompt, model and a row-by-row comparison of two runs."""
    diff = diff_runs(state.store(), a, b, seed=seed)
    if json_output:
        emit_json(_run_diff_dict(diff))
        return
    console.print(render_run_diff(diff))


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_command(
        runs: list[int] = typer.Argument(..., help="Run ids; the first is the baseline."),
        json_output: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
        report: Path | None = typer.Option(
            None, "--report", help="Also write a report: FILE.md or FILE.html."
        ),
        shared_rows: bool = typer.Option(
            False, "--shared-rows", help="Compare only the rows every run covers."
        ),
        seed: int = typer.Option(0, "--seed", help="Resampling seed (same seed, same numbers)."),
        n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap samples per metric."),
        price: float | None = typer.Option(
            None,
            "--price-per-gpu-hour",
            help="Price of a GPU-hour for this comparison (default: `tunelab config`).",
        ),
        row: int | None = typer.Option(None, "--row", help="Show a word diff of this row."),
        allow_running: bool = typer.Option(
            False, "--allow-running", help="Compare a run still running on the rows it has."
        ),
        aggregate: str | None = typer.Option(
            None,
            "--aggregate",
            help="Vote runs (--samples): 'first' sample or majority 'vote' (default: the vote "
            "when every run has one).",
        ),
    ) -> None:
        """Which run is better, by how much, how sure, and at what cost."""
        store = state.store()
        comparison = compare_runs(
            store,
            runs,
            seed=seed,
            n_boot=n_boot,
            shared_rows_only=shared_rows,
            price_per_gpu_hour=price,
            allow_running=allow_running,
            aggregate=aggregate,
        )
        if report is not None:
            write_report(comparison, report)
        if json_output:
            robustness = robustness_contrast(store, [r.id for r in comparison.runs])
            preferences = preference_tallies(store, [r.id for r in comparison.runs])
            emit_json(
                {**comparison_to_dict(comparison), "robustness": robustness,
                 "preferences": to_jsonable(preferences)}
            )  # fmt: skip
            return
        console.print(render_comparison(comparison))
        for sentence in robustness_contrast(store, [r.id for r in comparison.runs]):
            console.print(Text(sentence))
        for tally in preference_tallies(store, [r.id for r in comparison.runs]):
            console.print(Text(tally_line(tally)))
        if row is not None:
            for other in comparison.runs[1:]:
                diff = compare_row(store, comparison.runs[0].id, other.id, row)
                console.print(
                    Text.assemble((f"row {row}, run {other.id}: ", "bold"), render_word_diff(diff))
                )
        if report is not None:
            console.print(f"report written to {report}")

    app.add_typer(diff_app, name="diff")

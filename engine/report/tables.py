"""The decision report's tables as plain cells, so Markdown and HTML show the same numbers."""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.engine.compare.report import cost_rows, fmt_ci, fmt_delta, fmt_delta_p, fmt_value
from tunelab.engine.report.records import DecisionReport
from tunelab.engine.report.sentences import (
    drawn_points,
    interval,
    span,
    value,
)
from tunelab.engine.robustness.contrast import matched_perturbations
from tunelab.engine.robustness.records import PerturbationResult


@dataclass(frozen=True)
class ReportTable:
    title: str
    head: list[str]
    rows: list[list[str]]


def runs_table(report: DecisionReport) -> ReportTable:
    efforts = (report.prompt_effort.text(), report.finetune_effort.text())
    rows = [
        [
            side,
            str(run.id),
            run.description,
            f"{run.dataset_name}/{run.split}",
            str(run.rows),
            effort,
        ]
        for side, run, effort in zip(
            ("prompt", "fine-tune"), report.comparison.runs, efforts, strict=False
        )
    ]
    return ReportTable("Runs", ["side", "run", "what", "dataset/split", "rows", "effort"], rows)


def metrics_table(report: DecisionReport) -> ReportTable:
    c = report.comparison
    level = f"{c.confidence:.0%} CI"
    rows = []
    for m in c.metrics:
        d = m.deltas[0]
        rows.append(
            [m.name, fmt_value(m.values[0]), fmt_value(m.values[1]), fmt_delta(d.delta),
             fmt_ci(d), fmt_delta_p(d), d.test, "yes" if d.significant else "no"]
        )  # fmt: skip
    head = [
        "metric",
        "prompt",
        "fine-tune",
        "fine-tune − prompt",
        level,
        "p",
        "test",
        "significant",
    ]
    return ReportTable(f"Metrics on {c.rows:,} paired rows", head, rows)


def curve_table(report: DecisionReport) -> ReportTable | None:
    curve = report.curve
    if curve is None:
        return None
    rows = []
    for p in curve.points:
        drawn = p in drawn_points(curve)
        rows.append(
            [f"{p.size:,}", f"{p.repeats_done}/{p.repeats_planned}",
             value(p.metric_mean) if drawn and p.metric_mean is not None else "-",
             span(p.ci),
             "-" if p.delta_vs_prompt is None else f"{p.delta_vs_prompt:+.3f}",
             "-" if p.p_value is None else fmt_value(p.p_value, 3),
             "yes" if p.significantly_better else "no",
             f"{p.train_seconds:,.0f}",
             "-" if p.train_cost_usd is None else f"${p.train_cost_usd:,.4f}"]
        )  # fmt: skip
    band = "-" if curve.prompt_metric is None else value(curve.prompt_metric)
    title = (
        f"Data curve {curve.curve_id} ({curve.method}, {curve.metric} on {curve.eval_split}; "
        f"prompt run {curve.prompt_run_id}: {band}; {curve.state})"
    )
    head = ["examples", "repeats", curve.metric, "interval", "vs prompt", "p",
            "significantly better", "training s", "training cost"]  # fmt: skip
    return ReportTable(title, head, rows)


def _drop(result: PerturbationResult | None) -> str:
    if result is None:
        return "-"
    return f"{result.drop:+.3f} ({interval(result.ci)})"


def robustness_table(report: DecisionReport) -> ReportTable | None:
    if report.prompt_robustness is None and report.finetune_robustness is None:
        return None
    matched = matched_perturbations(report.prompt_robustness, report.finetune_robustness)
    rows = [[name, _drop(p), _drop(f)] for name, p, f in matched]
    return ReportTable(
        "Robustness: metric drop under each perturbation (clean minus perturbed)",
        ["perturbation", "prompt drop", "fine-tune drop"],
        rows,
    )


def cost_table(report: DecisionReport) -> ReportTable:
    c = report.comparison
    rows = [[label, *cells] for label, cells in cost_rows(c)]
    even = c.break_even[0] if c.break_even else None
    if even is not None:
        rows.append(["break-even", "", even.verdict])
    return ReportTable(
        f"Cost and speed (${c.price_per_gpu_hour:g} per GPU-hour, ${c.price_per_cpu_hour:g} per "
        "CPU-hour)",
        ["", "prompt", "fine-tune"],
        rows,
    )


def tables_by_topic(report: DecisionReport) -> dict[str, list[ReportTable]]:
    """Each section's tables (see `records.TOPICS`), shown under its sentences by both
    renderers."""
    found: dict[str, list[ReportTable | None]] = {
        "verdict": [metrics_table(report)],
        "effort": [runs_table(report)],
        "curve": [curve_table(report)],
        "robustness": [robustness_table(report)],
        "speed": [cost_table(report)],
    }
    return {topic: [t for t in tables if t is not None] for topic, tables in found.items()}

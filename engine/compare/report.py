"""Comparison reports: a JSON-ready dict, Markdown for terminals, self-contained HTML to share.

The HTML report has no external assets (inline CSS, no scripts, no fonts), so it can be mailed
or attached to a ticket and still render the same.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from tunelab.engine.compare.records import (
    Comparison,
    MetricComparison,
    MetricDelta,
    RowDiff,
)
from tunelab.engine.errors import BadInputError


def _ci(delta: MetricDelta) -> dict[str, float] | None:
    return None if delta.ci is None else {"low": delta.ci[0], "high": delta.ci[1]}


def _delta_dict(d: MetricDelta) -> dict[str, Any]:
    return {
        "baseline_run_id": d.baseline_run_id, "run_id": d.run_id, "delta": d.delta,
        "ci": _ci(d), "p_value": d.p_value, "test": d.test, "significant": d.significant,
        "rows_needed": d.rows_needed, "verdict": d.verdict, "confidence": d.confidence,
        "p_adjusted": d.p_adjusted, "comparisons": d.comparisons, "paired_rows": d.rows,
    }  # fmt: skip


def _metric_dict(m: MetricComparison) -> dict[str, Any]:
    first = m.deltas[0]
    return {
        "kind": m.kind, "higher_is_better": m.higher_is_better, "rows": m.rows,
        "values": m.values, "a": m.values[0], "b": m.values[1],
        **{k: v for k, v in _delta_dict(first).items() if k not in ("baseline_run_id", "run_id")},
        "comparisons": [_delta_dict(d) for d in m.deltas],
    }  # fmt: skip


def comparison_to_dict(c: Comparison) -> dict[str, Any]:
    """The comparison as plain JSON data; top-level keys describe the first pair (A vs B)."""
    pairs = []
    for p in c.pairs:
        counts = p.counts
        pairs.append({
            "baseline_run_id": p.baseline_run_id, "run_id": p.run_id,
            "score": counts.score if counts else None,
            "fixed": counts.fixed if counts else None,
            "broken": counts.broken if counts else None,
            "both_right": counts.both_right if counts else None,
            "both_wrong": counts.both_wrong if counts else None,
            "fixed_rows": counts.fixed_rows if counts else [],
            "broken_rows": counts.broken_rows if counts else [],
            "differing_rows": p.differing_rows,
        })  # fmt: skip
    first = pairs[0]
    return {
        "runs": [r.__dict__ for r in c.runs],
        "rows": c.rows, "shared_rows_only": c.shared_rows_only, "notes": c.notes,
        "seed": c.seed, "n_boot": c.n_boot, "confidence": c.confidence,
        "price_per_gpu_hour": c.price_per_gpu_hour,
        "price_per_cpu_hour": c.price_per_cpu_hour,
        "metrics": {m.name: _metric_dict(m) for m in c.metrics},
        **{k: first[k] for k in ("fixed", "broken", "both_right", "both_wrong")},
        "pairs": pairs,
        "cost": [cost.__dict__ for cost in c.costs],
        "break_even": [b.__dict__ for b in c.break_even],
    }  # fmt: skip


def fmt_value(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def fmt_delta(value: float) -> str:
    return f"{value:+.4g}"


def fmt_ci(d: MetricDelta) -> str:
    """The interval, with its level when Holm's adjustment moved it off the comparison's."""
    if d.ci is None:
        return "-"
    level = f" ({d.confidence * 100:.3g}%)" if d.comparisons > 1 else ""
    return f"[{d.ci[0]:+.4g}, {d.ci[1]:+.4g}]{level}"


def fmt_p(p: float | None) -> str:
    return "-" if p is None else (f"{p:.3g}" if p >= 0.001 else "<0.001")


def fmt_delta_p(d: MetricDelta) -> str:
    """The p-value, and its Holm-adjusted value when several runs were compared."""
    holm = f" (Holm {fmt_p(d.p_adjusted)})" if d.comparisons > 1 else ""
    return fmt_p(d.p_value) + holm


def fmt_money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def run_label(c: Comparison, run_id: int) -> str:
    return next(r for r in c.runs if r.id == run_id).label


def price_sentence(c: Comparison) -> str:
    """The prices used and which measurement each figure rests on."""
    return (
        f"Price per GPU-hour: ${c.price_per_gpu_hour:g}; per CPU-hour: ${c.price_per_cpu_hour:g} "
        "(CPU training). Latency is per request, from the latency probe (batch size 1); cost "
        "per request is from throughput (batch wall time per row)."
    )


def cost_rows(c: Comparison) -> list[tuple[str, list[str]]]:
    """(label, one cell per run) rows of the cost and speed table, shared by every renderer."""

    def row(label: str, values: list[str]) -> tuple[str, list[str]]:
        return label, values

    costs = c.costs
    return [
        row("latency p50 (ms)", [fmt_value(x.latency_p50_ms) for x in costs]),
        row("latency p95 (ms)", [fmt_value(x.latency_p95_ms) for x in costs]),
        row("first token p50 (ms)", [fmt_value(x.ttft_p50_ms) for x in costs]),
        row("latency from", [x.latency_source or "—" for x in costs]),
        row("tokens in / request", [fmt_value(x.tokens_in_per_request) for x in costs]),
        row("tokens out / request", [fmt_value(x.tokens_out_per_request) for x in costs]),
        row("throughput (rows / s)", [fmt_value(x.rows_per_second) for x in costs]),
        row("tokens / second", [fmt_value(x.tokens_per_second) for x in costs]),
        row("cost / 1k requests", [fmt_money(x.cost_per_1k_requests) for x in costs]),
        row("cost from", [x.cost_note or "throughput at the GPU-hour price" for x in costs]),
        row("training time (s)", [fmt_value(x.training_seconds) for x in costs]),
        row("training device-hours", [fmt_value(x.training_gpu_hours) for x in costs]),
        row("training cost", [fmt_money(x.training_cost) for x in costs]),
        row("training", [x.training_note for x in costs]),
    ]


def cost_lines(c: Comparison) -> list[str]:
    """The cost table as plain lines, then each break-even sentence."""
    lines = [f"{label}: " + " | ".join(cells) for label, cells in cost_rows(c)]
    return lines + [f"break-even (run {b.run_id}): {b.verdict}" for b in c.break_even]


def _metric_head(ids: list[int]) -> list[str]:
    return ["metric", *[f"run {i}" for i in ids], "run", "delta", "CI", "p", "test", "verdict"]


def _metric_rows(c: Comparison) -> list[tuple[MetricDelta, list[str]]]:
    """One row per metric and run after the baseline: every cell but the verdict, which the
    Markdown and HTML reports mark up differently."""
    rows = []
    for m in c.metrics:
        values = [fmt_value(v) for v in m.values]
        for d in m.deltas:
            cells = [m.name, *values, str(d.run_id), fmt_delta(d.delta), fmt_ci(d),
                     fmt_delta_p(d), d.test]  # fmt: skip
            rows.append((d, cells))
    return rows


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_diff(row: RowDiff) -> str:
    parts = []
    for seg in row.segments:
        text = _md_cell(seg.text)
        if seg.op == "delete" and text.strip():
            parts.append(f"~~{text.strip()}~~ ")
        elif seg.op == "insert" and text.strip():
            parts.append(f"**{text.strip()}** ")
        else:
            parts.append(text)
    return "".join(parts).strip()


def render_markdown(c: Comparison) -> str:
    """A Markdown report that also reads well as plain text in a terminal."""
    ids = [r.id for r in c.runs]
    lines = ["# Run comparison", ""]
    lines += [
        f"- {run_label(c, r.id)}: {r.dataset_name}/{r.split}, {r.rows} rows, {r.status}"
        + (f"; {r.prompt_effort}" if r.prompt_effort else "")
        for r in c.runs
    ]
    lines += [
        "",
        f"Compared rows: {c.rows}. Baseline: run {ids[0]}. Seed {c.seed}, "
        f"{c.n_boot} bootstrap samples, {c.confidence:.0%} intervals.",
        "",
    ]
    lines += [f"> {note}" for note in c.notes] + ([""] if c.notes else [])
    lines += ["## Metrics", ""]
    head = _metric_head(ids)
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d, cells in _metric_rows(c):
        lines.append("| " + " | ".join(_md_cell(x) for x in [*cells, d.verdict]) + " |")
    lines += ["", "## Per example", ""]
    for p in c.pairs:
        lines.append(f"### run {p.run_id} vs run {p.baseline_run_id}")
        if p.counts is not None:
            k = p.counts
            lines += [
                "",
                f"On `{k.score}`: fixed {k.fixed}, broken {k.broken}, both right "
                f"{k.both_right}, both wrong {k.both_wrong}.",
            ]
        lines += ["", f"Outputs differ on {len(p.differing_rows)} of {c.rows} rows.", ""]
        for row in p.examples:
            lines.append(
                f"- row {row.row_idx} {p.change(row.row_idx)} (reference: "
                f"{_md_cell(str(row.reference))}): {_md_diff(row)}"
            )
        lines.append("")
    lines += ["## Cost and speed", "", f"{price_sentence(c)}", ""]
    lines += ["| | " + " | ".join(f"run {i}" for i in ids) + " |", "|" + "---|" * (len(ids) + 1)]
    lines += [
        "| " + " | ".join(_md_cell(x) for x in [label, *cells]) + " |"
        for label, cells in cost_rows(c)
    ]
    lines += [
        "",
        *[
            f"- Break-even, run {b.run_id} vs run {b.baseline_run_id}: {b.verdict}"
            for b in c.break_even
        ],
        "",
    ]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1d1d1f;
background:#fff;max-width:1100px}h1,h2,h3{font-weight:600}table{border-collapse:collapse;
margin:.5rem 0 1.5rem}th,td{border:1px solid #d0d0d5;padding:.3rem .6rem;text-align:left;
vertical-align:top}th{background:#f2f2f5}.sig{color:#0a7d32;font-weight:600}
.ns{color:#6b6b70}.note{background:#fff7e0;padding:.4rem .8rem;border-left:3px solid #e0a800}
del{background:#ffe1e1;color:#9b1c1c}ins{background:#dcf5e3;color:#0a5d25;text-decoration:none}
.row{font-family:ui-monospace,Menlo,monospace;font-size:.9rem;white-space:pre-wrap}
"""


def _h(text: object) -> str:
    return html.escape(str(text))


def _html_table(head: list[str], rows: list[list[str]], raw_last: bool = False) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_h(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = [f"<td>{_h(x)}</td>" for x in row]
        if raw_last:
            cells[-1] = f"<td>{row[-1]}</td>"
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def _html_diff(row: RowDiff) -> str:
    tags = {"delete": "del", "insert": "ins"}
    parts = []
    for seg in row.segments:
        tag = tags.get(seg.op)
        parts.append(f"<{tag}>{_h(seg.text)}</{tag}>" if tag else _h(seg.text))
    return "".join(parts)


def render_html(c: Comparison) -> str:
    """A self-contained HTML page: inline CSS, no scripts, no links to other files."""
    ids = [r.id for r in c.runs]
    body = ["<h1>Run comparison</h1><ul>"]
    body += [
        f"<li>{_h(run_label(c, r.id))}: {_h(r.dataset_name)}/{_h(r.split)}, {r.rows} rows,"
        f" {_h(r.status)}" + (f"; {_h(r.prompt_effort)}" if r.prompt_effort else "") + "</li>"
        for r in c.runs
    ]
    body.append(
        f"</ul><p>Compared rows: {c.rows}. Baseline: run {ids[0]}. Seed {c.seed}, "
        f"{c.n_boot} bootstrap samples, {c.confidence:.0%} intervals.</p>"
    )
    body += [f'<p class="note">{_h(n)}</p>' for n in c.notes]
    rows = []
    for d, cells in _metric_rows(c):
        css = "sig" if d.significant else "ns"
        rows.append([*cells, f'<span class="{css}">{_h(d.verdict)}</span>'])
    head = _metric_head(ids)
    body += ["<h2>Metrics</h2>", _html_table(head, rows, raw_last=True), "<h2>Per example</h2>"]
    for p in c.pairs:
        body.append(f"<h3>run {p.run_id} vs run {p.baseline_run_id}</h3>")
        if p.counts is not None:
            k = p.counts
            body.append(
                _html_table(
                    ["score", "fixed", "broken", "both right", "both wrong"],
                    [[k.score, str(k.fixed), str(k.broken), str(k.both_right), str(k.both_wrong)]],
                )
            )
        body.append(f"<p>Outputs differ on {len(p.differing_rows)} of {c.rows} rows.</p>")
        for row in p.examples:
            body.append(
                f"<p>row {row.row_idx} {p.change(row.row_idx)} "
                f"(reference: {_h(row.reference)})</p>"
                f'<div class="row">{_html_diff(row)}</div>'
            )
    body.append(f"<h2>Cost and speed</h2><p>{html.escape(price_sentence(c))}</p>")
    body.append(
        _html_table(
            ["", *[f"run {i}" for i in ids]], [[label, *cells] for label, cells in cost_rows(c)]
        )
    )
    body += [
        f"<p>Break-even, run {b.run_id} vs run {b.baseline_run_id}: {_h(b.verdict)}</p>"
        for b in c.break_even
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>tunelab comparison</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def write_report(c: Comparison, path: Path | str) -> Path:
    """Write a Markdown (.md) or HTML (.html) report, chosen by the file's suffix."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in (".md", ".markdown"):
        text = render_markdown(c)
    elif suffix in (".html", ".htm"):
        text = render_html(c)
    else:
        raise BadInputError(f"a report file ends in .md or .html, not {target.name!r}")
    if not target.parent.exists():
        raise BadInputError(f"the folder {str(target.parent)!r} does not exist")
    target.write_text(text, encoding="utf-8")
    return target

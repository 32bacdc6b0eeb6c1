"""The decision report as Markdown: each section's sentences, then its tables (the same
tables the HTML page shows). It reads as plain text too, and Textual's Markdown widget
renders it as the TUI's Report screen."""

from __future__ import annotations

from tunelab.engine.report.records import TOPICS, DecisionReport
from tunelab.engine.report.tables import ReportTable, tables_by_topic


def md_cell(text: str) -> str:
    """A table cell: pipes escaped, on one line."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def md_table(table: ReportTable) -> list[str]:
    lines = [f"**{md_cell(table.title)}**", ""]
    lines.append("| " + " | ".join(md_cell(h) or " " for h in table.head) + " |")
    lines.append("|" + "---|" * len(table.head))
    lines += ["| " + " | ".join(md_cell(cell) for cell in row) + " |" for row in table.rows]
    return [*lines, ""]


def render_markdown(report: DecisionReport) -> str:
    """The whole report as one Markdown document."""
    c = report.comparison
    lines = [
        f"# Prompt or fine-tune? {md_cell(report.dataset)}/{md_cell(report.split)}",
        "",
        f"Prompt: {md_cell(report.prompt_run.label)}. Fine-tune: "
        f"{md_cell(report.finetune_run.label)}. Headline metric: {md_cell(report.metric)}. "
        f"Seed {c.seed}, {c.n_boot} bootstrap samples, {c.confidence:.0%} intervals.",
        "",
    ]
    lines += [f"> {md_cell(note)}" for note in c.notes] + ([""] if c.notes else [])
    tables = tables_by_topic(report)
    for topic, heading in TOPICS.items():
        said = report.about(topic)
        if not said and not tables.get(topic):
            continue
        lines += [f"## {heading}", ""]
        lines += [f"- {md_cell(s.text)}" for s in said] + ([""] if said else [])
        for table in tables.get(topic, []):
            lines += md_table(table)
    return "\n".join(lines)

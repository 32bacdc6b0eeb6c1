"""The decision report as one self-contained HTML page: inline CSS, the plots as inline SVG
data URIs, no scripts, no fonts, no links; every user string escaped. It can be mailed or
attached to a ticket and renders the same offline."""

from __future__ import annotations

import base64
import html

from tunelab.engine.report.plots import curve_svg, robustness_svg
from tunelab.engine.report.records import TOPICS, DecisionReport, ReportSentence
from tunelab.engine.report.tables import ReportTable, tables_by_topic

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;color:#1d1d1f;
background:#fff;max-width:1000px;line-height:1.45}h1,h2{font-weight:600}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #d0d0d5;
padding:.3rem .6rem;text-align:left;vertical-align:top}th{background:#f2f2f5}
caption{text-align:left;font-weight:600;padding:.3rem 0}.missing{color:#6b6b70}
code{background:#f2f2f5;padding:0 .2rem}.note{background:#fff7e0;padding:.4rem .8rem;
border-left:3px solid #e0a800}img{max-width:100%}
"""


def _h(text: object) -> str:
    return html.escape(str(text))


def _sentence(sentence: ReportSentence) -> str:
    css = ' class="missing"' if sentence.missing else ""
    text = _h(sentence.text)
    if sentence.command is not None:
        # The command is escaped like the rest, then shown as code.
        quoted = _h(f"`{sentence.command}`")
        text = text.replace(quoted, f"<code>{_h(sentence.command)}</code>")
    return f"<li{css}>{text}</li>"


def html_table(table: ReportTable) -> str:
    head = "".join(f"<th>{_h(h)}</th>" for h in table.head)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_h(cell)}</td>" for cell in row) + "</tr>" for row in table.rows
    )
    return f"<table><caption>{_h(table.title)}</caption><tr>{head}</tr>{rows}</table>"


def _image(svg: str | None, alt: str) -> str:
    if svg is None:
        return ""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<p><img alt="{_h(alt)}" src="data:image/svg+xml;base64,{data}"></p>'


def render_html(report: DecisionReport) -> str:
    """The whole report as one HTML document with no external assets."""
    c = report.comparison
    body = [
        f"<h1>Prompt or fine-tune? {_h(report.dataset)}/{_h(report.split)}</h1>",
        f"<p>Prompt: {_h(report.prompt_run.label)}. Fine-tune: {_h(report.finetune_run.label)}."
        f" Headline metric: {_h(report.metric)}. Seed {c.seed}, {c.n_boot} bootstrap samples, "
        f"{c.confidence:.0%} intervals.</p>",
    ]
    body += [f'<p class="note">{_h(note)}</p>' for note in c.notes]
    plots = {
        "curve": _image(
            curve_svg(report.curve) if report.curve is not None else None,
            "metric against training-set size, with the prompt's band",
        ),
        "robustness": _image(
            robustness_svg(report.prompt_robustness, report.finetune_robustness),
            "metric drop under each perturbation, prompt and fine-tune",
        ),
    }
    tables = tables_by_topic(report)
    for topic, heading in TOPICS.items():
        said = report.about(topic)
        if not said and not tables.get(topic):
            continue
        body.append(f"<h2>{_h(heading)}</h2>")
        if said:
            body.append("<ul>" + "".join(_sentence(s) for s in said) + "</ul>")
        body += [html_table(t) for t in tables.get(topic, [])]
        body.append(plots.get(topic, ""))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>tunelab decision report: {_h(report.dataset)}</title><style>{_CSS}</style>"
        "</head><body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n"
    )

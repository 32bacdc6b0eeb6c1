"""Writing a decision report: the file's format from its suffix, and the report as JSON data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tunelab.engine.compare.report import comparison_to_dict
from tunelab.engine.errors import BadInputError
from tunelab.engine.report.records import DecisionReport

FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}


def report_format(path: Path | str) -> str:
    """'markdown' or 'html', from the file's suffix; checked before any work is done.

    Raises:
        BadInputError: another suffix, or a folder that does not exist.
    """
    target = Path(path)
    kind = FORMATS.get(target.suffix.lower())
    if kind is None:
        raise BadInputError(f"a report file ends in .md or .html, not {target.name!r}")
    if not target.parent.exists():
        raise BadInputError(f"the folder {str(target.parent)!r} does not exist; create it first")
    return kind


def render(report: DecisionReport, kind: str) -> str:
    if kind == "html":
        from tunelab.engine.report.html import render_html

        return render_html(report)
    from tunelab.engine.report.markdown import render_markdown

    return render_markdown(report)


def write_report(report: DecisionReport, path: Path | str) -> Path:
    """Write the report as Markdown (.md) or self-contained HTML (.html)."""
    target = Path(path)
    target.write_text(render(report, report_format(target)), encoding="utf-8")
    return target


def _plain(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def report_to_dict(report: DecisionReport) -> dict[str, Any]:
    """The report as plain JSON data: its numbers, the comparison as `tunelab compare --json`
    prints it, and the sentences."""
    return {
        "dataset": report.dataset,
        "split": report.split,
        "metric": report.metric,
        "selection": report.selection,
        "prompt_run_id": report.prompt_run.id,
        "finetune_run_id": report.finetune_run.id,
        "base_model": report.base_model,
        "prompt_effort": {**_plain(report.prompt_effort), "text": report.prompt_effort.text()},
        "finetune_effort": {
            **_plain(report.finetune_effort),
            "text": report.finetune_effort.text(),
        },
        "comparison": comparison_to_dict(report.comparison),
        "curve": _plain(report.curve),
        "prompt_robustness": _plain(report.prompt_robustness),
        "finetune_robustness": _plain(report.finetune_robustness),
        "sentences": [_plain(s) for s in report.sentences],
    }

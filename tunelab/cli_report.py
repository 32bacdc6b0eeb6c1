"""`tunelab report OUT.md|OUT.html`: the one-page decision report, prompt or fine-tune."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from tunelab.cli_common import console, emit_json, state
from tunelab.engine.report.records import TOPICS, DecisionReport


def print_sentences(report: DecisionReport) -> None:
    """Each section's sentences under its heading (the tables are in the file)."""
    for topic, heading in TOPICS.items():
        said = report.about(topic)
        if not said:
            continue
        console.print(Text(heading, style="bold"))
        for sentence in said:
            console.print(Text(f"  - {sentence.text}", style="dim" if sentence.missing else ""))


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        out: Path = typer.Argument(..., help="The report file: NAME.md or NAME.html."),
        dataset: str | None = typer.Option(
            None, "--dataset", "-d", help="Weigh runs on this dataset only."
        ),
        prompt_run: int | None = typer.Option(
            None, "--prompt-run", help="The prompt side (default: the best finished prompt run)."
        ),
        finetune_run: int | None = typer.Option(
            None,
            "--finetune-run",
            help="The fine-tune side (default: the best finished fine-tuned run).",
        ),
        seed: int = typer.Option(0, "--seed", help="Resampling seed (same seed, same numbers)."),
        json_output: bool = typer.Option(
            False, "--json", help="Also print the report's numbers and sentences as JSON."
        ),
    ) -> None:
        """Prompt or fine-tune? One page with the verdict, data curve, robustness and cost."""
        from tunelab.engine.report.build import build_report
        from tunelab.engine.report.output import report_format, report_to_dict, write_report

        report_format(out)  # a bad suffix or folder fails before any work
        report = build_report(
            state.store(),
            dataset=dataset,
            prompt_run=prompt_run,
            finetune_run=finetune_run,
            seed=seed,
        )
        write_report(report, out)
        if json_output:
            emit_json({**report_to_dict(report), "path": str(out)})
            return
        print_sentences(report)
        console.print(f"report written to {out}")

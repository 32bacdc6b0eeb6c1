"""`tunelab trend PROMPT | --job ID`: a metric across prompt versions or job checkpoints."""

from __future__ import annotations

import typer
from rich.table import Table

from tunelab.cli_common import console, emit_json, fail, state


def register(app: typer.Typer) -> None:
    @app.command("trend")
    def trend_command(
        prompt: str | None = typer.Argument(None, help="The prompt whose versions to follow."),
        job: int | None = typer.Option(None, "--job", help="A fine-tuning job's checkpoints."),
        metric: str | None = typer.Option(
            None, "--metric", help="The metric (default: the main metric of the runs)."
        ),
        dataset: str | None = typer.Option(
            None, "--dataset", help="Runs on this dataset (default: the latest run's)."
        ),
        split: str | None = typer.Option(
            None, "--split", help="Runs on this split (default: the latest run's)."
        ),
        json_output: bool = typer.Option(False, "--json", help="Print the trend as JSON."),
    ) -> None:
        """A metric across a prompt's versions or a job's checkpoints (latest run of each)."""
        from tunelab.engine.compare.trend import TrendRequest, trend_of

        if (prompt is None) == (job is None):
            fail("give a prompt name or --job ID, not both")
        request = TrendRequest(prompt, job, metric, dataset, split)
        trend = trend_of(state.store(), request)
        if json_output:
            emit_json(trend)
            return
        held = f"{trend.dataset}/{trend.split}" if trend.dataset else "no matching run"
        if trend.model:
            held += f", model {trend.model}"
        console.print(f"{trend.metric} across {trend.subject} ({held})", soft_wrap=True)
        table = Table()
        for name in ("point", trend.metric, "from", "run"):
            table.add_column(name, justify="right" if name == trend.metric else "left")
        for point in trend.points:
            table.add_row(
                point.label, "—" if point.value is None else f"{point.value:.4f}",
                {"run": "evaluation", "training": "training eval"}.get(point.source, "—"),
                "—" if point.run_id is None else str(point.run_id),
            )  # fmt: skip
        console.print(table)

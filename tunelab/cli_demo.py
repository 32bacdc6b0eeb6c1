"""`tunelab demo`: the built-in demo workspace, in the TUI or headless."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tunelab.cli_common import console, emit_json, state


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_command(
        directory: Path = typer.Option(
            Path("tunelab-demo"), "--dir", help="Where the demo workspace lives (made or reused)."
        ),
        headless: bool = typer.Option(
            False, "--headless", help="Run the whole flow here and print the verdict, no TUI."
        ),
        quick: bool = typer.Option(
            False, "--quick", help="Headless: a few rows and a few training steps (a smoke test)."
        ),
        json_output: bool = typer.Option(False, "--json", help="Headless: print JSON."),
    ) -> None:
        """Create (or reuse) the demo workspace: support-ticket routing, prompt vs fine-tune."""
        from tunelab.engine.demo import (
            FULL,
            QUICK,
            create_demo_workspace,
            run_headless_demo,
            tour_text,
        )

        workspace, created = create_demo_workspace(directory)
        state.workspace_path = workspace.root
        if not headless:
            if quick or json_output:
                console.print("--quick and --json only apply with --headless")
            from tunelab.tui.app import run_app

            run_app(workspace, welcome=tour_text(workspace))
            return
        say = (lambda _text: None) if json_output else console.print
        verb = "Created" if created else "Reusing"
        say(f"{verb} the demo workspace in {workspace.root}")
        result = run_headless_demo(workspace, QUICK if quick else FULL, report=say)
        if json_output:
            emit_json(
                {
                    "workspace": str(workspace.root),
                    "prompt_accuracy": result.prompt_accuracy,
                    "prompt_runs": result.prompt_runs,
                    "best_prompt": result.best_prompt,
                    "job_id": result.job_id,
                    "finetuned_model": result.finetuned_model,
                    "finetuned_run": result.finetuned_run,
                    "finetuned_accuracy": result.finetuned_accuracy,
                    "verdict": result.comparison.verdict,
                    "steps": [
                        {"name": s.name, "seconds": round(s.seconds, 2), "detail": s.detail}
                        for s in result.steps
                    ],
                }
            )
            return
        from tunelab.cli_compare import render_comparison

        table = Table("approach", "test accuracy", title="Prompting vs fine-tuning")
        for ref, acc in result.prompt_accuracy.items():
            marker = " (best prompt)" if ref == result.best_prompt else ""
            table.add_row(f"builtin + {ref}{marker}", f"{acc:.3f}")
        table.add_row(f"{result.finetuned_model} + route-ft@1", f"{result.finetuned_accuracy:.3f}")
        console.print(table)
        console.print(render_comparison(result.comparison))
        timing = Table("step", "seconds", "detail", title="Time per step")
        for step in result.steps:
            timing.add_row(step.name, f"{step.seconds:.1f}", step.detail)
        console.print(timing)
        console.print(
            f"Open it: tunelab --workspace {workspace.root}   "
            f"(or `tunelab compare {result.prompt_runs[result.best_prompt]} "
            f"{result.finetuned_run}` there)"
        )

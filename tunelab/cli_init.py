"""`tunelab init [DIR]`: create a workspace."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab.cli_common import console, emit_json
from tunelab.store import init_workspace


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        directory: Path = typer.Argument(Path("."), help="Directory for the workspace."),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Create a workspace (a .tunelab/ folder with its database) in DIR."""
        workspace, created = init_workspace(directory)
        if json_output:
            emit_json({"workspace": str(workspace.root), "created": created})
        elif created:
            console.print(f"Created tunelab workspace in {workspace.root}")
        else:
            console.print(f"{workspace.root} is already a tunelab workspace (schema up to date)")

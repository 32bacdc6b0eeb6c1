"""`tunelab backup [PATH]`: copy the workspace database with SQLite's online backup API."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab.cli_common import console, emit_json, fail, state
from tunelab.store import Store


def register(app: typer.Typer) -> None:
    @app.command("backup")
    def backup(
        path: Path | None = typer.Argument(
            None, help="File or folder for the copy (default: .tunelab/backups/, a new name)."
        ),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Copy the workspace database (safe while jobs or the TUI write to it)."""
        workspace = state.workspace()
        # No migration and no integrity gate: a copy is what a damaged or old file needs first.
        with Store(workspace.db_path, migrate_schema=False) as store:
            made = store.backup(path)
        if made.problems:
            fail(
                f"copied {workspace.db_path} to {made.path}, but the copy has the database's "
                f"damage ({made.problems[0]}); recover with `sqlite3 {workspace.db_path} "
                ".recover | sqlite3 recovered.db`"
            )
        if json_output:
            emit_json({"path": str(made.path), "size_bytes": made.size_bytes})
        else:
            console.print(
                f"Backed up {workspace.db_path} ({made.size_bytes:,} bytes) to {made.path}"
            )

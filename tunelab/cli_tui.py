"""`tunelab` with no command (and `tunelab tui`): open the TUI on the workspace."""

from __future__ import annotations

import typer

from tunelab.cli_common import state


def open_tui() -> None:
    workspace = state.workspace()
    # Imported here: the TUI pulls in Textual, which `tunelab --help` should not pay for.
    from tunelab.tui.app import run_app

    run_app(workspace)


def register(app: typer.Typer) -> None:
    @app.command("tui")
    def tui_command() -> None:
        """Open the TUI on the workspace (same as `tunelab` with no command)."""
        open_tui()

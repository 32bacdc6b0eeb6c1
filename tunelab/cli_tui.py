"""`tunelab` with no command (and `tunelab tui`): open the TUI on the workspace, in this terminal
or, with `--web`, in a browser through textual-serve."""

from __future__ import annotations

import getpass
import shlex
import socket
import sys

import typer

from tunelab.cli_common import console, state
from tunelab.engine.errors import BadInputError

DEFAULT_PORT = 8000
LOCAL_HOST = "127.0.0.1"
"""`--web` listens here unless `--host` says otherwise: only this machine (or an SSH tunnel)
can reach it."""


def open_tui() -> None:
    workspace = state.workspace()
    # Imported here: the TUI pulls in Textual, which `tunelab --help` should not pay for.
    from tunelab.tui.app import run_app

    run_app(workspace)


def forward_line(port: int, user: str | None = None, host: str | None = None) -> str:
    """The SSH command that brings the served TUI to a laptop's `localhost:PORT`."""
    login = f"{user or getpass.getuser()}@{host or socket.gethostname()}"
    return f"ssh -L {port}:{LOCAL_HOST}:{port} {login}"


def web_command(workspace_root: str) -> str:
    """The command textual-serve runs for each browser tab: this Python, the same workspace."""
    return shlex.join([sys.executable, "-m", "tunelab", "--workspace", workspace_root, "tui"])


def serve_web(port: int, host: str) -> None:
    """Serve the TUI over HTTP and WebSocket (textual-serve) until Ctrl-C."""
    if not 0 < port < 65536:
        raise BadInputError(f"--port must be between 1 and 65535, not {port}")
    workspace = state.workspace()
    from textual_serve.server import Server  # aiohttp: only for --web

    url = f"http://{host}:{port}"
    console.print(f"Serving the tunelab TUI for {workspace.root} at {url}", soft_wrap=True)
    if host in (LOCAL_HOST, "localhost"):
        console.print(
            f"From another machine, forward the port, then open http://localhost:{port}:",
            soft_wrap=True,
        )
        console.print(f"  {forward_line(port)}", soft_wrap=True)
    else:
        console.print(f"Listening on {host}: anyone who can reach it gets the workspace.")
    Server(web_command(str(workspace.root)), host=host, port=port, title="tunelab").serve()


def register(app: typer.Typer) -> None:
    @app.command("tui")
    def tui_command(
        web: bool = typer.Option(False, "--web", help="Serve the TUI to a browser instead."),
        port: int = typer.Option(DEFAULT_PORT, "--port", help="Port for --web."),
        host: str = typer.Option(
            LOCAL_HOST,
            "--host",
            help="Address for --web to listen on (default: this machine only).",
        ),
    ) -> None:
        """Open the TUI on the workspace (same as `tunelab` with no command); --web serves it
        to a browser (textual-serve), on 127.0.0.1 unless --host is given."""
        if web:
            serve_web(port, host)
        else:
            open_tui()

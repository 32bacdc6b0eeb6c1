"""`tunelab serve MODEL`: any workspace model behind an OpenAI-compatible API, until Ctrl-C.

The engine (and torch) are imported only when the command runs.
"""

from __future__ import annotations

import typer

from tunelab.cli_common import console, err_console, state


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_command(
        model: str = typer.Argument(..., help="Model name, 'builtin', a folder or a hub id."),
        prompt: str | None = typer.Option(
            None,
            "--prompt",
            "-p",
            help="Apply this prompt version (NAME, NAME@VERSION, NAME:LABEL) to each request: "
            "its template (one variable, filled with the request's text) and settings.",
        ),
        port: int = typer.Option(8000, "--port", help="TCP port; 0 picks a free one."),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Address to bind; loopback unless told otherwise."
        ),
        token: str | None = typer.Option(
            None,
            "--token",
            envvar="TUNELAB_SERVE_TOKEN",
            help="Bearer token clients must send (or set TUNELAB_SERVE_TOKEN).",
        ),
    ) -> None:
        """Serve a model with /v1/models, /v1/chat/completions and /v1/completions (streaming)."""
        from tunelab.engine.models.loading import load_model
        from tunelab.engine.models.sources import resolve_model
        from tunelab.engine.serving.server import LOOPBACK, ModelServer, ServeConfig

        config = ServeConfig(host=host, port=port, token=token)
        store = state.store()
        version = store.get_prompt_version(prompt) if prompt is not None else None
        record = resolve_model(store, model)
        loaded = load_model(store, record)
        server = ModelServer(loaded, record.name, config, version)
        if host not in LOOPBACK and token is None:
            err_console.print(
                f"[yellow]warning:[/] serving on {host} with no --token: anyone who can reach "
                "this address can use the model"
            )
        # Flushed at once: scripts and tests wait for this line to know the port.
        console.print(
            f"Serving {record.name!r} at {server.base_url} (Ctrl-C stops)", soft_wrap=True
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.httpd.server_close()

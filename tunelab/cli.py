"""The `tunelab` command: a thin front end over the engine, beside the TUI.

Command groups live in `cli_*.py` modules and register themselves here. Nothing in
this module imports torch, so `tunelab --help` answers at once; plain `tunelab`, which opens
the TUI, does not import the command modules at all (`root_app` is the app without them,
`app` the one with every command).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from tunelab import __version__
from tunelab.cli_common import err_console, exit_code_for, quiet_third_party, state, user_error

root_app = typer.Typer(
    name="tunelab",
    help="Prompt-engineer or fine-tune? A terminal workbench that answers with evidence.\n\n"
    "Run with no command to open the TUI on the workspace here.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tunelab {__version__}")
        raise typer.Exit()


@root_app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    workspace: Path | None = typer.Option(
        None,
        "--workspace",
        "-w",
        envvar="TUNELAB_WORKSPACE",
        help="Workspace directory (default: the nearest parent holding .tunelab/).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Show the warnings, logs and progress bars of transformers, datasets and torch.",
    ),
) -> None:
    state.workspace_path = workspace
    quiet_third_party(verbose)
    if ctx.invoked_subcommand is None:
        from tunelab.cli_tui import open_tui

        open_tui()


def _register_commands() -> None:
    from tunelab import (
        cli_backup,
        cli_compare,
        cli_config,
        cli_curve,
        cli_dataset,
        cli_demo,
        cli_eval,
        cli_feedback,
        cli_init,
        cli_judge,
        cli_model,
        cli_optimize,
        cli_prompt,
        cli_report,
        cli_robustness,
        cli_serve,
        cli_sweep,
        cli_trend,
        cli_tui,
        cli_tune,
    )

    for module in (
        cli_init, cli_dataset, cli_prompt, cli_model, cli_eval, cli_feedback, cli_tune,
        cli_curve,
        cli_compare, cli_optimize, cli_demo, cli_tui, cli_config, cli_backup, cli_serve,
        cli_sweep,
        cli_report,
        cli_judge,
        cli_robustness,
        cli_trend,
    ):  # fmt: skip
        module.register(root_app)


_registered = False


def registered_app() -> typer.Typer:
    """The `tunelab` app with every command group registered (once)."""
    global _registered
    if not _registered:
        _registered = True
        _register_commands()
    return root_app


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # `from tunelab.cli import app`: the full command tree
        return registered_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def opens_tui(args: list[str]) -> bool:
    """Whether `tunelab ARGS` opens the TUI: no command named and no `--help` asked for."""
    values = iter(args)
    for arg in values:
        if arg in ("-w", "--workspace"):
            next(values, None)  # the option's value
        elif arg == "--help" or not arg.startswith("-"):
            return False
    return True


def main() -> None:
    """Entry point: user errors print one line and exit 2 (bad input) or 1; never a traceback."""
    # Everything tunelab writes (datasets cache, logs, checkpoints, job folders) and every
    # process it starts is readable by its owner only.
    os.umask(0o077)
    cli = root_app if opens_tui(sys.argv[1:]) else registered_app()
    try:
        cli(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except BaseException as raised:
        exc = user_error(raised)
        code = exit_code_for(exc)
        if code is None or os.environ.get("TUNELAB_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(code)

"""`tunelab config show|set`: the workspace config file, where prices live.

The same file (`.tunelab/config.toml`) is read by `tunelab compare` and the TUI's Compare
screen, so a price set here is the price everywhere.
"""

from __future__ import annotations

import typer
from rich.table import Table

from tunelab.cli_common import console, emit_json, state
from tunelab.store.workspace_config import config_items, config_path, load_config, set_value

config_app = typer.Typer(
    help="Show or set workspace settings (prices for cost and break-even).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    @config_app.command("show")
    def config_show(
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Show every workspace setting, its value and what it means."""
        path = config_path(state.workspace().dir)
        items = config_items(load_config(path))
        if json_output:
            emit_json({key: value for key, value, _ in items})
            return
        table = Table("key", "value", "meaning", title=str(path), title_justify="left")
        for key, value, meaning in items:
            table.add_row(key, f"{value:g}", meaning)
        console.print(table)

    @config_app.command("set")
    def config_set(
        key: str = typer.Argument(..., help="The setting, e.g. price.gpu_hour."),
        value: str = typer.Argument(..., help="Its new value, e.g. 2.5."),
    ) -> None:
        """Set one workspace setting, e.g. `tunelab config set price.gpu_hour 2.5`."""
        path = config_path(state.workspace().dir)
        config = set_value(path, key, value)
        current = dict((k, v) for k, v, _ in config_items(config))
        console.print(f"{key} = {current[key]:g} ({path})")

    app.add_typer(config_app, name="config")

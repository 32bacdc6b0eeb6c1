"""Shared plumbing for CLI commands: workspace lookup, JSON output, and one-line errors."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.store import Store, StoreError, Workspace, find_workspace

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class CliState:
    """What the top-level callback learned: where the workspace is."""

    workspace_path: Path | None = None
    _store: Store | None = None

    def workspace(self) -> Workspace:
        return find_workspace(self.workspace_path)

    def store(self) -> Store:
        if self._store is None:
            self._store = self.workspace().open_store()
        return self._store


state = CliState()


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print a one-line error and exit; 2 means bad input, 1 a failure."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False) + "\n")


def exit_code_for(exc: BaseException) -> int | None:
    """Map a user-facing error to its exit code; None for a real bug (shown as a traceback)."""
    if isinstance(exc, BadInputError | StoreError):
        return EXIT_BAD_INPUT
    if isinstance(exc, EngineError):
        return EXIT_FAILURE
    return None

"""Shared plumbing for CLI commands: workspace lookup, JSON output, and one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.store import DatabaseGuard, Store, StoreError, Workspace, find_workspace

if TYPE_CHECKING:
    # typer vendors its own click; its group's hooks take that click's types.
    from typer._click.core import Command, Context

    from tunelab.engine.training.slurm import SlurmOptions

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

THIRD_PARTY_MODULES = (
    "transformers", "datasets", "peft", "torch", "accelerate", "huggingface_hub", "tokenizers",
    "safetensors", "trl", "tqdm",
)  # fmt: skip
"""Libraries whose warnings, logs and progress bars stay off stderr unless --verbose."""

_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "HF_HUB_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' bars ("Writing model shards") too
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}


def quiet_third_party(verbose: bool) -> None:
    """Keep library warnings, logs and progress bars off stderr, unless `verbose`.

    The settings go into the environment before any library is imported, so job workers
    started from here inherit them (their log files still get tracebacks and our messages).
    A variable the user set is left as it is.
    """
    if verbose:
        os.environ["TUNELAB_VERBOSE"] = "1"
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")  # the loader's default: error
        return
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    pattern = "({})(\\.|$)".format("|".join(THIRD_PARTY_MODULES))
    warnings.filterwarnings("ignore", module=pattern)


def user_error(exc: BaseException) -> BaseException:
    """A SQLite failure that escaped the store, as the store's one-line error where it is
    about the database file (full, read-only, damaged); any other exception as it is."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return exc
    path = None
    try:
        path = state.workspace().db_path
    except StoreError:
        pass
    return DatabaseGuard(path).translate(exc) or exc


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


def slurm_options(
    on: str, partition: str, gpus_per_node: int, nodes: int, time_limit: str,
    slurm_arg: list[str], allow_local_fs: bool,
) -> SlurmOptions | None:  # fmt: skip
    """The cluster flags `tune`, `sweep`, `curve`, `eval` and `optimize` share
    (`cluster_option`), as Slurm options (None: run locally)."""
    from tunelab.engine.training.slurm import SlurmOptions, parse_slurm_args

    if on not in ("local", "slurm"):
        fail(f"--on must be local or slurm, not {on!r}")
    if on == "slurm":
        return SlurmOptions(partition, gpus_per_node, nodes, time_limit,
                            parse_slurm_args(slurm_arg), allow_local_fs)  # fmt: skip
    if partition or gpus_per_node or nodes != 1 or time_limit or slurm_arg:
        fail("--partition, --gpus-per-node, --nodes, --time and --slurm-arg need --on slurm")
    return None


_CLUSTER_FLAGS: dict[str, tuple[Any, str, str]] = {
    "on": ("local", "--on", "Where {each} trains: local (a detached worker) or slurm (sbatch)."),
    "partition": ("", "--partition", "Slurm partition (its default when empty)."),
    "gpus_per_node": (0, "--gpus-per-node", "GPUs per Slurm node."),
    "nodes": (1, "--nodes", "Slurm nodes{per} (more than one: data parallel)."),
    "time_limit": ("", "--time", "Slurm time limit{per}, e.g. 2:00:00."),
    "slurm_arg": ([], "--slurm-arg", "Extra sbatch option KEY=VALUE (repeatable), e.g. mem=8G."),
    "slurm_allow_local_fs": (
        False,
        "--slurm-allow-local-fs",
        "Submit even from a workspace under /tmp or on a tmpfs (a cluster that is this machine).",
    ),
}
"""The cluster flags `slurm_options` reads, by parameter name: default, flag, help."""


def cluster_option(name: str, per: str = "") -> Any:
    """The typer option for one cluster flag (see `_CLUSTER_FLAGS`), in the Cluster panel;
    `per` names what one submission is (`trial`, `job`) where the command launches many."""
    default, flag, help_text = _CLUSTER_FLAGS[name]
    each = f"each {per}" if per else "it"
    text = help_text.format(each=each, per=f" per {per}" if per else "")
    return typer.Option(default, flag, help=text, rich_help_panel="Cluster")


def default_command_group(default: str) -> type[TyperGroup]:
    """A typer group class whose first argument, when it is neither a subcommand nor an
    option, goes to the `default` subcommand (`tunelab judge 3` is `tunelab judge score 3`)."""

    class DefaultCommandGroup(TyperGroup):
        def resolve_command(
            self, ctx: Context, args: list[str]
        ) -> tuple[str | None, Command | None, list[str]]:
            if args and args[0] not in self.commands and not args[0].startswith("-"):
                args = [default, *args]
            return super().resolve_command(ctx, args)

    return DefaultCommandGroup


def stop_on_sigint() -> tuple[list[bool], Any]:
    """First Ctrl-C asks the run to stop after the current chunk; a second one aborts."""
    flag = [False]
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag[0]:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag[0] = True
        err_console.print("stopping after the current batch (Ctrl-C again to abort)")

    signal.signal(signal.SIGINT, handler)
    return flag, previous

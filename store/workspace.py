"""Workspaces: a directory holding `.tunelab/`, found the way git finds its repository."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError
from .store import Store

WORKSPACE_DIR = ".tunelab"
DB_NAME = "tunelab.db"
ENV_VAR = "TUNELAB_WORKSPACE"


class NoWorkspaceError(StoreError):
    pass


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def dir(self) -> Path:
        return self.root / WORKSPACE_DIR

    @property
    def db_path(self) -> Path:
        return self.dir / DB_NAME

    @property
    def models_dir(self) -> Path:
        return self.dir / "models"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def cache_dir(self) -> Path:
        return self.dir / "cache"

    @property
    def jobs_dir(self) -> Path:
        return self.dir / "jobs"

    def open_store(self) -> Store:
        store = Store(self.db_path)
        _owner_only(self.db_path)
        return store

    def ensure_dirs(self) -> None:
        for d in (self.dir, self.models_dir, self.logs_dir, self.cache_dir, self.jobs_dir):
            d.mkdir(parents=True, exist_ok=True)
            _owner_only(d)


def _owner_only(path: Path) -> None:
    """Workspace files hold prompts and data: readable by their owner only.

    Only group and other bits are taken away: a database its owner made read-only stays so.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
    except OSError:
        pass


def init_workspace(directory: Path | str) -> tuple[Workspace, bool]:
    """Create (or reuse) a workspace in `directory`; returns it and whether it was new."""
    root = Path(directory).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} is a file; give a directory for the workspace")
    root.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(root)
    created = not workspace.db_path.exists()
    old_umask = os.umask(0o077)
    try:
        workspace.ensure_dirs()
        workspace.open_store().close()
        for suffix in ("-wal", "-shm"):
            _owner_only(Path(str(workspace.db_path) + suffix))
    finally:
        os.umask(old_umask)
    return workspace, created


def find_workspace(explicit: Path | str | None = None, start: Path | None = None) -> Workspace:
    """The workspace named by `explicit` or `$TUNELAB_WORKSPACE`, else the nearest parent
    holding `.tunelab/`."""
    named = explicit or os.environ.get(ENV_VAR)
    if named:
        root = Path(named).expanduser().resolve()
        if not _is_workspace(root):
            raise NoWorkspaceError(
                f"{root} is not a tunelab workspace; create it with `tunelab init {named}`"
            )
        return Workspace(root)
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if _is_workspace(candidate):
            return Workspace(candidate)
    below = _workspaces_below(here)
    if below:  # e.g. `tunelab demo` made ./tunelab-demo and the user stayed here
        names = " or ".join(f"--workspace {name}" for name in below[:3])
        raise NoWorkspaceError(
            f"no tunelab workspace in {here} or its parents, but one below it; pass {names} "
            f"(or cd into it)"
        )
    raise NoWorkspaceError(
        f"no tunelab workspace in {here} or its parents; run `tunelab init` here, "
        "or pass --workspace PATH"
    )


def _workspaces_below(folder: Path) -> list[str]:
    """Names of the direct subfolders of `folder` that are workspaces, sorted."""
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    return [p.name for p in children if _is_workspace(p)]


def _is_workspace(folder: Path) -> bool:
    return (folder / WORKSPACE_DIR / DB_NAME).exists()

"""Copies of the workspace database made with SQLite's online backup API.

A copy is written under a temporary name and renamed when complete, so a disk that fills
mid-copy never leaves a file that looks like a good backup.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

from .connection import DatabaseGuard, backups_dir
from .errors import StoreError


@dataclass(frozen=True)
class Backup:
    """A finished copy of the database."""

    path: Path
    size_bytes: int
    problems: list[str]
    """What `PRAGMA quick_check` found in the copy (the source's damage); [] when sound."""


def default_backup_path(db_path: Path | str, label: str = "") -> Path:
    """A new, unused name in the backups folder beside `db_path`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    stem = f"tunelab-{label + '-' if label else ''}{stamp}"
    folder = backups_dir(db_path)
    candidate = folder / f"{stem}.db"
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{n}.db"
        n += 1
    return candidate


def backup_database(source: Database, destination: Path | str) -> Backup:
    """Copy the database `source` is connected to into `destination` (a file or a folder).

    Raises:
        StoreError: the destination exists, or cannot be written (full, read-only).
    """
    dest = Path(destination).expanduser()
    if dest.is_dir():
        dest = dest / default_backup_path(dest / "x.db").name
    if dest.exists():
        raise StoreError(f"{dest} already exists; give a new file name or a folder")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    guard = DatabaseGuard(dest)
    target = None
    try:
        with guard.reading():
            target = sqlite3.connect(str(partial))
            source.conn.backup(target)
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            try:
                rows = [str(r[0]) for r in target.execute("PRAGMA quick_check").fetchall()]
            except sqlite3.DatabaseError as exc:
                rows = [str(exc)]
            target.close()
            target = None
        os.chmod(partial, 0o600)
        os.replace(partial, dest)
    except OSError as exc:
        raise StoreError(f"could not write the backup {dest} ({exc.strerror or exc})") from exc
    finally:
        if target is not None:
            target.close()
        partial.unlink(missing_ok=True)
    return Backup(dest, dest.stat().st_size, [] if rows == ["ok"] else rows)

"""The store facade: the only way the rest of tunelab reads or writes the workspace database."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import tempfile
import weakref
from pathlib import Path

from .backup import Backup, backup_database, default_backup_path
from .cache import CacheStore
from .change_watch import ChangeWatch
from .claims import RunClaimStore
from .connection import ConnectionPool, DatabaseGuard, check_schema, damage_marker, migrate
from .curves import CurveStore
from .datasets import DatasetStore
from .errors import CorruptDatabaseError, StoreError
from .feedback import FeedbackStore
from .jobs import JobStore
from .judgements import JudgementStore
from .models import ModelStore
from .prompts import PromptStore
from .robustness import RobustnessStore
from .samples import SampleStore
from .sweeps import SweepStore


class Store(
    PromptStore,
    FeedbackStore,
    DatasetStore,
    ModelStore,
    RunClaimStore,
    JobStore,
    CacheStore,
    CurveStore,
    RobustnessStore,
    SweepStore,
    JudgementStore,
    SampleStore,
):
    """Typed access to one workspace database; safe to share across threads.

    Each thread gets its own sqlite connection, opened on first use. Opening checks the
    pages (`PRAGMA quick_check`) when the last run or job ended uncleanly, and backs the
    file up before applying schema migrations to a database that holds data.
    """

    def __init__(self, path: Path | str | None = None, *, migrate_schema: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self._scratch: weakref.finalize[..., Store] | None = None
        if path is None:
            # A throwaway store is a WAL file in a private temporary folder, not a shared-cache
            # in-memory database: shared cache locks whole tables and fails at once
            # ("database table is locked", no busy timeout) when two threads overlap, where a
            # file waits like a workspace does.
            folder = tempfile.mkdtemp(prefix="tunelab-scratch-")
            self._scratch = weakref.finalize(self, _remove_scratch, folder, os.getpid())
            file = Path(folder) / "scratch.db"
        else:
            file = Path(path)
        self._pool = ConnectionPool(file, DatabaseGuard(self.path))
        self._watch = ChangeWatch(file)
        try:
            self._keepalive = self._pool.get()
            if migrate_schema:
                check_schema(self._keepalive, path)
                self._check_integrity()
                migrate(self._keepalive, path, self._backup_before_migrating, self._pool.guard)
        except BaseException:
            self.close()
            raise

    @classmethod
    def memory(cls) -> Store:
        """A fresh throwaway store (for tests), removed when closed or collected."""
        return cls(None)

    def backup(self, destination: Path | str | None = None) -> Backup:
        """Copy the database with SQLite's online backup API (safe while others write).

        Args:
            destination: a file or folder; default a new file in `.tunelab/backups/`.
        """
        if self.path is None:
            raise StoreError("a throwaway store has no file to back up")
        return backup_database(self.db, destination or default_backup_path(self.path))

    def _backup_before_migrating(self, pending: list[str]) -> None:
        assert self.path is not None
        problems = self.quick_check()
        if problems:
            raise self._damaged(problems, "before upgrading its schema")
        try:
            self.backup(default_backup_path(self.path, f"before-{pending[0]}"))
        except StoreError as exc:
            raise StoreError(
                f"could not back up {self.path} before upgrading its schema ({exc}); "
                "nothing was changed: free some space (or make the folder writable) and retry"
            ) from exc

    def _check_integrity(self) -> None:
        """Check every page when the database was found damaged before (repaired since?) or
        when the newest run or job was left by a dead process (checked once per such end).

        A damaged database is refused (with how to recover) before anything reads or writes it;
        `tunelab backup` opens it without this check.
        """
        if self.path is None:
            return
        marker = damage_marker(self.path)
        if marker.exists():
            problems = self.quick_check()
            if problems:
                raise self._pool.guard.mark_damaged(f"{self.path} is damaged ({problems[0]})")
            marker.unlink(missing_ok=True)  # repaired or replaced
            return
        key = self._unclean_end()
        if key is None:
            return
        checked = Path(f"{self.path}-checked")
        try:
            if checked.read_text() == key:
                return
        except OSError:
            pass
        problems = self.quick_check()
        if problems:
            raise self._damaged(problems, f"after {key.split(';')[0]} ended uncleanly")
        try:
            fd = os.open(checked, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(key)
        except OSError:
            pass  # a read-only folder: check again next time

    def _unclean_end(self) -> str | None:
        """'run N' / 'job N' when the newest run or job was left by a dead process, else None."""
        found = []
        for table in ("runs", "jobs"):
            try:
                row = self._one(f"SELECT id, status, pid, host, error FROM {table} "
                                "ORDER BY id DESC LIMIT 1")  # fmt: skip
            except sqlite3.OperationalError:  # an old schema without the columns
                continue
            if row is None:
                continue
            vanished = row["status"] == "running" and not _alive(row["pid"], row["host"])
            if vanished or row["status"] == "interrupted" or "vanished" in (row["error"] or ""):
                found.append(f"{table[:-1]} {row['id']} ({row['status']})")
        return "; ".join(found) or None

    def _damaged(self, problems: list[str], when: str) -> CorruptDatabaseError:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        finding = f"{self.path} failed its integrity check {when}: {problems[0]}{more}"
        return self._pool.guard.mark_damaged(finding)

    def data_version(self) -> int:
        """Changes whenever anyone commits to the database (this process's other threads,
        another session, the CLI, a job's worker); cheap enough to poll every second."""
        return self._watch.version()

    def close(self) -> None:
        self._watch.close()
        self._pool.close_all()
        if self._scratch is not None:
            self._scratch()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_scratch(folder: str, owner_pid: int) -> None:
    """Remove a throwaway store's folder, only from the process that made it (not a fork)."""
    if os.getpid() == owner_pid:
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int | None, host: str | None) -> bool:
    """Whether a recorded process may still be running (unknown counts as alive)."""
    if pid is None or host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True

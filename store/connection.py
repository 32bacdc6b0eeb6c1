"""Opening the workspace database: WAL, busy timeout, foreign keys, one connection per thread."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from .errors import (
    CorruptDatabaseError,
    DatabaseIOError,
    DiskFullError,
    ReadOnlyDatabaseError,
    SchemaTooNewError,
    StoreError,
)
from .migrations import KNOWN_MIGRATIONS, migrations

BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another writer before giving up; jobs, TUI and CLI share the file."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def loads(text: str | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    return json.loads(text)


def open_database(path: Path | str, guard: DatabaseGuard | None = None) -> Database:
    """Open (and configure) one connection; the caller must use it from one thread only."""
    guard = guard or DatabaseGuard(path)
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        db = Database(conn, execute_plugins=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise guard.opening_error(exc) from exc
    return db


def check_schema(db: Database, path: Path | str | None) -> None:
    """Refuse a database that a newer tunelab migrated; never migrate backwards."""
    guard = DatabaseGuard(path)
    with guard.reading():
        if not db[migrations.migrations_table].exists():
            return
        applied = {m.name for m in migrations.applied(db)}
    unknown = sorted(applied - KNOWN_MIGRATIONS)
    if unknown:
        raise SchemaTooNewError(
            f"{path} was written by a newer tunelab (unknown schema changes: "
            f"{', '.join(unknown)}); upgrade tunelab to open it. The file was left untouched."
        )


def pending_migrations(db: Database) -> list[str]:
    """Names of the migrations this tunelab would apply; reads only."""
    return [m.name for m in migrations.pending(db)]


def has_data(db: Database) -> bool:
    """Whether any table other than the migrations record holds a row."""
    names = [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name != ?",
            [migrations.migrations_table],
        )
    ]
    return any(db.execute(f"SELECT 1 FROM [{name}] LIMIT 1").fetchone() for name in names)


def migrate(
    db: Database,
    path: Path | str | None,
    before_migrating: Callable[[list[str]], None] | None = None,
    guard: DatabaseGuard | None = None,
) -> None:
    """Apply pending migrations; applying twice is a no-op.

    Args:
        before_migrating: called with the pending names first (the store backs up there),
            only when there are some and the database already holds data.
    """
    check_schema(db, path)
    guard = guard or DatabaseGuard(path)
    with guard.reading():
        pending = pending_migrations(db)
        if not pending:
            return
        guard.refuse_writes()
        if before_migrating is not None and has_data(db):
            before_migrating(pending)
    try:
        migrations.apply(db)
    except sqlite3.DatabaseError as exc:
        error = guard.translate(exc)
        if error is not None and not isinstance(error, CorruptDatabaseError):
            raise error from exc
        raise CorruptDatabaseError(
            f"{path} could not be migrated ({exc}); it was left untouched"
        ) from exc


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL = 8, 10, 11, 13
_SQLITE_CANTOPEN, _SQLITE_NOTADB, _SQLITE_READONLY_DIRECTORY = 14, 26, 1544


class DatabaseGuard:
    """Turns SQLite's failures on one database file into one-line store errors, and stops
    every write once the file is seen damaged, so a corrupt database is never made worse."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path is not None else None
        self.damaged: CorruptDatabaseError | None = None

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Translate the SQLite errors raised in the block."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            error = self.translate(exc)
            if error is None:
                raise
            raise error from exc

    def mark_damaged(self, finding: str) -> CorruptDatabaseError:
        """Stop every later write through this guard; returns the error that says how to recover.

        Args:
            finding: what is wrong, naming the file ("PATH is damaged (…)").
        """
        where = self.path if self.path is not None else "the database"
        if self.path is not None:  # later processes refuse writes too, until it is repaired
            try:
                fd = os.open(damage_marker(self.path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(finding)
            except OSError:
                pass
        self.damaged = CorruptDatabaseError(
            f"{finding}; tunelab stopped writing to it. Recover what is readable with "
            f"`sqlite3 {where} .recover | sqlite3 recovered.db` and put recovered.db in its "
            f"place, or restore a copy{_backups_hint(self.path)}"
        )
        return self.damaged

    def refuse_writes(self) -> None:
        if self.damaged is not None:
            raise self.damaged

    def opening_error(self, exc: sqlite3.DatabaseError) -> StoreError:
        """The store error for a failure while opening, where every failure is the file's."""
        return self.translate(exc) or CorruptDatabaseError(
            f"{self.path} could not be opened ({exc}); it was left untouched"
        )

    def translate(self, exc: sqlite3.DatabaseError) -> StoreError | None:
        """The store error for `exc`, or None when it is not about the file (a bug, a lock)."""
        message = str(exc)
        text = message.lower()
        code = _primary_code(exc)
        extended = getattr(exc, "sqlite_errorcode", None)
        where = self.path if self.path is not None else "the throwaway database"
        if code == _SQLITE_NOTADB or "file is not a database" in text:
            return CorruptDatabaseError(
                f"{where} is not a readable SQLite database ({message}); it was left untouched. "
                f"If it held your work, restore a copy{_backups_hint(self.path)}; otherwise "
                "move it aside and run `tunelab init` to start a new one"
            )
        if code == _SQLITE_CORRUPT or "malformed" in text:
            return self.mark_damaged(f"{where} is damaged ({message})")
        if code == _SQLITE_FULL or "disk is full" in text or _disk_full(self.path):
            return DiskFullError(
                f"the disk holding {where} is full ({message}); SQLite rolled back the "
                "unfinished change, so the stored data is as it was: free some space and retry"
            )
        readonly = code in (_SQLITE_READONLY, _SQLITE_CANTOPEN) or "readonly" in text
        if readonly and self.path is not None:
            folder = self.path.parent
            if extended == _SQLITE_READONLY_DIRECTORY or not os.access(folder, os.W_OK):
                return ReadOnlyDatabaseError(
                    f"the folder {folder} is read-only, so SQLite cannot create its journal "
                    f"files beside {self.path.name}; nothing in it was changed: make the folder "
                    f"writable (`chmod u+w {folder}`) or copy the workspace somewhere writable"
                )
            if self.path.exists() and not os.access(self.path, os.W_OK):
                files = [str(self.path)] + [
                    f"{self.path}{suffix}"
                    for suffix in ("-wal", "-shm")
                    if Path(f"{self.path}{suffix}").exists()
                ]
                return ReadOnlyDatabaseError(
                    f"{self.path} is read-only ({message}); the data is untouched and can "
                    f"be read, but changing it needs `chmod u+w {' '.join(files)}`"
                )
            for suffix in ("-wal", "-shm"):
                side = Path(f"{self.path}{suffix}")
                if side.exists() and not os.access(side, os.W_OK):
                    return ReadOnlyDatabaseError(
                        f"{side} is read-only, so SQLite cannot use the database; the data is "
                        f"intact: make it writable (`chmod u+w {side}`)"
                    )
            return ReadOnlyDatabaseError(
                f"{where} cannot be written ({message}); the database is intact: check the "
                "file's and its folder's permissions and the mount"
            )
        if code == _SQLITE_IOERR:
            return DatabaseIOError(
                f"reading or writing {where} failed ({message}); the disk may be failing or "
                "was unmounted: make a copy with `tunelab backup` now, then check the disk"
            )
        return None


def _disk_full(path: Path | None) -> bool:
    if path is None:
        return False
    try:
        return shutil.disk_usage(path.parent).free == 0
    except OSError:
        return False


def _backups_hint(path: Path | None) -> str:
    """' from FOLDER (newest NAME)' when tunelab has made backups of `path`, else advice."""
    if path is None:
        return ""
    folder = backups_dir(path)
    copies = sorted(folder.glob("*.db")) if folder.is_dir() else []
    if copies:
        return f" from {folder} (newest: {copies[-1].name})"
    return " you made with `tunelab backup`"


def damage_marker(path: Path | str) -> Path:
    """The file that records, for the next processes, that the database was found damaged."""
    return Path(f"{path}-damaged")


def backups_dir(path: Path | str) -> Path:
    """Where automatic and default backups of the database at `path` go."""
    return Path(path).parent / "backups"


class ConnectionPool:
    """Hands each thread its own connection to the same database (sqlite3's same-thread rule)."""

    def __init__(self, path: Path | str, guard: DatabaseGuard | None = None) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Database] = []
        self._pid = os.getpid()
        self.guard = guard or DatabaseGuard(path)
        """Shared by every thread's connection: one damaged read stops all writes."""

    def get(self) -> Database:
        db: Database | None = getattr(self._local, "db", None)
        if db is None or self._pid != os.getpid():
            self._pid = os.getpid()
            db = open_database(self.path, self.guard)
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def close_all(self) -> None:
        with self._lock:
            for db in self._all:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()


@contextmanager
def write_transaction(db: Database, guard: DatabaseGuard | None = None) -> Iterator[Database]:
    """A write transaction that takes the write lock up front (BEGIN IMMEDIATE).

    A deferred BEGIN that reads and then writes can fail with "database is locked" even
    with a busy timeout; IMMEDIATE waits for the lock instead. With a `guard`, SQLite's
    failures become one-line store errors and a damaged database refuses the write.
    """
    guard = guard or DatabaseGuard(None)
    guard.refuse_writes()
    with guard.reading():
        if db.conn.in_transaction:
            with db.atomic():
                yield db
            return
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            with db.atomic():
                yield db
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
        else:
            db.conn.execute("COMMIT")

"""Opening the workspace database: WAL, busy timeout, foreign keys, one connection per thread."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from .errors import CorruptDatabaseError, SchemaTooNewError
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


def open_database(path: Path | str | None, memory_name: str | None = None) -> Database:
    """Open (and configure) one connection; the caller must use it from one thread only."""
    try:
        if memory_name is not None:
            conn = sqlite3.connect(
                f"file:{memory_name}?mode=memory&cache=shared", uri=True, timeout=BUSY_TIMEOUT_S
            )
        else:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        db = Database(conn, execute_plugins=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if memory_name is None:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabaseError(
            f"{path} is not a readable tunelab database ({exc}); move it aside and run "
            "`tunelab init` to start a new one"
        ) from exc
    return db


def check_schema(db: Database, path: Path | str | None) -> None:
    """Refuse a database that a newer tunelab migrated; never migrate backwards."""
    try:
        if not db[migrations.migrations_table].exists():
            return
        applied = {m.name for m in migrations.applied(db)}
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabaseError(
            f"{path} is not a readable tunelab database ({exc}); it was left untouched"
        ) from exc
    unknown = sorted(applied - KNOWN_MIGRATIONS)
    if unknown:
        raise SchemaTooNewError(
            f"{path} was written by a newer tunelab (unknown schema changes: "
            f"{', '.join(unknown)}); upgrade tunelab to open it. The file was left untouched."
        )


def migrate(db: Database, path: Path | str | None) -> None:
    """Apply pending migrations; applying twice is a no-op."""
    check_schema(db, path)
    try:
        migrations.apply(db)
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabaseError(
            f"{path} could not be migrated ({exc}); it was left untouched"
        ) from exc


class ConnectionPool:
    """Hands each thread its own connection to the same database (sqlite3's same-thread rule)."""

    def __init__(self, path: Path | str | None, memory_name: str | None = None) -> None:
        self.path = path
        self.memory_name = memory_name
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Database] = []
        self._pid = os.getpid()

    def get(self) -> Database:
        db: Database | None = getattr(self._local, "db", None)
        if db is None or self._pid != os.getpid():
            self._pid = os.getpid()
            db = open_database(self.path, self.memory_name)
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
def write_transaction(db: Database) -> Iterator[Database]:
    """A write transaction that takes the write lock up front (BEGIN IMMEDIATE).

    A deferred BEGIN that reads and then writes can fail with "database is locked" even
    with a busy timeout; IMMEDIATE waits for the lock instead.
    """
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

"""Noticing commits made by other connections (another session, the CLI, a job's worker).

SQLite's `PRAGMA data_version` changes on a connection when a commit was made by any *other*
connection since it was last asked, so the watch keeps one connection of its own that never
writes: every write tunelab makes (on its per-thread connections) and every write of another
process shows up as a new version. Asking costs one tiny query; it never waits for a writer.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from .errors import StoreError


class ChangeWatch:
    """A read-only connection kept only to ask `PRAGMA data_version`; safe from any thread."""

    def __init__(self, path: Path | str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(str(self._path), check_same_thread=False, timeout=1.0)

    def version(self) -> int:
        """A number that changes whenever another connection committed since the last call."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            if self._conn is None:
                self._conn = self._connect()
            row = self._conn.execute("PRAGMA data_version").fetchone()
            return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._conn = None

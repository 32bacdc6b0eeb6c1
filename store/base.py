"""Shared plumbing for the store's facade modules."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlite_utils import Database

from .connection import ConnectionPool, write_transaction


class StoreBase:
    """Gives each facade module the calling thread's connection and small query helpers."""

    _pool: ConnectionPool

    @property
    def db(self) -> Database:
        return self._pool.get()

    def quick_check(self) -> list[str]:
        """SQLite's `PRAGMA quick_check`: [] when every page reads back sound, else the
        problems (a damaged page that cannot even be walked is one problem)."""
        try:
            rows = [str(r[0]) for r in self.db.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [] if rows == ["ok"] else rows

    def _write(self) -> AbstractContextManager[Database]:
        return write_transaction(self.db, self._pool.guard)

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return list(self._iter(sql, params))

    def _iter(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> Iterator[dict[str, Any]]:
        with self._pool.guard.reading():
            cursor = self.db.execute(sql, params)
            columns = [c[0] for c in cursor.description]
            for row in cursor:
                yield dict(zip(columns, row, strict=True))

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    def _scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        with self._pool.guard.reading():
            row = self.db.execute(sql, params).fetchone()
        return None if row is None else row[0]

"""The store facade: the only way the rest of tunelab reads or writes the workspace database."""

from __future__ import annotations

import itertools
from pathlib import Path

from .cache import CacheStore
from .connection import ConnectionPool, migrate
from .datasets import DatasetStore
from .jobs import JobStore
from .models import ModelStore
from .prompts import PromptStore
from .runs import RunStore

_memory_counter = itertools.count()


class Store(PromptStore, DatasetStore, ModelStore, RunStore, JobStore, CacheStore):
    """Typed access to one workspace database; safe to share across threads.

    Each thread gets its own sqlite connection, opened on first use.
    """

    def __init__(self, path: Path | str | None = None, *, migrate_schema: bool = True) -> None:
        memory_name = None
        if path is None:
            memory_name = f"tunelab-memory-{id(self)}-{next(_memory_counter)}"
        self.path = Path(path) if path is not None else None
        self._pool = ConnectionPool(path, memory_name)
        # Keep one connection open so a shared in-memory database lives as long as the store.
        self._keepalive = self._pool.get()
        if migrate_schema:
            migrate(self._keepalive, path)

    @classmethod
    def memory(cls) -> Store:
        """A fresh in-memory store for tests."""
        return cls(None)

    def close(self) -> None:
        self._pool.close_all()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

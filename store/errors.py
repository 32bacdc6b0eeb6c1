"""Errors the store raises; each message is one line that says what to fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StoreError(Exception):
    """Base class for store errors shown to users."""


class NotFoundError(StoreError, LookupError):
    """A name or id that does not exist; the message suggests the closest existing names."""

    def __init__(self, kind: str, name: str, existing: Iterable[str] = ()) -> None:
        choices = [str(e) for e in existing]
        close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.5)
        hint = ""
        if close:
            hint = " Did you mean " + ", ".join(repr(c) for c in close) + "?"
        elif choices:
            shown = ", ".join(repr(c) for c in choices[:8])
            hint = f" Known: {shown}{' ...' if len(choices) > 8 else ''}."
        noun, of, owner = kind.partition(" of ")
        if of:  # "version of prompt 'p'" reads as "prompt 'p' has no version '5'"
            if not choices:
                hint = f" It has no {noun}s yet."
            message = f"{owner} has no {noun} {name!r}.{hint}"
        else:
            if not choices:
                hint = f" There are no {kind}s yet."
            message = f"unknown {kind} {name!r}.{hint}"
        super().__init__(message)
        self.kind = kind
        self.name = name


class ConflictError(StoreError):
    """A write that would break a uniqueness or integrity rule."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer tunelab; we refuse to touch it."""


class CorruptDatabaseError(StoreError):
    """The database file is not SQLite, or one of its pages is damaged."""


class ReadOnlyDatabaseError(StoreError):
    """The database, its folder or its journal cannot be written; the data is intact."""


class DiskFullError(StoreError):
    """The disk holding the database is full; the unfinished change was rolled back."""


class DatabaseIOError(StoreError):
    """The operating system failed a read or write of the database file."""


class RunClaimedError(StoreError):
    """Another live process holds the run (it is evaluating or resuming it)."""

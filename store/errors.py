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
        else:
            hint = f" There are no {kind}s yet."
        super().__init__(f"unknown {kind} {name!r}.{hint}")
        self.kind = kind
        self.name = name


class ConflictError(StoreError):
    """A write that would break a uniqueness or integrity rule."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer tunelab; we refuse to touch it."""


class CorruptDatabaseError(StoreError):
    """The database file is not a readable SQLite database."""

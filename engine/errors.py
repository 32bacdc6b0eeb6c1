"""Errors the engine raises for users; each message is one line that says what to fix."""

from __future__ import annotations


class EngineError(Exception):
    """A failure the user can act on (exit code 1 on the CLI unless it is bad input)."""


class BadInputError(EngineError, ValueError):
    """Bad input from the user: a file, a template, a config value (exit code 2 on the CLI)."""

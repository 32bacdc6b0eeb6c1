"""Errors the engine raises for users; each message is one line that says what to fix."""

from __future__ import annotations


class EngineError(Exception):
    """A failure the user can act on (exit code 1 on the CLI unless it is bad input)."""


class BadInputError(EngineError, ValueError):
    """Bad input from the user: a file, a template, a config value (exit code 2 on the CLI)."""


def one_line(exc: BaseException) -> str:
    """An exception as the one line a run, job or curve stores and shows: the first line of
    its message, or its class name when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

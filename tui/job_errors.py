"""Why a job failed, in one line for its row, and its log without the Python traceback.

The job record's `error` is the last line of the exception the worker caught (its type and
message) or why the process was found gone; the full log, traceback included, stays one key
away (`l` on the Fine-tune screen).
"""

from __future__ import annotations

import re

ERROR_WIDTH = 60
"""How much of the error a job row shows."""

_PATH = re.compile(r"(?:/[^/\s'\"]+){3,}/([^/\s'\"]+)")
_TRACEBACK_START = "Traceback (most recent call last):"


def one_line_error(error: str | None, width: int = ERROR_WIDTH) -> str:
    """The error's last non-empty line, long paths shortened to `…/name`, cut at a word
    boundary with `…` when longer than `width`."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    if not lines:
        return ""
    text = " ".join(lines[-1].split())
    text = _PATH.sub(lambda m: f"…/{m.group(1)}", text)
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space >= width // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def without_tracebacks(lines: list[str], hint: str = "full log: l") -> list[str]:
    """The log lines with each Python traceback folded into one line naming the exception.

    A traceback runs from its `Traceback (most recent call last):` line to the first line
    that is not indented (the exception's own line), which is kept.
    """
    out: list[str] = []
    inside = False
    for line in lines:
        if line.startswith(("During handling", "The above exception")):
            continue  # between the tracebacks of a chained exception
        if line.startswith(_TRACEBACK_START):
            inside = True
            continue
        if inside:
            if line.startswith((" ", "\t")) or not line.strip():
                continue
            inside = False
            out.append(f"error: {one_line_error(line, 200)}  ({hint})")
            continue
        out.append(line)
    if inside:  # cut off mid-traceback (the log is still being written)
        out.append(f"error: traceback follows  ({hint})")
    return out

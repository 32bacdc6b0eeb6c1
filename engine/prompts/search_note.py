"""The commit message a prompt search gives each candidate version, written and read back.

The optimizer writes it and `compare` reads it (to say how many candidates the prompt side
tried, and on which split the winner was chosen), so its format has this one home below
both of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "optimize "

_NOTE = re.compile(
    r"^optimize (?P<seed>[^\s:]+@\d+): (?P<change>.*?)"
    r"(?:; validation (?P<metric>\S+)=(?P<score>[-\d.]+) on (?P<rows>\d+) of (?P<total>\d+) "
    r"rows of (?P<dataset>[^/\s]+)/(?P<split>\S+)|; not scored yet)$"
)


@dataclass(frozen=True)
class SearchNote:
    """What a candidate's message says: its seed, its change, and its latest score."""

    seed_ref: str
    change: str
    metric: str | None = None
    score: float | None = None
    rows: int | None = None
    total: int | None = None
    dataset: str | None = None
    split: str | None = None
    """The split whose score selected it (a search's validation split)."""

    def message(self) -> str:
        head = f"{PREFIX}{self.seed_ref}: {self.change}"
        if self.score is None:
            return f"{head}; not scored yet"
        return (
            f"{head}; validation {self.metric}={self.score:.4f} on {self.rows} of "
            f"{self.total} rows of {self.dataset}/{self.split}"
        )


def parse_note(message: str) -> SearchNote | None:
    """The note in a version's message; None for a message a person wrote."""
    match = _NOTE.match(message.strip())
    if match is None:
        return None
    g = match.groupdict()
    if g["score"] is None:
        return SearchNote(g["seed"], g["change"])
    return SearchNote(
        g["seed"],
        g["change"],
        g["metric"],
        float(g["score"]),
        int(g["rows"]),
        int(g["total"]),
        g["dataset"],
        g["split"],
    )

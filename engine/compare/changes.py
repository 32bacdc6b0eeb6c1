"""How a row moved between a baseline and another run on a right/wrong score.

The one home of the fixed/broken classification: the comparison's counts, its McNemar test
and every view's row labels (CLI, reports, TUI) come from here.
"""

from __future__ import annotations

FIXED = "fixed"
"""The baseline got the row wrong and the run got it right."""
BROKEN = "broken"
"""The baseline got the row right and the run got it wrong."""
DIFFERS = "differs"
"""The outputs differ but the right/wrong score did not change (or there is none)."""


def is_right(score: float) -> bool:
    """A right/wrong score counts as right from 0.5 up."""
    return score >= 0.5


def change(score_a: float, score_b: float) -> str | None:
    """FIXED or BROKEN when the score flipped from the baseline (a) to the run (b), else None."""
    right_a, right_b = is_right(score_a), is_right(score_b)
    if right_b and not right_a:
        return FIXED
    if right_a and not right_b:
        return BROKEN
    return None

"""Is the judge to be trusted? Its agreement with the human ratings of the same outputs.

Spearman's rank correlation (scipy) over the outputs that have both a parsed judge score and
a human 1-5 rating, plus exact and within-one agreement when the judge's scale is 1-5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tunelab.engine.judge.records import CHECKED, UNCHECKED, Agreement
from tunelab.engine.judge.rubric import ScoreScale
from tunelab.store import Judgement

HUMAN_SCALE = ScoreScale(1, 5)
"""The scale of the ratings users give in the TUI and with `tunelab run rate`."""


def agreement(pairs: Sequence[tuple[int, int]], scale: ScoreScale) -> Agreement:
    """Agreement of (judge score, human rating) pairs; `unchecked` when there are none.

    Spearman is None when it is undefined (fewer than two pairs, or either side constant).
    """
    if not pairs:
        return Agreement(UNCHECKED, 0)
    from scipy.stats import spearmanr

    judge = [float(j) for j, _ in pairs]
    human = [float(h) for _, h in pairs]
    rho: float | None = None
    p_value: float | None = None
    if len(pairs) >= 2 and len(set(judge)) > 1 and len(set(human)) > 1:
        result = spearmanr(judge, human)
        rho_value, p = float(result.statistic), float(result.pvalue)
        if not math.isnan(rho_value):
            rho, p_value = rho_value, p
    exact = within_one = None
    if scale == HUMAN_SCALE:
        exact = sum(1 for j, h in pairs if j == h) / len(pairs)
        within_one = sum(1 for j, h in pairs if abs(j - h) <= 1) / len(pairs)
    return Agreement(CHECKED, len(pairs), rho, p_value, exact, within_one)


def rated_pairs(judgements: Sequence[Judgement]) -> list[tuple[int, int]]:
    """(score, rating) of every judged output that has both."""
    return [(j.score, j.rating) for j in judgements if j.score is not None and j.rating is not None]

"""What a judge run found, as records both front ends show as they are."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunelab.store import Judgement, JudgeRun, PairVerdict

CHECKED = "checked"
UNCHECKED = "unchecked"
"""A judge whose scores no human rating overlaps: nobody knows whether to trust it."""


@dataclass(frozen=True)
class ScoreSummary:
    """The scores of one judge run: how many rows, how many unparseable, their spread."""

    rows: int
    scored: int
    unparseable: int
    cached: int
    mean: float | None
    distribution: dict[str, int] = field(default_factory=dict)
    """Score (as text, every point of the scale) → how many outputs got it."""


@dataclass(frozen=True)
class Agreement:
    """How the judge's scores agree with human 1-5 ratings of the same outputs.

    `status` is `unchecked` when no judged output has a human rating; the figures are then
    None. Exact and within-one agreement are given only on a 1-5 scale (the ratings' own).
    """

    status: str
    rows: int
    """Outputs with both a parsed judge score and a human rating: what the figures rest on."""
    spearman: float | None = None
    spearman_p: float | None = None
    exact: float | None = None
    within_one: float | None = None


@dataclass(frozen=True)
class JudgeReport:
    """A finished (or interrupted) score run: its judgements, summary and human agreement."""

    run: JudgeRun
    judgements: list[Judgement]
    summary: ScoreSummary
    agreement: Agreement
    interrupted: bool = False


@dataclass(frozen=True)
class PairSummary:
    """Run A against run B over their shared rows, both positions judged for each.

    A win is a row where both passes picked A's output, a loss both picked B's, a tie the
    passes disagreed (position bias); unparsed rows (a pass with no readable pick) are
    counted apart. The win rate is over decided rows (wins + losses), with a Wilson 95%
    interval and a two-sided binomial test against 0.5 (scipy).
    """

    rows: int
    wins: int
    losses: int
    ties: int
    unparsed: int
    cached: int
    win_rate: float | None
    win_rate_low: float | None
    win_rate_high: float | None
    p_value: float | None
    first_position_picks: float | None = None
    """Share of readable passes that picked whichever response was shown first: 0.5 is no
    position bias, 1.0 a judge that always picks the first."""


@dataclass(frozen=True)
class PairReport:
    """A finished (or interrupted) pairwise run: its verdicts and their summary."""

    run: JudgeRun
    verdicts: list[PairVerdict]
    summary: PairSummary
    interrupted: bool = False


@dataclass(frozen=True)
class JudgeProgress:
    """Where a judge run stands: rows judged (from the cache or the model) of the total."""

    done: int
    total: int
    cached: int
    judge_run_id: int = 0


@dataclass(frozen=True)
class CaseJudgement:
    """The judge's verdict on one case: the score (None: unparseable, `problem` says why),
    its reason, the whole reply and whether it came from the cache."""

    score: int | None
    rationale: str
    problem: str | None
    raw: str
    cached: bool

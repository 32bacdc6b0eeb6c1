"""Majority votes over a row's samples: the answer most samples give, and how far they agree.

Answers are grouped as the final-answer metric compares them: numbers by value (`1,000` and
`1000.0` are one answer), text after lm-eval's exact-match filters, classification labels as
they are. A sample with no answer (a failed extraction, an invalid label) never wins the vote
but counts among the samples, so agreement is the share of *all* samples behind the vote.
Ties go to the answer given by the earliest sample, so the first sample's answer wins any tie
it is part of and the same samples always vote the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunelab.engine.evaluation.answers import normalize_answer, to_number
from tunelab.engine.evaluation.metrics import INVALID


@dataclass(frozen=True)
class AnswerCount:
    """One distinct answer among a row's samples."""

    answer: str | None
    """The answer as its first sample wrote it; None for the samples that gave no answer."""
    sample_indices: tuple[int, ...]
    """The samples that gave it, in order (0 is the row's first sample)."""

    @property
    def count(self) -> int:
        return len(self.sample_indices)

    @property
    def first_sample(self) -> int:
        return self.sample_indices[0]


@dataclass(frozen=True)
class Vote:
    """The majority vote over one row's samples."""

    answer: str | None
    """The voted answer; None when no sample gave one."""
    agreement: float
    """Share of the samples that gave the voted answer (0 when none answered)."""
    entropy: float
    """Shannon entropy in bits of the samples' answers (no-answer counted as one answer)."""
    groups: tuple[AnswerCount, ...]
    """Every distinct answer, most common first, ties in order of first appearance."""
    samples: int

    @property
    def winner(self) -> AnswerCount | None:
        """The voted answer's group; None when no sample gave an answer."""
        return next((g for g in self.groups if g.answer is not None), None)


def sample_answer(prediction: str | None, answer_found: bool | None, labels: bool) -> str | None:
    """The answer a sample votes for, or None when it gave none.

    Args:
        prediction: the stored prediction (extracted answer or label).
        answer_found: whether the answer rule found an answer (None: no rule applied).
        labels: the dataset is a classification task with a label set.
    """
    if answer_found is False or prediction is None or not prediction.strip():
        return None
    if labels and prediction == INVALID:
        return None
    return prediction


def answer_key(answer: str, labels: bool) -> str:
    """What makes two answers the same vote: the label, the number's value or normalised text."""
    if labels:
        return f"label:{answer}"
    number = to_number(answer)
    if number is not None:
        return f"number:{number}"
    return f"text:{normalize_answer(answer)}"


def majority_vote(answers: Sequence[str | None], labels: bool = False) -> Vote:
    """Vote over one row's sample answers (None: that sample gave no answer).

    Raises:
        ValueError: no samples.
    """
    from scipy.stats import entropy  # deferred: scipy is a heavy import

    if not answers:
        raise ValueError("a vote needs at least one sample")
    found: dict[str | None, AnswerCount] = {}
    for index, answer in enumerate(answers):
        key = None if answer is None else answer_key(answer, labels)
        seen = found.get(key)
        if seen is None:
            found[key] = AnswerCount(answer, (index,))
        else:
            found[key] = AnswerCount(seen.answer, (*seen.sample_indices, index))
    groups = tuple(sorted(found.values(), key=lambda g: (-g.count, g.first_sample)))
    winner = next((g for g in groups if g.answer is not None), None)
    spread = float(entropy([g.count for g in groups], base=2)) if len(groups) > 1 else 0.0
    return Vote(
        answer=None if winner is None else winner.answer,
        agreement=0.0 if winner is None else winner.count / len(answers),
        entropy=spread,
        groups=groups,
        samples=len(answers),
    )

"""Both sides' robustness next to each other, as `compare` and the Compare screen print it:
"under typos the fine-tune (run 5) loses 0.04 accuracy (95% CI ...), the prompt (run 3)
loses 0.11 (95% CI ...)".

Perturbations are matched by what was done (name, parameter and seed, as each result's
detail states them), so two suites are only set side by side on the same perturbation;
`matched_perturbations` is that rule, which the decision report uses too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunelab.engine.robustness.records import PerturbationResult, RobustnessSummary
from tunelab.engine.robustness.summary import robustness_for_run
from tunelab.store import Run, Store


def _p(p: float | None) -> str:
    if p is None:
        return "p -"
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


Matched = tuple[str, PerturbationResult | None, PerturbationResult | None]


def matched_perturbations(
    a: RobustnessSummary | None, b: RobustnessSummary | None
) -> list[Matched]:
    """(label, a's result, b's result) per perturbation either suite ran, in a's order first.

    Results match on what was done (the name and its detail: rate, seed), so typos at 5%
    never stand beside typos at 10%; the label adds the detail only where a name recurs.
    """
    sides = [{} if s is None else {(r.perturbation, r.detail): r for r in s.results}
             for s in (a, b)]  # fmt: skip
    keys = list(dict.fromkeys([*sides[0], *sides[1]]))
    names = [name for name, _ in keys]
    return [
        (name if names.count(name) == 1 or not detail else f"{name} ({detail})",
         sides[0].get((name, detail)), sides[1].get((name, detail)))
        for name, detail in keys
    ]  # fmt: skip


def drop_verb(result: PerturbationResult) -> str:
    """'loses' for a drop (or none), 'gains' when the perturbed run scored higher."""
    return "loses" if result.drop >= 0 else "gains"


def _clause(name: str, result: PerturbationResult, confidence: float, with_metric: bool) -> str:
    verb = drop_verb(result)
    metric = f" {result.metric}" if with_metric else ""
    interval = ""
    if result.ci is not None:
        interval = f"{confidence:.0%} CI {result.ci[0]:+.3f} to {result.ci[1]:+.3f}, "
    return (
        f"{name} {verb} {abs(result.drop):.3f}{metric} ({interval}{_p(result.p_value)}, "
        f"{result.rows} rows)"
    )


def side_name(store: Store, run: Run) -> str:
    """'the fine-tune (run 5)' for a fine-tuned model, 'the prompt (run 3)' otherwise."""
    model = store.get_model_by_id(run.model_id)
    fine_tuned = model.job_id is not None or model.kind in ("adapter", "merged")
    return f"the {'fine-tune' if fine_tuned else 'prompt'} (run {run.id})"


@dataclass(frozen=True)
class Side:
    """One run of a comparison: how sentences name it, and its latest suite."""

    name: str
    run_id: int
    summary: RobustnessSummary | None


def contrast_sentences(a: Side, b: Side) -> list[str]:
    """One sentence per perturbation both suites ran, or what is missing; [] when neither
    side has a suite (nothing to say)."""
    if a.summary is None and b.summary is None:
        return []
    if a.summary is None or b.summary is None:
        has, lacks = (b, a) if a.summary is None else (a, b)
        return [
            f"robustness: {has.name} has a suite, {lacks.name} has none "
            f"(`tunelab robustness {lacks.run_id}` makes one with the same perturbations)"
        ]
    sentences: list[str] = []
    for _, result_a, result_b in matched_perturbations(a.summary, b.summary):
        if result_a is None or result_b is None:
            continue
        if result_b.metric != result_a.metric:
            sentences.append(
                f"under {result_a.perturbation} ({result_a.detail}) the suites measure "
                f"different metrics ({result_a.metric} and {result_b.metric}); not side by side"
            )
            continue
        sentences.append(
            f"under {result_a.perturbation} ({result_a.detail}), "
            f"{_clause(a.name, result_a, a.summary.confidence, True)}, "
            f"{_clause(b.name, result_b, b.summary.confidence, False)}"
        )
    if not sentences:
        sentences.append(
            f"robustness: the suites of {a.name} and {b.name} share no perturbation "
            "(same name, parameter and seed)"
        )
    return sentences


def robustness_contrast(store: Store, run_ids: Sequence[int]) -> list[str]:
    """The first run's latest suite next to each other run's; [] when no run has one."""
    runs = [store.get_run(int(i)) for i in run_ids]
    sides = [Side(side_name(store, r), r.id, robustness_for_run(store, r.id)) for r in runs]
    sentences: list[str] = []
    for other in sides[1:]:
        sentences += contrast_sentences(sides[0], other)
    return sentences

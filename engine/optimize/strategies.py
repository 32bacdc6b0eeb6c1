"""Search strategies: plain functions over a search space and a rung-wise scorer.

Each strategy proposes candidates and asks `score(candidate, rung)` for a candidate's
validation score on rung `rung` (rung 0: the small first subset, the last: the whole
validation split). The scorer returns None once the search was asked to stop; a strategy
then returns at once, keeping what was scored. Both strategies are deterministic for a seed
given the same scores, which with cached evaluations makes a re-run repeat itself.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tunelab.engine.errors import BadInputError
from tunelab.engine.optimize.space import Candidate, SearchSpace

STRATEGIES = ("random", "tpe")
ETA = 2
"""Successive halving keeps the best 1/ETA of the candidates at each rung."""

Scorer = Callable[[Candidate, int], float | None]


@dataclass
class Trial:
    """A candidate and its score at each rung it reached."""

    candidate: Candidate
    scores: dict[int, float] = field(default_factory=dict)

    @property
    def last_rung(self) -> int:
        return max(self.scores, default=-1)


def check_strategy(name: str) -> None:
    if name not in STRATEGIES:
        raise BadInputError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def random_candidate(space: SearchSpace, pool_size: int, rng: random.Random) -> Candidate:
    """Demonstrations drawn without replacement in a random order, k uniform in the range.
    A dimension with one choice draws nothing, so adding choices elsewhere keeps the draws
    of a space without them."""
    k = rng.randint(min(space.k_min, pool_size), min(space.k_max, pool_size))
    demos = tuple(rng.sample(range(pool_size), k))
    choices: list[int | None] = [None, *range(len(space.instructions))]
    instruction, scoring = rng.choice(choices), rng.choice(space.scorings)
    selection = _pick(space.selections, rng)
    calibration = _pick(space.calibrations, rng) if scoring == "likelihood" else "none"
    if selection == "bm25":
        return Candidate((), instruction, scoring, calibration, max(1, k))
    return Candidate(demos, instruction, scoring, calibration)


def _pick(options: tuple[str, ...], rng: random.Random) -> str:
    return options[0] if len(options) == 1 else rng.choice(options)


def random_search(
    space: SearchSpace, pool_size: int, budget: int, seed: int, rungs: int, score: Scorer
) -> list[Trial]:
    """`budget` distinct random candidates, thinned by successive halving over the rungs."""
    rng = random.Random(seed)
    seen: set[Candidate] = set()
    trials: list[Trial] = []
    # A small space may hold fewer distinct candidates than the budget: stop proposing then.
    for _ in range(budget * 20):
        if len(trials) == budget:
            break
        candidate = random_candidate(space, pool_size, rng)
        if candidate not in seen:
            seen.add(candidate)
            trials.append(Trial(candidate))
    alive = trials
    for rung in range(rungs):
        for trial in alive:
            value = score(trial.candidate, rung)
            if value is None:
                return trials
            trial.scores[rung] = value
        if rung < rungs - 1:
            ranked = sorted(alive, key=lambda t: -t.scores[rung])  # stable: earlier first
            alive = ranked[: max(1, math.ceil(len(alive) / ETA))]
    return trials


def tpe_search(
    space: SearchSpace, pool_size: int, budget: int, seed: int, rungs: int, score: Scorer
) -> list[Trial]:
    """Optuna's TPE proposes each candidate; successive-halving pruning stops the weak ones
    at an early rung. Demonstration slot i picks a pool row; repeats are dropped."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=ETA, min_early_stopping_rate=0
        ),
    )
    k_high = min(space.k_max, pool_size)
    k_low = min(space.k_min, k_high)
    trials: list[Trial] = []
    for _ in range(budget):
        trial = study.ask()
        k = trial.suggest_int("k", k_low, k_high)
        slots = [trial.suggest_int(f"demo_{i}", 0, pool_size - 1) for i in range(k)]
        demos = tuple(dict.fromkeys(slots))
        instruction_choice = trial.suggest_int("instruction", -1, len(space.instructions) - 1)
        scoring = str(trial.suggest_categorical("scoring", list(space.scorings)))
        selection, calibration = space.selections[0], "none"
        if len(space.selections) > 1:
            selection = str(trial.suggest_categorical("selection", list(space.selections)))
        if scoring == "likelihood":
            calibration = space.calibrations[0]
            if len(space.calibrations) > 1:
                calibration = str(
                    trial.suggest_categorical("calibration", list(space.calibrations))
                )
        instruction = None if instruction_choice < 0 else instruction_choice
        if selection == "bm25":
            candidate = Candidate((), instruction, scoring, calibration, max(1, k))
        else:
            candidate = Candidate(demos, instruction, scoring, calibration)
        record = Trial(candidate)
        trials.append(record)
        pruned = False
        for rung in range(rungs):
            value = score(candidate, rung)
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                return trials
            record.scores[rung] = value
            if rung < rungs - 1:
                trial.report(value, step=rung + 1)
                if trial.should_prune():
                    pruned = True
                    break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, record.scores[rungs - 1])
    return trials


def run_strategy(
    name: str,
    space: SearchSpace,
    pool_size: int,
    budget: int,
    seed: int,
    rungs: int,
    score: Scorer,
) -> list[Trial]:
    check_strategy(name)
    strategy = random_search if name == "random" else tpe_search
    return strategy(space, pool_size, budget, seed, rungs, score)

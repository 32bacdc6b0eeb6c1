"""The Optuna side of a sweep: its study (TPE over a journal file), its pruner, and the
pruning decision for a trial's validation series.

The study lives in Optuna's journal file storage (`JournalFileBackend`), one append-only
file per sweep under `.tunelab/sweeps/`, never in `tunelab.db`: the journal needs no second
SQLite database beside the workspace's WAL file (nor SQLAlchemy's schema upgrades), a crash
mid-write loses at most the last record, and it is a plain file to copy along with the
workspace. Only the sweep driver, on the workspace's host, opens it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    import optuna

PRUNERS = ("median", "halving", "none")
MINIMIZED = frozenset({"val_loss"})


def direction_of(metric: str) -> Literal["minimize", "maximize"]:
    return "minimize" if metric in MINIMIZED else "maximize"


def check_pruner(name: str) -> None:
    if name not in PRUNERS:
        raise BadInputError(f"--pruner must be one of {', '.join(PRUNERS)}, not {name!r}")


def make_pruner(name: str, n_trials: int, first_step: int) -> optuna.pruners.BasePruner:
    """The pruner a sweep of `n_trials` uses, its first rung at the first validation step.

    Optuna's median pruner waits for 5 finished trials by default; a sweep of a few trials
    would then never prune, so it waits for a quarter of them (at least one).
    """
    import optuna  # loads only where a study runs

    check_pruner(name)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, n_trials // 4)))
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, first_step), reduction_factor=2
        )
    return optuna.pruners.NopPruner()


def open_study(
    path: Path, name: str, metric: str, pruner: optuna.pruners.BasePruner, seed: int
) -> optuna.Study:
    """Create or load the sweep's study in its journal file.

    The TPE sampler's seed is offset by the trials already in the study: a resumed driver
    would otherwise replay the first trial's random start-up draws.
    """
    import optuna  # loads only where a study runs
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(
        storage=storage, study_name=name, direction=direction_of(metric), pruner=pruner,
        load_if_exists=True,
    )  # fmt: skip
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def report_new_points(
    study: optuna.Study, number: int, points: Iterable[tuple[int, float]], decide: bool = True
) -> int | None:
    """Report a running trial's validation points that the study has not seen yet, in step
    order, and ask the pruner after each one.

    Args:
        study: the sweep's study.
        number: the trial's number.
        points: (step, value) of the sweep's metric, as the trainer reported them.
        decide: False never prunes (a trial whose job already ended).

    Returns:
        The step at which the pruner says to stop the trial, or None to let it run.
    """
    import optuna  # loads only where a study runs

    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if frozen.state != optuna.trial.TrialState.RUNNING:
        return None
    # Optuna has no public way to reopen a running trial by number; its id is on the record.
    trial = optuna.trial.Trial(study, frozen._trial_id)
    seen = set(frozen.intermediate_values)
    for step, value in sorted(points):
        if step in seen:
            continue
        trial.report(value, step)
        seen.add(step)
        # Asked even when the verdict is moot: successive halving records each trial's rungs
        # while it is asked, and later trials compete against those records.
        if trial.should_prune() and decide:
            return step
    return None


def best_value(metric: str, values: Iterable[float]) -> float | None:
    """A trial's value: the best point of its series (the point its best checkpoint has)."""
    found = list(values)
    if not found:
        return None
    return min(found) if metric in MINIMIZED else max(found)

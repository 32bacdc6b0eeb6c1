"""What the front ends show of a sweep: the sweep, its trials, and its driver's liveness."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunelab.store import Sweep, SweepTrial


@dataclass(frozen=True)
class SweepDetail:
    """A sweep as `tunelab sweep show` and the Sweeps screen show it.

    Args:
        sweep: the stored sweep.
        trials: its trials, by number.
        driver_alive: whether its driver process still runs (a running sweep whose driver
            died resumes with `tunelab sweep resume ID`).
        best_model: the best trial's best checkpoint, by name, once the sweep finished.
        labels: the labels pointing at that checkpoint (`sweep-N-best`, `swept`).
    """

    sweep: Sweep
    trials: list[SweepTrial]
    driver_alive: bool
    best_model: str | None = None
    labels: list[str] = field(default_factory=list)

    @property
    def param_names(self) -> list[str]:
        """The swept parameters, in the order the space names them."""
        return list(dict.fromkeys(name for t in self.trials for name in t.params))

    @property
    def counts(self) -> dict[str, int]:
        """How many trials are in each state."""
        out: dict[str, int] = {}
        for trial in self.trials:
            out[trial.state] = out.get(trial.state, 0) + 1
        return out

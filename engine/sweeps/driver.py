"""The detached process behind a sweep: `python -m tunelab.engine.sweeps.driver ID`.

It asks the study for trials, queues one fine-tuning job per trial (locally or on Slurm,
through `training.jobs.launch_job`), reads each running job's validation series from the
store, reports it to the study and cancels the job the pruner stops, and labels the best
trial's best checkpoint when the last trial ends. All it knows lives in the store and the
study's journal, so a driver started again after a crash re-attaches to the running trial
jobs and runs only the trials still missing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError, one_line
from tunelab.engine.processes import WorkerInfo
from tunelab.engine.sweeps.launch import best_labels, driver_alive, stop_file
from tunelab.engine.sweeps.space import parse_space
from tunelab.engine.sweeps.study import best_value, make_pruner, open_study, report_new_points
from tunelab.engine.training.config import TrainingConfig
from tunelab.engine.training.jobs import ACTIVE, cancel_job, launch_job, refresh_job_states
from tunelab.store import Store, Sweep, SweepTrial, Workspace, find_workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    from optuna.distributions import BaseDistribution

POLL_S = 2.0
POLL_ENV = "TUNELAB_SWEEP_POLL_S"
"""Overrides POLL_S (seconds between looks at the trial jobs), so tests run quickly."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SweepDriver:
    """Runs one sweep to its end; every step reads its state back from the store and study."""

    def __init__(self, workspace: Workspace, store: Store, sweep_id: int) -> None:
        self.workspace = workspace
        self.store = store
        self.sweep = store.get_sweep(sweep_id)
        self.base_config = TrainingConfig.from_dict(self.sweep.config)
        parameters = parse_space(self.sweep.space, self.base_config)
        self.distributions: dict[str, BaseDistribution] = {
            p.name: p.distribution() for p in parameters
        }
        pruner = make_pruner(self.sweep.pruner, self.sweep.n_trials,
                             self.base_config.eval_every_steps or 1)  # fmt: skip
        self.study: optuna.Study = open_study(
            Path(self.sweep.study_path), f"tunelab-sweep-{sweep_id}", self.sweep.metric, pruner,
            self.sweep.seed,
        )  # fmt: skip

    def run(self, should_stop: Callable[[], bool], poll_s: float) -> Sweep:
        """Drive the sweep until every trial has ended (or a stop is asked for)."""
        sweep_id = self.sweep.id
        self.reconcile()
        while True:
            refresh_job_states(self.store, self.workspace)
            for trial in self.store.sweep_trials(sweep_id):
                if trial.state == "running" and trial.job_id is not None:
                    self.follow(trial)
            if should_stop():
                return self.cancel()
            trials = self.store.sweep_trials(sweep_id)
            running = [t for t in trials if t.state == "running"]
            if len(trials) < self.sweep.n_trials and len(running) < self.sweep.parallel:
                self.start_trial()
                continue
            if not running and not self._stopping(trials):
                return self.finish()
            time.sleep(poll_s)

    def reconcile(self) -> None:
        """Bring the study and the store back in step after a driver died between the two:
        a trial the store never recorded failed; one the store ended is told so; a pruned
        trial's job still going is cancelled again; a trial without a job gets its job."""
        import optuna  # loads only where a study runs

        stored = {t.number: t for t in self.store.sweep_trials(self.sweep.id)}
        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.state != optuna.trial.TrialState.RUNNING:
                continue
            trial = stored.get(frozen.number)
            if trial is None:
                self.study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
            elif trial.state != "running":
                self._tell(trial)
        for trial in stored.values():
            if trial.state == "pruned" and trial.job_id is not None:
                self._cancel_job(trial.job_id)
            elif trial.state == "running" and trial.job_id is None:
                self.launch(trial)

    def start_trial(self) -> None:
        trial = self.study.ask(self.distributions)
        recorded = self.store.add_sweep_trial(self.sweep.id, trial.number, dict(trial.params))
        self.launch(recorded)

    def launch(self, trial: SweepTrial) -> None:
        """Queue the trial's fine-tuning job (a job the config refuses fails the trial)."""
        from tunelab.engine.training.slurm import SlurmOptions

        slurm = (
            SlurmOptions.from_dict(self.sweep.slurm) if self.sweep.scheduler == "slurm" else None
        )
        try:
            config = self.base_config.with_overrides(**trial.params)
            job = launch_job(
                self.workspace, self.store, config,
                self.store.get_model_by_id(self.sweep.base_model_id),
                self.store.get_dataset_by_id(self.sweep.dataset_id),
                self.store.get_prompt_version_by_id(self.sweep.prompt_version_id),
                given=list(trial.params), slurm=slurm,
            )  # fmt: skip
        except BadInputError as exc:
            self._end(trial, "failed", error=str(exc))
            return
        self.store.update_sweep_trial(self.sweep.id, trial.number, job_id=job.id)
        print(f"trial {trial.number}: job {job.id} with {trial.params}", flush=True)

    def follow(self, trial: SweepTrial) -> None:
        """Report the trial job's new validation points; prune it, or end it with its job."""
        assert trial.job_id is not None
        job = self.store.get_job(trial.job_id)
        points = [(m.step, m.value) for m in self.store.job_metrics(job.id, self.sweep.metric)]
        if job.status in ACTIVE:
            step = report_new_points(self.study, trial.number, points)
            if step is not None:
                self._end(trial, "pruned", pruned_at_step=step)
                self._cancel_job(job.id)
                print(f"trial {trial.number}: pruned at step {step}", flush=True)
            return
        report_new_points(self.study, trial.number, points, decide=False)
        value = best_value(self.sweep.metric, [v for _, v in points])
        if job.status == "succeeded" and value is not None:
            self._end(trial, "complete", value=value)
        elif job.status == "succeeded":
            self._end(trial, "failed", error=f"job {job.id} reported no {self.sweep.metric}")
        else:
            self._end(trial, "failed", error=job.error or f"job {job.id} was {job.status}")
        print(f"trial {trial.number}: {job.status}, {self.sweep.metric} {value}", flush=True)

    def _end(self, trial: SweepTrial, state: str, **fields: Any) -> None:
        """Record how a trial ended, in the store first, then in the study (see reconcile)."""
        ended = self.store.update_sweep_trial(
            self.sweep.id, trial.number, state=state, finished_at=_now(), **fields
        )
        self._tell(ended)

    def _tell(self, trial: SweepTrial) -> None:
        import optuna  # loads only where a study runs

        states = optuna.trial.TrialState
        if trial.state == "complete":
            self.study.tell(trial.number, trial.value)
        else:
            self.study.tell(trial.number, state=states.PRUNED if trial.state == "pruned"
                            else states.FAIL)  # fmt: skip

    def _stopping(self, trials: list[SweepTrial]) -> bool:
        """True while a pruned trial's job is still saving its checkpoint and stopping: the
        sweep ends only when none of its jobs runs any more."""
        return any(
            t.state == "pruned" and t.job_id is not None
            and self.store.get_job(t.job_id).status in ACTIVE
            for t in trials
        )  # fmt: skip

    def _cancel_job(self, job_id: int) -> None:
        if self.store.get_job(job_id).status in ACTIVE:
            try:
                cancel_job(self.workspace, self.store, job_id)
            except BadInputError:  # it ended meanwhile
                pass

    def finish(self) -> Sweep:
        """Label the best complete trial's best checkpoint and mark the sweep finished."""
        trials = [t for t in self.store.sweep_trials(self.sweep.id)
                  if t.state == "complete" and t.value is not None]  # fmt: skip
        if not trials:
            return self.store.update_sweep(
                self.sweep.id, status="failed", finished_at=_now(),
                error=f"no trial completed; see `tunelab sweep show {self.sweep.id}`",
            )  # fmt: skip
        sign = 1.0 if self.sweep.direction == "maximize" else -1.0
        best = max(trials, key=lambda t: sign * (t.value or 0.0))
        models = self.store.models_of_job(best.job_id) if best.job_id is not None else []
        chosen = next((m for m in models if m.is_best), models[-1] if models else None)
        labels = best_labels(self.sweep.id)
        name = chosen.name if chosen else "-"
        print(f"best trial {best.number}: {best.value}, {name} labelled {', '.join(labels)}")
        return self.store.finish_sweep(
            self.sweep.id, best.number, chosen.id if chosen else None, labels
        )

    def cancel(self) -> Sweep:
        """Cancel the running trials' jobs and mark the sweep cancelled."""
        for trial in self.store.sweep_trials(self.sweep.id):
            if trial.state == "running":
                if trial.job_id is not None:
                    self._cancel_job(trial.job_id)
                self._end(trial, "failed", error="sweep cancelled")
        stop_file(self.workspace, self.sweep.id).unlink(missing_ok=True)
        return self.store.update_sweep(self.sweep.id, status="cancelled", finished_at=_now())


def cancel_sweep(workspace: Workspace, store: Store, sweep_id: int) -> Sweep:
    """Ask a running sweep's driver to cancel its trial jobs and stop (or, when the driver is
    gone, cancel the jobs and the sweep here)."""
    sweep = store.get_sweep(sweep_id)
    if sweep.status != "running":
        raise BadInputError(f"sweep {sweep_id} is {sweep.status}; only a running sweep cancels")
    if driver_alive(sweep):
        marker = stop_file(workspace, sweep_id)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        return sweep
    return SweepDriver(workspace, store, sweep_id).cancel()


def run_driver(workspace: Workspace, store: Store, sweep_id: int) -> Sweep:
    """The driver process's body: record itself, drive the sweep, record a failure."""
    store.update_sweep(sweep_id, pid=os.getpid(), worker=WorkerInfo.current().to_dict())
    stopped = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    marker = stop_file(workspace, sweep_id)
    poll_s = float(os.environ.get(POLL_ENV, POLL_S))
    try:
        driver = SweepDriver(workspace, store, sweep_id)
        return driver.run(lambda: stopped.is_set() or marker.exists(), poll_s)
    except Exception as exc:
        traceback.print_exc()
        message = one_line(exc)
        store.update_sweep(sweep_id, status="failed", error=message, finished_at=_now())
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunelab.engine.sweeps.driver")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("sweep_id", type=int)
    args = parser.parse_args(argv)
    workspace = find_workspace(args.workspace)
    store = workspace.open_store()
    try:
        sweep = run_driver(workspace, store, args.sweep_id)
    except Exception:
        return 1
    finally:
        store.close()
    print(f"sweep {sweep.id} {sweep.status}", flush=True)
    return 0 if sweep.status != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())

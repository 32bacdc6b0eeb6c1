"""Starting, resuming and reading sweeps: checks before anything is stored, the sweep row,
and the detached driver process (`python -m tunelab.engine.sweeps.driver`)."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError
from tunelab.engine.processes import boot_id, process_alive, process_start_ticks, start_detached
from tunelab.engine.sweeps.records import SweepDetail
from tunelab.engine.sweeps.space import parse_space
from tunelab.engine.sweeps.study import check_pruner, direction_of
from tunelab.engine.training.config import BEST_METRICS, TrainingConfig
from tunelab.engine.training.jobs import check_job_inputs, resolve_prompt
from tunelab.store import NewSweep

if TYPE_CHECKING:
    from pathlib import Path

    from tunelab.engine.training.slurm import SlurmOptions
    from tunelab.store import Dataset, Model, Store, Sweep, Workspace

LABEL_LATEST = "swept"
"""The label that moves to the best checkpoint of the sweep that finished last."""


@dataclass(frozen=True)
class SweepRequest:
    """What to sweep.

    Args:
        config: the training config every trial starts from (its method, steps, evaluation).
        base: the base model; dataset: the data; prompt_ref: `NAME@V` rendering the rows.
        space: the search space text (see `space.parse_space`).
        n_trials: trials to run; parallel: trial jobs queued or running at once.
        metric: the validation metric to optimize, one the trainer reports.
        pruner: median, halving or none; seed: the sampler's seed.
        slurm: run each trial job on Slurm with these options instead of locally.
        given: the config fields the user set explicitly.
    """

    config: TrainingConfig
    base: Model
    dataset: Dataset
    prompt_ref: str
    space: str
    n_trials: int
    metric: str = "val_loss"
    parallel: int = 1
    pruner: str = "median"
    seed: int = 0
    slurm: SlurmOptions | None = None
    given: tuple[str, ...] = field(default_factory=tuple)


def study_path(workspace: Workspace, sweep_id: int) -> Path:
    return workspace.dir / "sweeps" / f"sweep-{sweep_id}.journal"


def stop_file(workspace: Workspace, sweep_id: int) -> Path:
    """Its presence asks the sweep's driver to cancel its trial jobs and stop."""
    return workspace.dir / "sweeps" / f"sweep-{sweep_id}.stop"


def best_labels(sweep_id: int) -> list[str]:
    return [f"sweep-{sweep_id}-best", LABEL_LATEST]


def check_sweep(store: Store, workspace: Workspace, request: SweepRequest) -> TrainingConfig:
    """Every check a sweep passes before anything is stored; returns the trials' base config."""
    if request.n_trials < 1:
        raise BadInputError(f"--trials must be 1 or more, not {request.n_trials}")
    if request.parallel < 1:
        raise BadInputError(f"--parallel must be 1 or more, not {request.parallel}")
    check_pruner(request.pruner)
    if request.metric not in BEST_METRICS:
        raise BadInputError(
            f"--metric must be a validation metric the trainer reports: {', '.join(BEST_METRICS)};"
            f" not {request.metric!r}"
        )
    labelled = request.metric in ("val_accuracy", "val_macro_f1")
    if labelled and not (request.dataset.task == "classification" and request.dataset.labels):
        raise BadInputError(
            f"--metric {request.metric} needs a classification dataset with labels; "
            f"{request.dataset.name!r} has none, so use --metric val_loss"
        )
    config = request.config.with_overrides(metric_for_best=request.metric)
    parameters = parse_space(request.space, config)
    prompt = resolve_prompt(store, request.prompt_ref)
    gpus = 0
    if request.slurm is not None:
        from tunelab.engine.training import slurm as scheduler

        gpus = request.slurm.nodes * request.slurm.gpus_per_node
        scheduler.check_shared_fs(workspace.root, request.slurm.allow_local_fs)
    check_job_inputs(store, config, request.base, request.dataset, gpus, prompt, workspace,
                     request.given, local=request.slurm is None)  # fmt: skip
    rows = request.dataset.split(config.train_split).row_count
    for parameter in parameters:
        for value in parameter.extremes():
            config.with_overrides(**{parameter.name: value}).check_against_data(rows)
    return config


def start_sweep(workspace: Workspace, store: Store, request: SweepRequest) -> Sweep:
    """Check the request, store the sweep and start its detached driver; returns at once.

    Returns:
        The sweep, running: its driver asks Optuna for trials and queues one job for each.
    """
    config = check_sweep(store, workspace, request)
    prompt = resolve_prompt(store, request.prompt_ref)
    workspace.ensure_dirs()
    sweep = store.create_sweep(
        NewSweep(
            method=config.method, base_model_id=request.base.id, dataset_id=request.dataset.id,
            prompt_version_id=prompt.id, space=request.space, metric=request.metric,
            direction=direction_of(request.metric), n_trials=request.n_trials,
            parallel=request.parallel, pruner=request.pruner, seed=request.seed,
            config=config.to_dict(), study_path="",
            scheduler="local" if request.slurm is None else "slurm",
            slurm={} if request.slurm is None else request.slurm.to_dict(),
        )
    )  # fmt: skip
    # The study's file is named after the sweep's id, known only now.
    store.update_sweep(sweep.id, study_path=str(study_path(workspace, sweep.id)))
    start_driver(workspace, store, sweep.id)
    return store.get_sweep(sweep.id)


def driver_command(workspace: Workspace, sweep_id: int) -> list[str]:
    return [sys.executable, "-m", "tunelab.engine.sweeps.driver",
            "--workspace", str(workspace.root), str(sweep_id)]  # fmt: skip


def start_driver(workspace: Workspace, store: Store, sweep_id: int) -> int:
    """Start the sweep's driver in its own session (it outlives the terminal); its pid."""
    log = workspace.logs_dir / f"sweep-{sweep_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNELAB_WORKSPACE": str(workspace.root)}
    with open(log, "ab") as out:
        process = start_detached(driver_command(workspace, sweep_id), out, workspace.root, env)
    store.update_sweep(sweep_id, pid=process.pid, host=socket.gethostname(), log_path=str(log),
                       worker={})  # fmt: skip
    return process.pid


def driver_alive(sweep: Sweep) -> bool:
    """True while the sweep's recorded driver process is still the one that started."""
    if sweep.pid is None or sweep.host != socket.gethostname() or not process_alive(sweep.pid):
        return False
    ticks = sweep.worker.get("start_ticks")
    recorded_boot = sweep.worker.get("boot_id")
    if recorded_boot and recorded_boot != boot_id():
        return False
    return ticks is None or process_start_ticks(sweep.pid) in (None, ticks)


def resume_sweep(workspace: Workspace, store: Store, sweep_id: int) -> Sweep:
    """Start a new driver for a sweep whose driver died: it re-attaches to the running trial
    jobs and runs only the trials still missing."""
    sweep = store.get_sweep(sweep_id)
    if sweep.status != "running":
        raise BadInputError(f"sweep {sweep_id} is {sweep.status}; only a running sweep resumes")
    if driver_alive(sweep):
        raise BadInputError(f"sweep {sweep_id}'s driver (pid {sweep.pid}) is still running")
    start_driver(workspace, store, sweep_id)
    return store.get_sweep(sweep_id)


def sweep_detail(store: Store, sweep_id: int) -> SweepDetail:
    """A sweep with its trials, whether its driver lives, and its best checkpoint's name."""
    sweep = store.get_sweep(sweep_id)
    best = store.get_model_by_id(sweep.best_model_id) if sweep.best_model_id else None
    return SweepDetail(
        sweep=sweep,
        trials=store.sweep_trials(sweep_id),
        driver_alive=driver_alive(sweep),
        best_model=best.name if best else None,
        labels=store.model_labels(best.id) if best else [],
    )

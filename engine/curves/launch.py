"""Launching a data-efficiency curve: check everything, store it, queue its jobs, start its driver.

Every check runs before anything is stored, so bad input (a size larger than the split, an
unknown dataset, a prompt run whose rows are gone) leaves nothing behind. Each size and
repeat becomes an ordinary fine-tuning job (`training.jobs.launch_job`: progress, cancel,
resume and Slurm come with it); the detached driver (`curves.driver`) evaluates each job's
best checkpoint as it finishes.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from tunelab.engine.curves.prompt_side import (
    against_run,
    best_prompt_run,
    curve_metric,
    eval_split_for,
)
from tunelab.engine.curves.subsets import parse_sizes, repeat_seed, store_subsets
from tunelab.engine.errors import BadInputError, one_line
from tunelab.engine.processes import WorkerInfo, process_alive, process_start_ticks, start_detached
from tunelab.engine.training.config import TrainingConfig
from tunelab.engine.training.data import VAL_SPLIT_NAMES
from tunelab.engine.training.jobs import check_job_inputs, launch_job, resume_job
from tunelab.store import Curve, NewCurve, NewCurveEntry, Run

if TYPE_CHECKING:
    from tunelab.engine.training.slurm import SlurmOptions
    from tunelab.store import Dataset, Model, PromptVersion, Store, Workspace

SCORINGS = ("generate", "likelihood")

_started_drivers: list[subprocess.Popen[bytes]] = []
"""Drivers this process started: detached, but still its children until their exit is read."""


@dataclass
class CurveRequest:
    """What a curve trains and evaluates.

    Args:
        base: the base model argument (`builtin`, a name, a folder, a hub id).
        dataset: the dataset's name in the workspace.
        prompt: the prompt version (`NAME@V`) that renders every training and evaluation row.
        sizes: training-set sizes, `25,50,all` (`all`: the whole training split).
        config: the training config every point starts from (`train_split` is the split the
            subsets come from; each job gets its own subset, seed and validation split).
        repeats: subsets per size, each from its own seeded permutation.
        against: the prompt run to beat; None picks the best finished prompt run of this
            prompt on the base model and evaluation rows, or evaluates the prompt first.
        eval_split: the split each best checkpoint is evaluated on (default: the validation
            split, or the split of `against`).
        eval_limit: evaluate on the first N rows of it (None: all).
        scoring: `generate` or `likelihood`, for the prompt run the driver makes.
        seed: the curve's seed; repeat r draws its permutation with seed + r.
        given: the training settings the user set explicitly.
        gpus: GPUs per job (as `tune --gpus`).
        slurm: submit every job to Slurm with these options.
        steps_cap: train each point `config.epochs` epochs of its subset, but at most this
            many optimizer steps (None: as the config says, the same for every point).
    """

    base: str
    dataset: str
    prompt: str
    sizes: str
    config: TrainingConfig = field(default_factory=TrainingConfig)
    repeats: int = 1
    against: int | None = None
    eval_split: str | None = None
    eval_limit: int | None = None
    scoring: str = "generate"
    seed: int = 0
    given: list[str] = field(default_factory=list)
    gpus: int = 0
    slurm: SlurmOptions | None = None
    confidence: float = 0.95
    steps_cap: int | None = None


@dataclass(frozen=True)
class _Checked:
    base: Model
    dataset: Dataset
    prompt: PromptVersion
    sizes: list[int]
    eval_split: str
    val_split: str
    metric: str
    prompt_run: Run | None
    source: str


def launch_curve(workspace: Workspace, store: Store, request: CurveRequest) -> Curve:
    """Check the request, store the curve and its subsets, queue one job per size and repeat
    (smallest first, repeat by repeat) and start the driver; returns at once."""
    checked = _check(store, workspace, request)
    curve = store.create_curve(
        NewCurve(
            base_model_id=checked.base.id,
            dataset_id=checked.dataset.id,
            prompt_version_id=checked.prompt.id,
            method=request.config.method,
            train_split=request.config.train_split,
            eval_split=checked.eval_split,
            eval_limit=checked.prompt_run.row_limit
            if checked.source == "given" and checked.prompt_run is not None
            else request.eval_limit,
            metric=checked.metric,
            seed=request.seed,
            repeats=request.repeats,
            config=request.config.with_overrides(val_split=checked.val_split).to_dict(),
            prompt_run_id=checked.prompt_run.id if checked.prompt_run else None,
            prompt_run_source=checked.source,
            confidence=request.confidence,
            launch={
                "gpus": request.gpus,
                "given": list(request.given),
                "scoring": request.scoring,
                "slurm": asdict(request.slurm) if request.slurm is not None else None,
                "steps_cap": request.steps_cap,
            },
        ),
        [],
    )
    _add_points(workspace, store, curve, checked.sizes)
    start_driver(workspace, store, curve.id)
    return store.get_curve(curve.id)


def extend_curve(workspace: Workspace, store: Store, curve_id: int, sizes: str) -> Curve:
    """Add sizes to a curve (the ones it has are reused, not trained again) and make sure its
    driver runs."""
    curve = store.get_curve(curve_id)
    dataset = store.get_dataset_by_id(curve.dataset_id)
    rows = dataset.split(curve.train_split).row_count
    existing = {e.size for e in store.curve_entries(curve_id)}
    wanted = [s for s in parse_sizes(sizes, rows, curve.train_split) if s not in existing]
    if not wanted:
        raise BadInputError(
            f"curve {curve_id} already has sizes {', '.join(str(s) for s in sorted(existing))}; "
            "give a size it does not have"
        )
    config = TrainingConfig.from_dict(curve.config)
    base = store.get_model_by_id(curve.base_model_id)
    prompt = store.get_prompt_version_by_id(curve.prompt_version_id)
    given = list(curve.launch.get("given", []))
    gpus = int(curve.launch.get("gpus", 0))
    check_job_inputs(store, config, base, dataset, gpus, prompt, workspace, given,
                     local=curve.launch.get("slurm") is None)  # fmt: skip
    config.check_against_data(min(wanted))
    _add_points(workspace, store, curve, wanted)
    start_driver(workspace, store, curve_id)
    return store.get_curve(curve_id)


def resume_curve(workspace: Workspace, store: Store, curve_id: int) -> list[int]:
    """Queue the jobs of the curve's points that have none (their queueing failed) and its
    failed or cancelled jobs again, and restart its driver if it is gone; returns the jobs."""
    from tunelab.engine.training.jobs import refresh_job_states

    refresh_job_states(store, workspace)
    resumed = _queue_jobs(workspace, store, store.get_curve(curve_id))
    for entry in store.curve_entries(curve_id):
        if entry.job_id is None or entry.run_id is not None:
            continue
        if store.get_job(entry.job_id).status in ("failed", "cancelled"):
            resume_job(workspace, store, entry.job_id)
            store.update_curve_entry(entry.id, error=None)
            resumed.append(entry.job_id)
    start_driver(workspace, store, curve_id)
    return resumed


def _add_points(workspace: Workspace, store: Store, curve: Curve, sizes: list[int]) -> None:
    """Store the subsets of `sizes` for every repeat and queue one job each."""
    dataset = store.get_dataset_by_id(curve.dataset_id)
    config = TrainingConfig.from_dict(curve.config)
    wanted = [(size, r, repeat_seed(curve.seed, r)) for r in range(curve.repeats) for size in sizes]
    derived, planned = store_subsets(
        store, dataset, curve.id, curve.train_split, config.val_split, wanted
    )
    store.add_curve_entries(
        curve.id, [NewCurveEntry(p.size, p.repeat, p.seed, derived.id, p.split) for p in planned]
    )
    _queue_jobs(workspace, store, curve)


def _queue_jobs(workspace: Workspace, store: Store, curve: Curve) -> list[int]:
    """Queue a job for every point that has none yet (smallest first, repeat by repeat); a
    point whose job cannot be queued (sbatch refused it) records why, and the error goes on."""
    from tunelab.engine.training.slurm import SlurmOptions

    config = TrainingConfig.from_dict(curve.config)
    slurm_dict = curve.launch.get("slurm")
    slurm = SlurmOptions(**slurm_dict) if slurm_dict else None
    base = store.get_model_by_id(curve.base_model_id)
    prompt = store.get_prompt_version_by_id(curve.prompt_version_id)
    cap = curve.launch.get("steps_cap")
    gpus = int(curve.launch.get("gpus", 0))
    queued = []
    waiting = [e for e in store.curve_entries(curve.id) if e.job_id is None]
    for entry in sorted(waiting, key=lambda e: (e.repeat, e.size)):
        job_config = config.with_overrides(
            train_split=entry.subset_split, seed=entry.seed,
            max_steps=capped_steps(config, entry.size, int(cap)) if cap else None,
        )  # fmt: skip
        try:
            subsets = store.get_dataset_by_id(entry.subset_dataset_id)
            job = launch_job(
                workspace, store, job_config, base, subsets, prompt, gpus,
                given=list(curve.launch.get("given", [])), slurm=slurm,
            )  # fmt: skip
        except Exception as exc:
            line = one_line(exc)
            store.update_curve_entry(entry.id, error=f"could not queue its job: {line}")
            raise
        store.update_curve_entry(entry.id, job_id=job.id, error=None)
        queued.append(job.id)
    return queued


def capped_steps(config: TrainingConfig, size: int, cap: int) -> int:
    """Optimizer steps for `config.epochs` epochs of `size` examples, at most `cap`."""
    per_step = config.batch_size * config.grad_accum
    return max(1, min(cap, math.ceil(config.epochs * size / per_step)))


def _check(store: Store, workspace: Workspace, request: CurveRequest) -> _Checked:
    from tunelab.engine.models.sources import resolve_model

    if request.steps_cap is not None:
        if request.steps_cap < 1:
            raise BadInputError(f"the steps cap must be at least 1, not {request.steps_cap}")
        if request.config.max_steps is not None:
            raise BadInputError(
                "use either --max-steps (the same steps for every size) or --steps-cap "
                "(epochs of each subset, capped)"
            )
    if request.repeats < 1:
        raise BadInputError(f"repeats must be at least 1, not {request.repeats}")
    if request.scoring not in SCORINGS:
        raise BadInputError(
            f"scoring must be one of {', '.join(SCORINGS)}, not {request.scoring!r}"
        )
    if request.eval_limit is not None and request.eval_limit < 1:
        raise BadInputError(f"the evaluation limit must be at least 1, not {request.eval_limit}")
    if request.eval_limit is not None and request.against is not None:
        raise BadInputError(
            "--eval-limit does not go with --against: the points are evaluated on the rows of "
            "the run given; drop one of them"
        )
    if not 0 < request.confidence < 1:
        raise BadInputError(f"the confidence level is between 0 and 1, not {request.confidence}")
    dataset = store.get_dataset(request.dataset)
    prompt = store.get_prompt_version(request.prompt)
    config = request.config
    if config.train_split not in dataset.split_names:
        raise BadInputError(
            f"dataset {dataset.name!r} has no split {config.train_split!r} to draw subsets from; "
            f"splits: {', '.join(dataset.split_names)}"
        )
    against = against_run(store, request.against, dataset) if request.against is not None else None
    eval_split = eval_split_for(dataset, config, request.eval_split, against)
    rows = dataset.split(config.train_split).row_count
    sizes = parse_sizes(request.sizes, rows, config.train_split)
    val_split = config.val_split or next(
        (n for n in VAL_SPLIT_NAMES if n in dataset.split_names and n != config.train_split),
        eval_split,
    )
    if request.slurm is not None:  # refused now, not after the curve is stored
        from tunelab.engine.training.slurm import check_shared_fs

        check_shared_fs(workspace.root, request.slurm.allow_local_fs)
    base = resolve_model(store, request.base)
    check_job_inputs(
        store, config.with_overrides(val_split=val_split), base, dataset, request.gpus, prompt,
        workspace, request.given, local=request.slurm is None,
    )  # fmt: skip
    config.check_against_data(sizes[0])
    metric = curve_metric(dataset, against)
    if against is not None:
        return _Checked(base, dataset, prompt, sizes, eval_split, val_split, metric, against,
                        "given")  # fmt: skip
    best = best_prompt_run(store, prompt, base, dataset, eval_split, request.eval_limit, metric)
    source = "best" if best is not None else "evaluated"
    return _Checked(base, dataset, prompt, sizes, eval_split, val_split, metric, best, source)


def driver_alive(driver: dict[str, object]) -> bool:
    """Whether a curve's recorded driver process is still the one that claimed it."""
    import socket

    pid = driver.get("pid")
    if not isinstance(pid, int) or driver.get("host") != socket.gethostname():
        return False
    if not process_alive(pid):
        return False
    recorded = driver.get("start_ticks")
    return recorded is None or process_start_ticks(pid) in (None, recorded)


def start_driver(workspace: Workspace, store: Store, curve_id: int) -> int | None:
    """Start the curve's detached driver unless a live one holds it; returns its pid."""
    curve = store.get_curve(curve_id)
    if curve.driver and driver_alive(curve.driver):
        return None
    log = workspace.logs_dir / f"curve-{curve_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNELAB_WORKSPACE": str(workspace.root)}
    command = [sys.executable, "-m", "tunelab.engine.curves.driver",
               "--workspace", str(workspace.root), str(curve_id)]  # fmt: skip
    with open(log, "ab") as out:
        process = start_detached(command, out, workspace.root, env)
    _started_drivers.append(process)
    store.update_curve(curve_id, log_path=str(log))
    return process.pid


def current_driver() -> dict[str, object]:
    return dict(WorkerInfo.current().to_dict())

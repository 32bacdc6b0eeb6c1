"""`tunelab sweep`, `tunelab sweep list|show|resume|cancel`: hyperparameter sweeps whose
trials are fine-tuning jobs, pruned early through their validation metric.

`sweep` checks everything, stores the sweep, starts its detached driver and returns at once
(`--wait` follows it). Nothing here imports torch or optuna.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import (
    EXIT_FAILURE,
    cluster_option,
    console,
    emit_json,
    fail,
    slurm_options,
    state,
)
from tunelab.cli_tune import _with_config_options, training_config

if TYPE_CHECKING:
    from tunelab.engine.sweeps.records import SweepDetail

sweep_app = typer.Typer(help="Hyperparameter sweeps: start one, list, show, resume, cancel.",
                        invoke_without_command=True)  # fmt: skip
OWN_FIELDS = frozenset({"seed", "metric_for_best"})
"""Training fields the sweep sets itself: --seed seeds the sampler and every trial, --metric
picks each trial's best checkpoint."""


def sweep(
    ctx: typer.Context,
    base: str = typer.Option("builtin", "--base", help="Base model: builtin, a name, a folder."),
    dataset: str = typer.Option("", "--dataset", help="Dataset name in the workspace."),
    prompt: str = typer.Option("", "--prompt", help="Prompt version that renders rows: NAME@V."),
    space: str = typer.Option(
        "", "--space", help="Search space, e.g. 'lr=1e-4..1e-3:log,lora_r=8|16|32,epochs=1..3'."
    ),
    trials: int = typer.Option(8, "--trials", help="Trials to run (one fine-tuning job each)."),
    metric: str = typer.Option(
        "val_loss", "--metric", help="Validation metric to optimize and prune on."
    ),
    parallel: int = typer.Option(1, "--parallel", help="Trial jobs queued or running at once."),
    pruner: str = typer.Option("median", "--pruner", help="median, halving or none."),
    seed: int = typer.Option(0, "--seed", help="Seeds the TPE sampler and every trial."),
    config_file: Path | None = typer.Option(
        None, "--config", help="A .json or .toml training config; flags override it."
    ),
    json_output: bool = typer.Option(False, "--json", help='Print {"sweep_id": N}.'),
    wait: bool = typer.Option(False, "--wait", help="Follow the trials until the sweep ends."),
    on: str = cluster_option("on", per="trial"),
    partition: str = cluster_option("partition"),
    gpus_per_node: int = cluster_option("gpus_per_node"),
    nodes: int = cluster_option("nodes", per="trial"),
    time_limit: str = cluster_option("time_limit", per="trial"),
    slurm_arg: list[str] = cluster_option("slurm_arg"),
    slurm_allow_local_fs: bool = cluster_option("slurm_allow_local_fs"),
    **settings: Any,
) -> None:
    """Start a hyperparameter sweep: an Optuna study whose trials are fine-tuning jobs."""
    if ctx.invoked_subcommand is not None:
        return
    from tunelab.engine.models.sources import resolve_model
    from tunelab.engine.sweeps.launch import SweepRequest, start_sweep

    missing = [flag for flag, value in (("--dataset", dataset), ("--prompt", prompt),
                                        ("--space", space)) if not value]  # fmt: skip
    if missing:
        fail(f"sweep needs {', '.join(missing)} (see `tunelab sweep --help`)")
    slurm = slurm_options(on, partition, gpus_per_node, nodes, time_limit, slurm_arg,
                          slurm_allow_local_fs)  # fmt: skip
    config, given = training_config(config_file, settings, seed=seed)
    store = state.store()
    request = SweepRequest(
        config=config, base=resolve_model(store, base), dataset=store.get_dataset(dataset),
        prompt_ref=prompt, space=space, n_trials=trials, metric=metric, parallel=parallel,
        pruner=pruner, seed=seed, slurm=slurm, given=tuple(given),
    )  # fmt: skip
    started = start_sweep(state.workspace(), store, request)
    if json_output:
        emit_json({"sweep_id": started.id})
    else:
        console.print(f"Started sweep {started.id}: {trials} trials of {config.method} on "
                      f"{metric}; follow it with `tunelab sweep show {started.id}`")  # fmt: skip
    if wait:
        _follow(started.id, quiet=json_output)


sweep.__signature__ = _with_config_options(  # type: ignore[attr-defined]
    inspect.signature(sweep), at=4, skip=OWN_FIELDS
)


def _detail(sweep_id: int) -> SweepDetail:
    from tunelab.engine.sweeps.launch import sweep_detail
    from tunelab.engine.training.jobs import refresh_job_states

    refresh_job_states(state.store(), state.workspace())
    return sweep_detail(state.store(), sweep_id)


def _follow(sweep_id: int, quiet: bool = False, poll_s: float = 1.0) -> None:
    """Print each trial as it changes until the sweep ends; exit 1 when it failed."""
    last: dict[int, str] = {}
    while True:
        detail = _detail(sweep_id)
        for trial in detail.trials:
            line = _trial_line(detail, trial.number)
            if last.get(trial.number) != line and not quiet:
                console.print(Text(line))
                last[trial.number] = line
        if detail.sweep.status != "running":
            break
        if not detail.driver_alive:
            fail(f"sweep {sweep_id}'s driver is gone; `tunelab sweep resume {sweep_id}`",
                 EXIT_FAILURE)  # fmt: skip
        time.sleep(poll_s)
    if not quiet:
        console.print(Text(_summary(detail)))
    if detail.sweep.status == "failed":
        fail(f"sweep {sweep_id} failed: {detail.sweep.error}", EXIT_FAILURE)


def _trial_line(detail: SweepDetail, number: int) -> str:
    trial = next(t for t in detail.trials if t.number == number)
    params = ", ".join(f"{k}={_value(v)}" for k, v in trial.params.items())
    value = f" {detail.sweep.metric} {trial.value:.4f}" if trial.value is not None else ""
    pruned = f" at step {trial.pruned_at_step}" if trial.pruned_at_step is not None else ""
    return f"trial {trial.number} (job {trial.job_id}): {trial.state}{pruned}{value}; {params}"


def _value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _summary(detail: SweepDetail) -> str:
    sweep = detail.sweep
    counts = ", ".join(f"{n} {state}" for state, n in sorted(detail.counts.items()))
    line = f"sweep {sweep.id}: {sweep.status}, {len(detail.trials)}/{sweep.n_trials} trials"
    line += f" ({counts})" if counts else ""
    if sweep.status == "running" and not detail.driver_alive:
        line += f"; its driver is gone: resume with `tunelab sweep resume {sweep.id}`"
    if sweep.best_trial is not None:
        line += f"; best trial {sweep.best_trial}"
    if detail.best_model:
        line += f", checkpoint {detail.best_model} labelled {', '.join(detail.labels)}"
    if sweep.error:
        line += f"; {sweep.error}"
    return line


@sweep_app.command("show")
def sweep_show(
    sweep_id: int = typer.Argument(..., help="Sweep id."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a sweep's trials: parameters, state, metric, and the step a pruned one stopped at."""
    detail = _detail(sweep_id)
    if json_output:
        emit_json(detail)
        return
    sweep = detail.sweep
    console.print(Text(_summary(detail)))
    console.print(Text(f"space {sweep.space}; {sweep.metric} ({sweep.direction}), pruner "
                       f"{sweep.pruner}, seed {sweep.seed}, on {sweep.scheduler}"))  # fmt: skip
    names = detail.param_names
    table = Table("trial", "job", *names, "state", sweep.metric, "pruned at")
    for trial in detail.trials:
        best = "★ " if trial.number == sweep.best_trial else ""
        table.add_row(
            f"{best}{trial.number}", str(trial.job_id or "-"),
            *(_value(trial.params.get(n, "")) for n in names), trial.state,
            f"{trial.value:.4f}" if trial.value is not None else "-",
            str(trial.pruned_at_step) if trial.pruned_at_step is not None else "-",
        )  # fmt: skip
    console.print(table)


@sweep_app.command("list")
def sweep_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List sweeps, newest first."""
    sweeps = state.store().list_sweeps()
    if json_output:
        emit_json(sweeps)
        return
    table = Table("id", "status", "method", "metric", "trials", "space", "created")
    for s in sweeps:
        done = len(state.store().sweep_trials(s.id))
        table.add_row(str(s.id), s.status, s.method, s.metric, f"{done}/{s.n_trials}",
                      Text(s.space), s.created_at[:19])  # fmt: skip
    console.print(table)


@sweep_app.command("resume")
def sweep_resume(sweep_id: int = typer.Argument(..., help="Sweep id.")) -> None:
    """Start a new driver for a sweep whose driver died; finished trials are kept."""
    from tunelab.engine.sweeps.launch import resume_sweep

    resumed = resume_sweep(state.workspace(), state.store(), sweep_id)
    console.print(f"sweep {resumed.id}: driver restarted (pid {resumed.pid})")


@sweep_app.command("cancel")
def sweep_cancel(sweep_id: int = typer.Argument(..., help="Sweep id.")) -> None:
    """Cancel a sweep: its running trial jobs are cancelled (each saves a checkpoint)."""
    from tunelab.engine.sweeps.driver import cancel_sweep

    cancelled = cancel_sweep(state.workspace(), state.store(), sweep_id)
    word = "cancelling" if cancelled.status == "running" else cancelled.status
    console.print(f"sweep {cancelled.id}: {word}")


def register(app: typer.Typer) -> None:
    sweep_app.callback()(sweep)
    app.add_typer(sweep_app, name="sweep")

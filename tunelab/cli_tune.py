"""`tunelab tune`, `tunelab jobs list|show|logs|follow|cancel|resume`, `tunelab model export`.

`tune` queues a job and returns at once: training runs in a detached worker that survives
the terminal. Nothing here imports torch (only `model export` does, inside the command).
"""

from __future__ import annotations

import inspect
import socket
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
from tunelab.store import Job

if TYPE_CHECKING:
    from tunelab.engine.training.config import TrainingConfig

jobs_app = typer.Typer(help="Fine-tuning jobs: list, inspect, follow, cancel, resume.",
                       no_args_is_help=True)  # fmt: skip


def tune(
    base: str = typer.Option("builtin", "--base", help="Base model: builtin, a name, a folder."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset name in the workspace."),
    prompt: str = typer.Option(
        "",
        "--prompt",
        help="Prompt version that renders rows: NAME@V (dpo: default the one its export's "
        "runs used).",
    ),
    gpus: int = typer.Option(0, "--gpus", help="N > 1 trains data-parallel in N processes."),
    config_file: Path | None = typer.Option(
        None, "--config", help="A .json or .toml training config; flags override it."
    ),
    json_output: bool = typer.Option(False, "--json", help='Print {"job_id": N}.'),
    wait: bool = typer.Option(False, "--wait", help="Follow progress until the job ends."),
    on: str = cluster_option("on"),
    partition: str = cluster_option("partition"),
    gpus_per_node: int = cluster_option("gpus_per_node"),
    nodes: int = cluster_option("nodes"),
    time_limit: str = cluster_option("time_limit"),
    slurm_arg: list[str] = cluster_option("slurm_arg"),
    slurm_allow_local_fs: bool = cluster_option("slurm_allow_local_fs"),
    **settings: Any,
) -> None:
    """Start a fine-tuning job in the background (or on Slurm) and print its id."""
    from tunelab.engine.models.sources import resolve_model
    from tunelab.engine.training.jobs import launch_job

    slurm = slurm_options(on, partition, gpus_per_node, nodes, time_limit, slurm_arg,
                          slurm_allow_local_fs)  # fmt: skip
    config, given = training_config(config_file, settings)
    store = state.store()
    base_model = resolve_model(store, base)
    job = launch_job(
        state.workspace(), store, config, base_model, store.get_dataset(dataset), prompt, gpus,
        given=list(given), slurm=slurm,
    )  # fmt: skip
    where = f" as Slurm job {job.scheduler_job_id}" if job.scheduler == "slurm" else ""
    if json_output:
        emit_json({"job_id": job.id, "scheduler_job_id": job.scheduler_job_id})
    else:
        console.print(f"Started job {job.id} ({config.method} on {base_model.name}){where}; "
                      f"follow it with `tunelab jobs follow {job.id}`")  # fmt: skip
    if wait:
        _follow(job.id, quiet=json_output)


def training_config(
    config_file: Path | None, settings: dict[str, Any], **fixed: Any
) -> tuple[TrainingConfig, dict[str, Any]]:
    """The training config a launching command (`tune`, `sweep`, `curve`) runs: the --config
    file (or the defaults) with every training flag given on top, then `fixed`; and the flags
    given (a flag left at None was not given)."""
    from tunelab.engine.training.config import TrainingConfig

    given = {name: value for name, value in settings.items() if value is not None}
    config = TrainingConfig.from_file(config_file) if config_file else TrainingConfig()
    return config.with_overrides(**given, **fixed), given


_ANNOTATIONS: dict[str, Any] = {"bool": bool | None, "int": int | None, "float": float | None}


def _with_config_options(
    signature: inspect.Signature, at: int = 3, skip: frozenset[str] = frozenset()
) -> inspect.Signature:
    """`tune`'s signature with one option per `TrainingConfig` field that has a flag, read
    from the field's metadata (so the flags never drift from the config); each defaults to
    None, meaning: keep the config file's or the default value. `sweep` reuses it: its
    options go after the first `at` parameters, without the fields in `skip`."""
    from tunelab.engine.training.options import config_options

    keyword = inspect.Parameter.KEYWORD_ONLY
    fixed = [p.replace(kind=keyword) for p in signature.parameters.values()
             if p.kind is not inspect.Parameter.VAR_KEYWORD]  # fmt: skip
    generated = []
    for option in config_options():
        if not option.cli or option.name in skip:
            continue
        flag = f"--{option.flag}"
        decls = f"{flag}/--no-{option.flag}" if option.kind == "bool" else flag
        shown = option.default not in (None, "") and "default" not in option.help.lower()
        help_text = option.help + (f" (default {option.default})" if shown else "")
        default = typer.Option(None, decls, help=help_text, rich_help_panel="Training settings")
        annotation = _ANNOTATIONS.get(option.kind, str | None)
        generated.append(inspect.Parameter(option.name, keyword, default=default,
                                           annotation=annotation))  # fmt: skip
    return signature.replace(parameters=[*fixed[:at], *generated, *fixed[at:]])


tune.__signature__ = _with_config_options(inspect.signature(tune))  # type: ignore[attr-defined]


def _refresh() -> None:
    from tunelab.engine.training.jobs import refresh_job_states

    refresh_job_states(state.store(), state.workspace())


def _progress_line(job: Job) -> str:
    from tunelab.engine.training.progress import TrainingProgress

    p = TrainingProgress.from_dict(job.progress)
    if not p.phase:
        return job.status
    parts = [f"step {p.step}/{p.total_steps or '?'}", p.phase]
    if p.train_loss is not None:
        parts.append(f"loss {p.train_loss:.4f}")
    for name, value in p.val.items():
        parts.append(f"{name} {value:.4f}")
    if p.tokens_per_s:
        parts.append(f"{p.tokens_per_s:.0f} tok/s")
    if p.eta_s is not None and job.status == "running":
        parts.append(f"ETA {_duration(p.eta_s)}")
    if p.peak_memory_mb:
        parts.append(f"peak {p.peak_memory_mb:.0f} MB")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _follow(job_id: int, quiet: bool = False, poll_s: float = 1.0) -> None:
    """Print progress as it changes until the job ends; exit 1 when it failed."""
    from tunelab.engine.training.jobs import FINISHED, refresh_job_states

    store = state.store()
    last = ""
    checked = 0.0
    remote = store.get_job(job_id).scheduler != "local"  # progress arrives by ingestion
    while True:
        if remote or time.monotonic() - checked > 10:
            refresh_job_states(store, state.workspace())
            checked = time.monotonic()
        job = store.get_job(job_id)
        line = f"job {job.id} {job.status}: {_progress_line(job)}"
        if line != last and not quiet:
            console.print(Text(line))
            last = line
        if job.status in FINISHED:
            break
        time.sleep(poll_s)
    if job.status == "failed":
        fail(f"job {job.id} failed: {job.error}", EXIT_FAILURE)


@jobs_app.command("list")
def jobs_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List jobs, newest first (a job whose process vanished shows as failed)."""
    _refresh()
    jobs = state.store().list_jobs()
    if json_output:
        emit_json(jobs)
        return
    table = Table("id", "status", "method", "progress", "where", "created")
    for job in jobs:
        table.add_row(str(job.id), job.status, job.method, Text(_progress_line(job)),
                      Text(_where(job)), job.created_at[:19])  # fmt: skip
    console.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: int = typer.Argument(..., help="Job id."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a job: status, config, progress, checkpoints and events."""
    _refresh()
    store = state.store()
    job = store.get_job(job_id)
    models = store.models_of_job(job_id)
    if json_output:
        emit_json({**_asdict(job), "models": models, "events": store.job_events(job_id)})
        return
    console.print(Text(f"job {job.id}: {job.status} ({job.method}), {_progress_line(job)}"))
    if job.error:
        console.print(Text(f"error: {job.error}"))
    console.print(Text(_inputs_line(store, job)))
    if job.kind == "optimize":
        from tunelab.cli_optimize import search_line

        console.print(Text(search_line(job.config)))
    else:
        console.print(Text(_settings_line(job.config)))
    if job.scheduler != "local":
        console.print(Text(_where(job)))
    console.print(Text(f"pid {job.pid} on {job.host}; log {job.log_path}"))
    if job.status == "running" and job.scheduler == "local" and job.host == socket.gethostname():
        from tunelab.engine.training.gpu_usage import gpu_usage_line

        console.print(Text(gpu_usage_line(job.pid)))
    for m in models:
        console.print(Text(f"  {'★' if m.is_best else ' '} {m.name} step {m.step} {m.metrics}"))
    for e in store.job_events(job_id)[-10:]:
        console.print(Text(f"  {e.at[:19]} {e.kind}: {e.message}"))


def _where(job: Job) -> str:
    from tunelab.engine.training.jobs import job_placement

    return job_placement(job)


def _inputs_line(store: Any, job: Job) -> str:
    parts = []
    if job.base_model_id is not None:
        parts.append(f"base {store.get_model_by_id(job.base_model_id).name}")
    if job.dataset_id is not None:
        parts.append(f"dataset {store.get_dataset_by_id(job.dataset_id).name}")
    if job.prompt_version_id is not None:
        parts.append(f"prompt {store.get_prompt_version_by_id(job.prompt_version_id).ref}")
    return ", ".join(parts)


def _settings_line(config: dict[str, Any]) -> str:
    """The job's settings that differ from the defaults (all of them are in --json)."""
    from tunelab.engine.training.job_detail import changed_settings

    changed = [f"{name}={value}" for name, value in changed_settings(config)]
    return "settings: " + (", ".join(changed) if changed else "defaults")


def _asdict(job: Job) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(job)


@jobs_app.command("logs")
def jobs_logs(
    job_id: int = typer.Argument(..., help="Job id."),
    lines: int = typer.Option(200, "--lines", "-n", help="How many of the last lines."),
) -> None:
    """Print the end of a job's log."""
    from tunelab.engine.training.jobs import log_tail

    console.print(Text(log_tail(state.store().get_job(job_id), lines)))


@jobs_app.command("follow")
def jobs_follow(job_id: int = typer.Argument(..., help="Job id.")) -> None:
    """Follow a job's progress until it ends (Ctrl-C stops following, not the job)."""
    state.store().get_job(job_id)
    _follow(job_id)


@jobs_app.command("cancel")
def jobs_cancel(job_id: int = typer.Argument(..., help="Job id.")) -> None:
    """Cancel a job; a running one saves a checkpoint first."""
    from tunelab.engine.training.jobs import cancel_job

    _refresh()
    job = cancel_job(state.workspace(), state.store(), job_id)
    console.print(f"job {job.id}: {'cancelled' if job.status == 'cancelled' else 'cancelling'}")


@jobs_app.command("resume")
def jobs_resume(job_id: int = typer.Argument(..., help="Job id.")) -> None:
    """Continue a failed or cancelled job: training from its last checkpoint (step 0 if none
    is left), an evaluation with the rows it lacks, a search reusing what it scored."""
    from tunelab.engine.training.jobs import resume_description, resume_job

    job = resume_job(state.workspace(), state.store(), job_id)
    where = f" (Slurm job {job.scheduler_job_id})" if job.scheduler == "slurm" else ""
    console.print(f"job {job.id} queued again{where}; {resume_description(job)}")


def add_export_command(model_app: typer.Typer) -> None:
    """Add `tunelab model export MODEL --merge OUT` to the lead's `model` group."""

    @model_app.command("export")
    def model_export(
        name: str = typer.Argument(..., help="Model (a LoRA adapter or fine-tuned model)."),
        merge: Path = typer.Option(..., "--merge", help="Write a merged HF folder here."),
    ) -> None:
        """Export a model as a plain Hugging Face folder (LoRA merged into its base)."""
        from tunelab.engine.models.export import export_merged

        out = export_merged(state.store(), state.store().get_model(name), merge)
        console.print(f"Wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
    app.add_typer(jobs_app, name="jobs")

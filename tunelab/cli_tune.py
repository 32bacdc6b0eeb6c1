"""`tunelab tune`, `tunelab jobs list|show|logs|follow|cancel|resume`, `tunelab model export`.

`tune` queues a job and returns at once: training runs in a detached worker that survives
the terminal. Nothing here imports torch (only `model export` does, inside the command).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import EXIT_FAILURE, console, emit_json, fail, state
from tunelab.store import Job

jobs_app = typer.Typer(help="Fine-tuning jobs: list, inspect, follow, cancel, resume.",
                       no_args_is_help=True)  # fmt: skip


def tune(
    base: str = typer.Option("builtin", "--base", help="Base model: builtin, a name, a folder."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset name in the workspace."),
    prompt: str = typer.Option(..., "--prompt", help="Prompt version that renders rows: NAME@V."),
    method: str | None = typer.Option(None, "--method", help="lora, prefix, prompt or full."),
    epochs: float | None = typer.Option(None, "--epochs", help="Passes over the training split."),
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="Optimizer steps (overrides epochs)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Examples per forward pass."),
    grad_accum: int | None = typer.Option(None, "--grad-accum", help="Passes per optimizer step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    lora_r: int | None = typer.Option(None, "--lora-r", help="LoRA rank."),
    lora_alpha: int | None = typer.Option(None, "--lora-alpha", help="LoRA alpha."),
    lora_dropout: float | None = typer.Option(None, "--lora-dropout", help="LoRA dropout."),
    target_modules: str | None = typer.Option(
        None, "--target-modules", help="Comma-separated LoRA target modules."
    ),
    num_virtual_tokens: int | None = typer.Option(
        None, "--num-virtual-tokens", help="Virtual tokens (prefix/prompt tuning)."
    ),
    max_seq_len: int | None = typer.Option(None, "--max-seq-len", help="Tokens per example."),
    packing: bool | None = typer.Option(None, "--packing/--no-packing", help="Pack examples."),
    gradient_checkpointing: bool | None = typer.Option(
        None,
        "--gradient-checkpointing/--no-gradient-checkpointing",
        help="Recompute activations in the backward pass: less memory, slower.",
    ),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Validate every N steps."),
    eval_samples: int | None = typer.Option(None, "--eval-samples", help="Validation rows."),
    patience: int | None = typer.Option(None, "--patience", help="Early-stopping patience."),
    metric_for_best: str | None = typer.Option(None, "--metric-for-best", help="Best metric."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    train_split: str | None = typer.Option(None, "--train-split", help="Split to train on."),
    val_split: str | None = typer.Option(None, "--val-split", help="Split to validate on."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N, mps."),
    gpus: int = typer.Option(0, "--gpus", help="N > 1 trains data-parallel in N processes."),
    config_file: Path | None = typer.Option(
        None, "--config", help="A .json or .toml training config; flags override it."
    ),
    json_output: bool = typer.Option(False, "--json", help='Print {"job_id": N}.'),
    wait: bool = typer.Option(False, "--wait", help="Follow progress until the job ends."),
) -> None:
    """Start a fine-tuning job in the background and print its id."""
    from tunelab.engine.models.sources import resolve_model
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.engine.training.jobs import launch_job

    config = TrainingConfig.from_file(config_file) if config_file else TrainingConfig()
    config = config.with_overrides(
        method=method, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        grad_accum=grad_accum, lr=lr, lora_r=lora_r, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, target_modules=target_modules,
        num_virtual_tokens=num_virtual_tokens, max_seq_len=max_seq_len, packing=packing,
        gradient_checkpointing=gradient_checkpointing,
        eval_every_steps=eval_every, eval_samples=eval_samples,
        early_stopping_patience=patience, metric_for_best=metric_for_best, seed=seed,
        train_split=train_split, val_split=val_split, device=device,
    )  # fmt: skip
    store = state.store()
    base_model = resolve_model(store, base)
    job = launch_job(
        state.workspace(), store, config, base_model, store.get_dataset(dataset), prompt, gpus
    )
    if json_output:
        emit_json({"job_id": job.id})
    else:
        console.print(f"Started job {job.id} ({config.method} on {base_model.name}); follow it "
                      f"with `tunelab jobs follow {job.id}`")  # fmt: skip
    if wait:
        _follow(job.id, quiet=json_output)


def _refresh() -> None:
    from tunelab.engine.training.jobs import refresh_job_states

    refresh_job_states(state.store(), state.workspace())


def _progress_line(job: Job) -> str:
    p = job.progress
    if not p or "step" not in p:
        return job.status
    parts = [f"step {p['step']}/{p.get('total_steps') or '?'}", str(p.get("phase", ""))]
    if p.get("train_loss") is not None:
        parts.append(f"loss {p['train_loss']:.4f}")
    for name, value in (p.get("val") or {}).items():
        parts.append(f"{name} {value:.4f}")
    if p.get("tokens_per_s"):
        parts.append(f"{p['tokens_per_s']:.0f} tok/s")
    if p.get("eta_s") is not None and job.status == "running":
        parts.append(f"ETA {_duration(p['eta_s'])}")
    if p.get("peak_memory_mb"):
        parts.append(f"peak {p['peak_memory_mb']:.0f} MB")
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
    while True:
        if time.monotonic() - checked > 10:
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
    table = Table("id", "status", "method", "progress", "created")
    for job in jobs:
        table.add_row(str(job.id), job.status, job.method, Text(_progress_line(job)),
                      job.created_at[:19])  # fmt: skip
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
    console.print(Text(_settings_line(job.config)))
    console.print(Text(f"pid {job.pid} on {job.host}; log {job.log_path}"))
    for m in models:
        console.print(Text(f"  {'★' if m.is_best else ' '} {m.name} step {m.step} {m.metrics}"))
    for e in store.job_events(job_id)[-10:]:
        console.print(Text(f"  {e.at[:19]} {e.kind}: {e.message}"))


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
    from tunelab.engine.training.config import TrainingConfig

    defaults = TrainingConfig(method=str(config.get("method", "lora"))).to_dict()
    changed = [
        f"{name}={value}"
        for name, value in config.items()
        if name in defaults and name != "method" and defaults[name] != value
    ]
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
    """Continue a failed or cancelled job from its last checkpoint."""
    from tunelab.engine.training.jobs import resume_job

    job = resume_job(state.workspace(), state.store(), job_id)
    console.print(f"job {job.id} queued again; it continues from its last checkpoint")


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

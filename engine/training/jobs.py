"""Fine-tuning jobs that outlive the terminal: launch, queue, cancel, resume, liveness.

A job is a row in the store plus a detached worker process (`python -m
tunelab.engine.training.worker`) in its own session, so closing the terminal or the SSH
connection (SIGHUP) does not stop it. The worker claims its job atomically (one running job
per workspace by default), writes progress and a heartbeat into the store, and starts the
next queued job when it ends. This module never imports torch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError
from tunelab.engine.processes import (  # the queue's limit, re-exported for its old callers
    MAX_RUNNING_ENV,  # noqa: F401
    boot_id,
    job_worker_command,
    max_running_jobs,  # noqa: F401
    process_alive,
    process_start_ticks,
    start_detached,
)
from tunelab.engine.training.checkpoint import STEP_PREFIX, latest_checkpoint
from tunelab.engine.training.config import LORA_METHODS, TrainingConfig, check_target_modules
from tunelab.engine.training.job_events import job_dir, stop_file
from tunelab.engine.training.options import check_options_apply
from tunelab.engine.training.progress import TrainingProgress
from tunelab.store import Job, PromptVersion

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tunelab.engine.training.slurm import SlurmOptions
    from tunelab.store import Dataset, Model, Store, Workspace

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
STALE_HEARTBEAT_S = 120.0
"""A job on another host with no heartbeat for this long is presumed dead."""
QUEUE_KICK_AFTER_S = 30.0
"""A queued job with nothing running for this long gets a fresh worker (its own one died)."""

_started_workers: list[subprocess.Popen[bytes]] = []
"""Workers this process started: detached, but still its children until their exit is read."""
_started_lock = threading.Lock()


def resolve_prompt(store: Store, prompt_ref: str | PromptVersion) -> PromptVersion:
    if isinstance(prompt_ref, PromptVersion):
        return prompt_ref
    return store.get_prompt_version(prompt_ref)


def job_prompt(
    store: Store, prompt_ref: str | PromptVersion, config: TrainingConfig, dataset: Dataset
) -> PromptVersion:
    """The prompt version a job records. DPO rows carry their rendered prompt, so a DPO job
    on an export defaults to the version its runs rendered with (the one to evaluate with)."""
    if prompt_ref:
        return resolve_prompt(store, prompt_ref)
    if config.method != "dpo":
        raise BadInputError("give --prompt NAME@V: the prompt version that renders each row")
    runs = (store.dataset_lineage(dataset.id) or {}).get("runs") or []
    if not runs:
        raise BadInputError(
            f"dataset {dataset.name!r} was not exported from runs, so it names no prompt; pass "
            "--prompt NAME@V (the prompt version the adapter will be evaluated with)"
        )
    return store.get_prompt_version_by_id(int(runs[0]["prompt_version_id"]))


def launch_job(
    workspace: Workspace,
    store: Store,
    config: TrainingConfig,
    base: Model,
    dataset: Dataset,
    prompt_ref: str | PromptVersion,
    gpus: int = 0,
    given: Iterable[str] = (),
    slurm: SlurmOptions | None = None,
) -> Job:
    """Queue a fine-tuning job and start its detached worker (or submit it to Slurm);
    returns at once.

    Args:
        workspace: where models, logs and job folders go.
        store: the workspace store.
        config: the training config (validated again against the data here).
        base: the base model (kind 'base' or 'merged').
        dataset: the dataset; the prompt renders its rows into training text.
        prompt_ref: `NAME@V` (or a version record) that renders each training row.
        gpus: 0 or 1 trains in the worker; N > 1 runs N data-parallel processes.
        given: the config fields the user set explicitly (refused when the method ignores
            them).
        slurm: submit to Slurm with these options instead of starting a local worker.

    Returns:
        The job, queued; the worker moves it to running as soon as the queue allows.
    """
    prompt = job_prompt(store, prompt_ref, config, dataset)
    if slurm is not None and config.from_adapter:
        raise BadInputError("--from-adapter trains locally only (drop --on slurm)")
    if slurm is not None:
        from tunelab.engine.training import slurm as scheduler

        gpus = slurm.nodes * slurm.gpus_per_node
        scheduler.check_shared_fs(workspace.root, slurm.allow_local_fs)
    check_job_inputs(
        store, config, base, dataset, gpus, prompt, workspace, given, local=slurm is None
    )
    workspace.ensure_dirs()
    job = store.create_job(
        config.method, config.to_dict(), base.id, dataset.id, prompt.id, gpus=gpus,
        scheduler="local" if slurm is None else "slurm",
    )  # fmt: skip
    if slurm is not None:
        output_dir = workspace.models_dir / f"job-{job.id}"
        log = job_dir(workspace, job.id) / scheduler.LOG_FILE
        job = store.update_job(job.id, output_dir=str(output_dir), log_path=str(log))
        return scheduler.submit(workspace, store, job, slurm)
    log_path = workspace.logs_dir / f"job-{job.id}.log"
    output_dir = workspace.models_dir / f"job-{job.id}"
    store.update_job(job.id, output_dir=str(output_dir), log_path=str(log_path))
    job_dir(workspace, job.id).mkdir(parents=True, exist_ok=True)
    start_worker(workspace, job.id, log_path)
    return store.get_job(job.id)


def check_job_inputs(
    store: Store,
    config: TrainingConfig,
    base: Model,
    dataset: Dataset,
    gpus: int,
    prompt: PromptVersion | None = None,
    workspace: Workspace | None = None,
    given: Iterable[str] = (),
    local: bool = True,
) -> None:
    """Fail fast, before anything is queued, on input the worker would reject later (or would
    run, but not as the user asked). `local=False` (a scheduler's compute node trains it)
    skips the check that this machine has the requested device."""
    check_options_apply(config.method, given)
    if base.kind == "adapter":
        raise BadInputError(
            f"{base.name!r} is an adapter; fine-tune its base model or export it merged first "
            "(`tunelab model export NAME --merge OUT`)"
        )
    if gpus < 0:
        raise BadInputError(f"gpus must be 0 or more, not {gpus}")
    if config.train_split not in dataset.split_names:
        raise BadInputError(
            f"dataset {dataset.name!r} has no split {config.train_split!r}; "
            f"splits: {', '.join(dataset.split_names)}"
        )
    if config.val_split and config.val_split not in dataset.split_names:
        raise BadInputError(
            f"dataset {dataset.name!r} has no split {config.val_split!r}; "
            f"splits: {', '.join(dataset.split_names)}"
        )
    if config.method == "dpo":
        check_preferences(store, config, dataset, base)
    elif not dataset.reference_column:
        raise BadInputError(
            f"dataset {dataset.name!r} has no reference column; fine-tuning needs the expected "
            "output of each row (re-add it with --reference COLUMN)"
        )
    config.check_against_data(dataset.split(config.train_split).row_count)
    check_base_files(base)
    if workspace is not None:
        check_writable(workspace.models_dir)
    if prompt is not None and config.method != "dpo":
        check_rows(store, config, dataset, prompt)
    if config.quantize != "none":
        check_quantized(config, gpus, local)
    if local and config.device not in ("auto", "cpu"):
        from tunelab.engine.models.loading import (
            pick_device,
        )  # imports torch: only for an explicit accelerator

        pick_device(config.device)  # no CUDA here: say so now, not in the job's log
    if config.method in LORA_METHODS and config.target_modules:
        available = weight_module_names(store, base)
        if available:  # unknown layout: the worker checks against the loaded model
            check_target_modules(config.target_modules, available)


def check_quantized(config: TrainingConfig, gpus: int, local: bool) -> None:
    """A 4-bit QLoRA job needs bitsandbytes and a CUDA GPU: here, or on the Slurm nodes."""
    from tunelab.engine.training.devices import bitsandbytes_installed, check_quantize

    if not local and gpus == 0:
        raise BadInputError("--quantize 4bit on Slurm needs a GPU: add --gpus-per-node 1")
    cuda = None
    if local:
        import torch  # imports torch: only for a quantized job, to ask whether CUDA is here

        cuda = torch.cuda.is_available()
    check_quantize(config.quantize, config.method, config.device, cuda, bitsandbytes_installed())


def check_base_files(base: Model) -> None:
    """A base model registered from a folder or file must still have its files there."""
    if base.source not in ("hf_folder", "artifact", "gguf"):
        return  # built-in (cached on demand) or a hub id
    path = Path(base.path).expanduser()
    is_gguf = base.source == "gguf" or path.suffix.lower() == ".gguf"
    present = path.is_file() if is_gguf else (path / "config.json").is_file()
    if not present:
        what = "is gone" if not path.exists() else "has no config.json any more"
        raise BadInputError(
            f"base model {base.name!r}: {path} {what}; restore its files or register the "
            "model again with `tunelab model add`"
        )


def check_writable(folder: Path) -> None:
    """Checkpoints go under `folder`: it (or the folder that will hold it) must be writable."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise BadInputError(f"cannot save checkpoints under {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BadInputError(
            f"cannot save checkpoints under {folder}: {probe} is not writable; fix its permissions"
        )


def check_rows(
    store: Store, config: TrainingConfig, dataset: Dataset, prompt: PromptVersion
) -> None:
    """The prompt's variables exist in the data and every row to train or validate on has a
    reference to learn, as the worker needs."""
    from tunelab.engine.evaluation.plan import check_variables
    from tunelab.engine.training.data import VAL_SPLIT_NAMES

    column = dataset.reference_column or ""
    val_split = config.val_split or next(
        (n for n in VAL_SPLIT_NAMES if n in dataset.split_names and n != config.train_split), ""
    )
    for split in dict.fromkeys(s for s in (config.train_split, val_split) if s):
        rows = store.dataset_rows(dataset.name, split)
        check_variables(prompt, dataset, rows)
        empty = [r.idx for r in rows if _blank(r.data.get(column))]
        if empty:
            some = ", ".join(str(i) for i in empty[:5]) + (", …" if len(empty) > 5 else "")
            raise BadInputError(
                f"split {split!r} of dataset {dataset.name!r} has {len(empty)} row"
                f"{'s' if len(empty) > 1 else ''} with an empty reference {column!r} (row "
                f"{some}); fill them in or remove them, since there is nothing to learn"
            )


def check_preferences(store: Store, config: TrainingConfig, dataset: Dataset, base: Model) -> None:
    """A DPO job's rows are complete preference pairs and its start adapter fits the base."""
    from tunelab.engine.training.checkpoint import start_adapter
    from tunelab.engine.training.data import VAL_SPLIT_NAMES
    from tunelab.engine.training.dpo import check_preference_rows

    val_split = config.val_split or next(
        (n for n in VAL_SPLIT_NAMES if n in dataset.split_names and n != config.train_split), ""
    )
    for split in dict.fromkeys(s for s in (config.train_split, val_split) if s):
        check_preference_rows(dataset, split, store.dataset_rows(dataset.name, split))
    if config.from_adapter:
        start_adapter(store, base, config.from_adapter)


def _blank(value: object) -> bool:
    return value is None or str(value).strip() == ""


def resume_point(job: Job) -> int | None:
    """The step a resumed job continues from: its newest resumable checkpoint; None when
    none is left (it restarts from step 0)."""
    if not job.output_dir:
        return None
    checkpoint = latest_checkpoint(Path(job.output_dir))
    if checkpoint is None:
        return None
    return int(checkpoint.name.removeprefix(STEP_PREFIX))


_NOT_LORA_TARGETS = frozenset(
    {"lm_head", "embed_tokens", "wte", "wpe", "embed_in", "embed_out", "word_embeddings"}
)


def weight_module_names(store: Store, base: Model) -> set[str]:
    """Short names of the 2-D weights in a model folder's safetensors headers (no torch):
    the layers LoRA can target. Empty when the folder or its weights cannot be read cheaply."""
    import json
    import struct

    if base.source == "builtin":
        from tunelab.engine.models.cache import builtin_model_dir

        folder = builtin_model_dir()
    elif base.source in ("hf_folder", "artifact") and base.kind != "adapter":
        folder = Path(base.path).expanduser()
    else:
        return set()
    names: set[str] = set()
    for path in folder.glob("*.safetensors") if folder.is_dir() else []:
        try:
            with path.open("rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
        except (OSError, ValueError, struct.error):
            return set()
        for key, info in header.items():
            parts = key.split(".")
            is_matrix = isinstance(info, dict) and len(info.get("shape", ())) == 2
            if is_matrix and len(parts) > 1 and parts[-1] == "weight":
                names.add(parts[-2])
    names -= _NOT_LORA_TARGETS
    return names


def worker_command(workspace: Workspace, job_id: int, kind: str = "finetune") -> list[str]:
    return job_worker_command(workspace.root, job_id, kind)


def start_worker(
    workspace: Workspace, job_id: int, log_path: Path | str | None = None, kind: str = "finetune"
) -> int:
    """Start a detached worker for `job_id` (of `kind`: its worker module) in its own
    session; returns its pid.

    The worker survives its launcher: it has its own session (no SIGHUP from the terminal),
    no stdin, and writes to the job's log file rather than to the terminal.
    """
    log = Path(log_path) if log_path else workspace.logs_dir / f"job-{job_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNELAB_WORKSPACE": str(workspace.root)}
    with open(log, "ab") as out:
        process = start_detached(worker_command(workspace, job_id, kind), out, workspace.root, env)
    with _started_lock:
        _started_workers.append(process)
    reap_workers()
    return process.pid


def reap_workers() -> list[int]:
    """Read the exit status of the workers this process started that have ended, so none stays
    a `<defunct>` zombie while a long-lived launcher (the TUI) runs; returns their pids.

    Cheap and never blocks; a front end that stays open calls it now and then.
    """
    with _started_lock:
        ended = [process for process in _started_workers if process.poll() is not None]
        for process in ended:
            _started_workers.remove(process)
    return [process.pid for process in ended]


def cancel_job(workspace: Workspace, store: Store, job_id: int) -> Job:
    """Cancel a job: a queued one at once; a running one checkpoints and stops (SIGTERM)."""
    job = store.get_job(job_id)
    if job.scheduler == "slurm":
        from tunelab.engine.training import slurm

        return slurm.cancel(workspace, store, job)
    if job.status == "queued":
        if store.transition_job(
            job_id, ["queued"], ("cancelled", "cancelled while queued"),
            status="cancelled", finished_at=_now(),
        ):  # fmt: skip
            return store.get_job(job_id)
        job = store.get_job(job_id)
    if job.status != "running":
        raise BadInputError(f"job {job_id} is {job.status}; only queued or running jobs cancel")
    store.add_job_event(job_id, "cancel_requested", "cancel requested; saving a checkpoint")
    marker = stop_file(workspace, job_id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    if job.pid and job.host == socket.gethostname() and _is_same_process(job):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(job.pid, signal.SIGTERM)
    return store.get_job(job_id)


def resume_job(workspace: Workspace, store: Store, job_id: int) -> Job:
    """Queue a failed or cancelled job again; its worker continues from the last checkpoint
    (see `resume_point`), or from step 0 when none is left."""
    refresh_job_states(store)
    job = store.get_job(job_id)
    if job.scheduler == "slurm":
        from tunelab.engine.training import slurm

        slurm.refresh_slurm_jobs(workspace, store, [job_id])
        job = store.get_job(job_id)
    if job.status not in ("failed", "cancelled"):
        hint = " (it is still going)" if job.status in ACTIVE else ""
        raise BadInputError(
            f"job {job_id} is {job.status}{hint}; only failed or cancelled jobs resume"
        )
    plan = resume_description(job)
    if not store.transition_job(
        job_id, ["failed", "cancelled"], ("queued", f"resume requested; {plan}"),
        status="queued", error=None, finished_at=None,
    ):  # fmt: skip
        raise BadInputError(f"job {job_id} changed state meanwhile; look at `tunelab jobs show`")
    stop_file(workspace, job_id).unlink(missing_ok=True)
    if job.scheduler == "slurm":
        return slurm.resubmit(workspace, store, store.get_job(job_id))
    start_worker(workspace, job_id, job.log_path or None, job.kind)
    return store.get_job(job_id)


def resume_description(job: Job) -> str:
    """What resuming `job` does, in words fitting its kind: training continues from its
    newest checkpoint, an evaluation scores only the rows its run lacks, and a search runs
    again with its seed, reusing every evaluation it finished."""
    from tunelab.engine.training.eval_events import EVAL_KIND
    from tunelab.engine.training.search_spec import SEARCH_KIND

    if job.kind == EVAL_KIND:
        return "scores only the rows its run does not hold yet, keeping those it has"
    if job.kind == SEARCH_KIND:
        return (
            "searches again with the same seed, reusing every evaluation it finished "
            "(the same candidates come back)"
        )
    return resume_plan(resume_point(job))


def resume_plan(step: int | None) -> str:
    """What a resume does, in words, for the step `resume_point` found."""
    if step is None:
        return "no checkpoint left: restarts from step 0"
    return f"continues from its checkpoint at step {step}"


def _is_same_process(job: Job) -> bool:
    """True when the job's recorded pid is still the process that claimed it."""
    if job.pid is None or not process_alive(job.pid):
        return False
    worker = TrainingProgress.from_dict(job.progress).worker
    recorded = worker.get("start_ticks")
    if recorded is None:
        return True
    return process_start_ticks(job.pid) in (None, recorded)


def vanished_reason(job: Job, now: datetime | None = None) -> str | None:
    """Why a running job's process is gone, or None while it looks alive."""
    worker = TrainingProgress.from_dict(job.progress).worker
    host = job.host or worker.get("host")
    here = socket.gethostname()
    hint = f"resume with `tunelab jobs resume {job.id}`"
    if host == here:
        recorded_boot = worker.get("boot_id")
        current_boot = boot_id()
        if recorded_boot and current_boot and recorded_boot != current_boot:
            return f"process {job.pid} vanished (the machine rebooted); {hint}"
        if job.pid is None or not _is_same_process(job):
            return f"process {job.pid} vanished (killed or rebooted); {hint}"
        return None
    if job.heartbeat_at is None:
        return None
    age = ((now or datetime.now(UTC)) - datetime.fromisoformat(job.heartbeat_at)).total_seconds()
    if age > STALE_HEARTBEAT_S:
        return (
            f"process {job.pid} on host {host} sent no heartbeat for {int(age)}s "
            f"(killed or rebooted); {hint}"
        )
    return None


def refresh_job_states(store: Store, workspace: Workspace | None = None) -> list[Job]:
    """Mark running jobs whose process has vanished as failed; returns the jobs it changed.

    With a workspace, it also ingests the events of Slurm jobs and marks those whose
    allocation ended without a result, and restarts the queue when nothing runs and a queued
    job has waited longer than its worker should take to start (that worker died before
    claiming it).
    """
    changed = []
    for job in store.list_jobs(["running"], scheduler="local"):
        reason = vanished_reason(job)
        if reason and store.transition_job(
            job.id, ["running"], ("failed", reason),
            status="failed", error=reason, finished_at=_now(),
        ):  # fmt: skip
            changed.append(store.get_job(job.id))
    if workspace is not None:
        from tunelab.engine.training.slurm import refresh_slurm_jobs

        changed += refresh_slurm_jobs(workspace, store)
        kick_queue(workspace, store)
    return changed


def kick_queue(workspace: Workspace, store: Store, min_wait_s: float = QUEUE_KICK_AFTER_S) -> None:
    """Start a worker for the oldest queued job when the queue has stalled."""
    if store.list_jobs(["running"], scheduler="local"):
        return
    queued = sorted(store.list_jobs(["queued"], scheduler="local"), key=lambda j: j.id)
    if not queued:
        return
    oldest = queued[0]
    waited = (datetime.now(UTC) - datetime.fromisoformat(oldest.created_at)).total_seconds()
    last_event = store.job_events(oldest.id)[-1]
    since_event = (datetime.now(UTC) - datetime.fromisoformat(last_event.at)).total_seconds()
    if min(waited, since_event) >= min_wait_s:
        store.add_job_event(oldest.id, "requeued", "queue restarted (no worker was running)")
        start_worker(workspace, oldest.id, oldest.log_path or None, oldest.kind)


def next_queued_job(store: Store) -> Job | None:
    queued = sorted(store.list_jobs(["queued"], scheduler="local"), key=lambda j: j.id)
    return queued[0] if queued else None


def job_placement(job: Job) -> str:
    """Where a job runs, as both front ends show it: `local`, or the scheduler's job id and
    its last seen state (`Slurm job 12: RUNNING`)."""
    if job.scheduler == "local":
        return "local"
    name = "Slurm" if job.scheduler == "slurm" else job.scheduler
    return f"{name} job {job.scheduler_job_id or '?'}: {job.scheduler_state or 'unknown'}"


def log_tail(job: Job, lines: int = 40) -> str:
    """The last lines of the job's log (empty when it has none yet)."""
    if not job.log_path:
        return ""
    try:
        with open(job.log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")

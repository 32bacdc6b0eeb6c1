"""Fine-tuning jobs on Slurm: submission with plain `sbatch`, state, cancel, resubmission.

The batch script runs the worker under `srun` in spec mode (`--spec`): it reads the job spec
from the job folder and reports through file events (`job_events`), so SQLite never runs on
a compute node. Multi-node or multi-GPU jobs run torchrun under srun, one launcher a node.
The state shown next to the Slurm job id comes from `scontrol show job` (no accounting
daemon needed); a job whose allocation ended without a result event is marked failed with
Slurm's state and reason.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.data.exported import write_json_atomically
from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.training.eval_events import (
    EVAL_KIND,
    eval_run_id,
    ingest_eval_events,
    settle_eval_run,
)
from tunelab.engine.training.job_events import ingest_job_events, job_dir, stop_file
from tunelab.engine.training.job_spec import SPEC_FILE, write_spec
from tunelab.engine.training.search_events import ingest_search_events
from tunelab.engine.training.search_spec import SEARCH_KIND

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tunelab.store import Job, Store, Workspace

SCRIPT_FILE = "job.sbatch"
EVAL_WORKER_MODULE = "tunelab.engine.training.eval_worker"
LOG_FILE = "slurm.log"
ENDED_STATES = frozenset(
    {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
     "DEADLINE", "OUT_OF_MEMORY"}
)  # fmt: skip
"""Slurm job states after which no process of the job runs any more."""
LOCAL_FS_TYPES = frozenset({"tmpfs", "ramfs", "devtmpfs", "overlay", "squashfs"})
LOCAL_PREFIXES = ("/tmp", "/var/tmp", "/dev/shm", "/run")
_ARG_KEY = re.compile(r"^[a-z][a-z0-9-]*$")
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
COMMAND_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SlurmOptions:
    """How to submit a job to Slurm.

    Args:
        partition: the partition (Slurm's default when empty).
        gpus_per_node: GPUs per node; more than one runs one training process per GPU.
        nodes: nodes; more than one trains data parallel across them (torchrun under srun).
        time: the time limit, in Slurm's format (`2:00:00`, `1-00:00:00`); none when empty.
        extra: further `#SBATCH --KEY=VALUE` lines (`--slurm-arg KEY=VALUE`).
        allow_local_fs: submit even when the workspace looks local to this machine.
    """

    partition: str = ""
    gpus_per_node: int = 0
    nodes: int = 1
    time: str = ""
    extra: list[tuple[str, str]] = field(default_factory=list)
    allow_local_fs: bool = False

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise BadInputError(f"--nodes must be 1 or more, not {self.nodes}")
        if self.gpus_per_node < 0:
            raise BadInputError(f"--gpus-per-node must be 0 or more, not {self.gpus_per_node}")
        if self.time and not _TIME.match(self.time):
            raise BadInputError(
                f"--time {self.time!r} is not a Slurm time; use e.g. 30:00, 2:00:00, 1-00:00:00"
            )
        for key, _ in self.extra:
            if not _ARG_KEY.match(key):
                raise BadInputError(f"--slurm-arg {key!r}: the key must be an sbatch option name")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlurmOptions:
        return cls(
            partition=str(data.get("partition", "")),
            gpus_per_node=int(data.get("gpus_per_node", 0)),
            nodes=int(data.get("nodes", 1)),
            time=str(data.get("time", "")),
            extra=[(str(k), str(v)) for k, v in data.get("extra", [])],
            allow_local_fs=bool(data.get("allow_local_fs", False)),
        )

    @property
    def processes_per_node(self) -> int:
        return max(1, self.gpus_per_node)


def parse_slurm_args(values: Iterable[str]) -> list[tuple[str, str]]:
    """`KEY=VALUE` strings (or a bare `KEY` for a flag) as sbatch option pairs."""
    pairs = []
    for value in values:
        key, _, rest = value.partition("=")
        key = key.strip().removeprefix("--")
        if not _ARG_KEY.match(key):
            raise BadInputError(
                f"--slurm-arg {value!r}: expected KEY=VALUE with an sbatch option as KEY "
                "(e.g. mem=8G, account=proj, requeue)"
            )
        pairs.append((key, rest.strip()))
    return pairs


def slurm_available() -> bool:
    """True when this machine can talk to a Slurm controller (`sinfo` answers)."""
    if shutil.which("sinfo") is None:
        return False
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def check_shared_fs(root: Path, allow_local: bool) -> None:
    """Refuse a workspace the compute nodes cannot see: under /tmp, /var/tmp, /dev/shm or
    /run, or on a memory or overlay filesystem, unless `allow_local` (a one-node cluster)."""
    if allow_local:
        return
    path = root.resolve()
    kind = filesystem_type(path)
    local_prefix = next(
        (p for p in LOCAL_PREFIXES if path == Path(p) or Path(p) in path.parents), None
    )
    if local_prefix or kind in LOCAL_FS_TYPES:
        where = f"under {local_prefix}" if local_prefix else f"on a {kind} filesystem"
        raise BadInputError(
            f"the workspace {path} is {where}, which compute nodes do not see; move it to a "
            "shared filesystem (NFS, Lustre, GPFS, a shared home), or pass "
            "--slurm-allow-local-fs when the cluster is this machine"
        )


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (from /proc/mounts), or '' when unknown."""
    best, kind = "", ""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    text = str(path)
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        inside = text == mount or text.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind


def batch_script(
    job_id: int, folder: Path, options: SlurmOptions, worker_args: list[str] | None = None
) -> str:
    """The sbatch script: directives, then the worker (torchrun for several processes).

    `worker_args` is the worker module and its arguments; the training worker in spec mode
    when omitted."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=tunelab-job-{job_id}",
        f"#SBATCH --output={folder / LOG_FILE}",
        "#SBATCH --open-mode=append",
        f"#SBATCH --nodes={options.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if options.partition:
        lines.append(f"#SBATCH --partition={options.partition}")
    if options.time:
        lines.append(f"#SBATCH --time={options.time}")
    if options.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={options.gpus_per_node}")
    for key, value in options.extra:
        lines.append(f"#SBATCH --{key}={value}" if value else f"#SBATCH --{key}")
    python = shlex.quote(sys.executable)
    args = worker_args or ["tunelab.engine.training.worker", "--spec", str(folder / SPEC_FILE)]
    worker = "-m " + " ".join(shlex.quote(a) for a in args)
    lines += [
        "set -euo pipefail",
        "export PYTHONUNBUFFERED=1",
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
        'echo "tunelab job ' + str(job_id) + ': Slurm job $SLURM_JOB_ID on $(hostname)"',
    ]
    if options.nodes == 1 and options.processes_per_node == 1:
        lines.append(f"exec srun --kill-on-bad-exit=1 {python} {worker}")
    else:
        lines += [
            'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            f"exec srun --kill-on-bad-exit=1 {python} -m torch.distributed.run "
            f"--nnodes={options.nodes} --nproc_per_node={options.processes_per_node} "
            '--rdzv_backend=c10d --rdzv_endpoint="$head:29500" --rdzv_id="$SLURM_JOB_ID" '
            f"{worker}",
        ]
    return "\n".join(lines) + "\n"


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)  # fmt: skip
    except FileNotFoundError as exc:
        raise EngineError(
            f"{command[0]} not found: this machine is not a Slurm submit host (see docs/cluster.md)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{command[0]} did not answer in {COMMAND_TIMEOUT_S:.0f}s") from exc


def submit(workspace: Workspace, store: Store, job: Job, options: SlurmOptions) -> Job:
    """Write the job spec and batch script into the job folder and `sbatch` it.

    Returns:
        The job with its Slurm job id; failed (and EngineError raised) when sbatch refuses.
    """
    folder = job_dir(workspace, job.id)
    write_spec(store, job, folder, stop_file(workspace, job.id), options.to_dict())
    return sbatch(store, job, folder, options)


def sbatch(
    store: Store, job: Job, folder: Path, options: SlurmOptions,
    worker_args: list[str] | None = None,
) -> Job:  # fmt: skip
    """Write the batch script (see `batch_script`) into the job folder and `sbatch` it.

    Returns:
        The job with its Slurm job id; failed (and EngineError raised) when sbatch refuses.
    """
    script = folder / SCRIPT_FILE
    script.write_text(batch_script(job.id, folder, options, worker_args), encoding="utf-8")
    done = _run(["sbatch", "--parsable", str(script)])
    slurm_id = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not slurm_id:
        reason = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        error = f"sbatch refused the job: {reason}"
        store.transition_job(
            job.id, ["queued"], ("failed", error), status="failed", error=error,
            finished_at=_now(),
        )  # fmt: skip
        raise EngineError(error)
    return store.update_job(
        job.id, ("submitted", f"submitted to Slurm as job {slurm_id}"),
        scheduler_job_id=slurm_id, scheduler_state="PENDING",
    )  # fmt: skip


@dataclass(frozen=True)
class SlurmState:
    """A Slurm job's state and reason, as `scontrol show job` reports them."""

    state: str
    reason: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    def __str__(self) -> str:
        shown = self.reason not in ("", "None", "(null)")
        return f"{self.state} ({self.reason})" if shown else self.state


def slurm_states() -> dict[str, SlurmState]:
    """Every job the controller still knows (ended ones for `MinJobAge`), by Slurm job id."""
    done = _run(["scontrol", "show", "job", "--oneliner"])
    if done.returncode != 0:
        if "No jobs in the system" in done.stdout + done.stderr:
            return {}
        raise EngineError(f"scontrol failed: {done.stderr.strip() or done.stdout.strip()}")
    states = {}
    for line in done.stdout.splitlines():
        values = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in values:
            state = values.get("JobState", "UNKNOWN").split("+")[0]
            states[values["JobId"]] = SlurmState(state, values.get("Reason", ""))
    return states


def cancel(workspace: Workspace, store: Store, job: Job) -> Job:
    """Cancel a Slurm job: touch its stop file (the worker checkpoints at its next step), then
    `scancel` it (its processes get SIGTERM, and KillWait seconds to save before SIGKILL)."""
    refresh_slurm_jobs(workspace, store, [job.id])
    job = store.get_job(job.id)
    if job.status not in ("queued", "running"):
        raise BadInputError(f"job {job.id} is {job.status}; only queued or running jobs cancel")
    marker = stop_file(workspace, job.id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    store.add_job_event(job.id, "cancel_requested", "cancel requested; scancel sent")
    if job.scheduler_job_id:
        done = _run(["scancel", job.scheduler_job_id])
        if done.returncode != 0:
            raise EngineError(f"scancel failed: {done.stderr.strip() or done.stdout.strip()}")
    if job.status == "queued":
        store.transition_job(
            job.id, ["queued"], ("cancelled", "cancelled in Slurm before it started"),
            status="cancelled", finished_at=_now(),
        )  # fmt: skip
        if job.kind == EVAL_KIND:
            settle_eval_run(store, job, job_dir(workspace, job.id))
    return store.get_job(job.id)


def resubmit(workspace: Workspace, store: Store, job: Job) -> Job:
    """Submit a queued-again job to Slurm with its first submission's options."""
    from tunelab.engine.training.job_spec import read_spec

    folder = job_dir(workspace, job.id)
    if job.kind == EVAL_KIND:
        return _resubmit_evaluation(store, job, folder)
    if job.kind == SEARCH_KIND:
        return _resubmit_search(store, job, folder)
    spec = read_spec(folder / SPEC_FILE)
    return submit(workspace, store, job, SlurmOptions.from_dict(spec.scheduler))


def _resubmit_evaluation(store: Store, job: Job, folder: Path) -> Job:
    """An evaluation again: its run reopens and the worker scores only the rows not stored
    yet (the spec is written again with those as `done_rows`)."""
    from tunelab.engine.evaluation.remote_spec import EVAL_SPEC_FILE, read_eval_spec

    spec_path = folder / EVAL_SPEC_FILE
    spec = read_eval_spec(spec_path).with_done_rows(store.done_row_indices(eval_run_id(job)))
    write_json_atomically(spec_path, spec.to_dict())
    store.reopen_run(eval_run_id(job))
    store.hand_run_to_scheduler(eval_run_id(job), f"slurm:job-{job.id}")
    worker = [EVAL_WORKER_MODULE, str(spec_path)]
    try:
        return sbatch(store, job, folder, SlurmOptions.from_dict(spec.scheduler), worker)
    finally:
        settle_eval_run(store, job, folder)


def _resubmit_search(store: Store, job: Job, folder: Path) -> Job:
    """A search again: its spec is written anew (with every finished run of its versions to
    reuse, the ones the earlier allocation scored included) and submitted."""
    from tunelab.engine.training.search_spec import (
        SEARCH_SPEC_FILE,
        SEARCH_WORKER_MODULE,
        read_search_spec,
        write_search_spec,
    )

    old = read_search_spec(folder / SEARCH_SPEC_FILE)
    spec = write_search_spec(store, job, folder, Path(old.stop_file), old.scheduler)
    options = SlurmOptions.from_dict(old.scheduler)
    return sbatch(store, job, folder, options, [SEARCH_WORKER_MODULE, str(spec)])


def refresh_slurm_jobs(
    workspace: Workspace, store: Store, job_ids: Iterable[int] | None = None
) -> list[Job]:
    """Ingest the events of active Slurm jobs, record Slurm's state, and mark those whose
    allocation ended without a result; returns the jobs that ended here.

    Slurm's state is read before the events: a worker writes its result before it exits, so
    an allocation seen ended has every event it will ever write on disk by then.
    """
    active = [
        job
        for job in store.list_jobs(scheduler="slurm")
        if job.status in ("queued", "running") or not _final(job.scheduler_state)
    ]  # a finished job's Slurm state is followed until Slurm says it ended too
    if job_ids is not None:
        wanted = set(job_ids)
        active = [j for j in active if j.id in wanted]
    if not active:
        return []
    unreachable = ""
    try:
        states: dict[str, SlurmState] | None = slurm_states()
    except EngineError as exc:
        states = None
        unreachable = f"unknown ({exc})"
    ended = []
    for job in active:
        if job.kind == EVAL_KIND:
            ingest_eval_events(store, job, job_dir(workspace, job.id))
        elif job.kind == SEARCH_KIND:
            ingest_search_events(store, job, job_dir(workspace, job.id))
        else:
            ingest_job_events(store, job.id, job_dir(workspace, job.id))
        if states is None:
            if job.scheduler_state != unreachable:
                store.update_job(job.id, scheduler_state=unreachable)
            continue
        state = states.get(job.scheduler_job_id or "", SlurmState("ENDED", "no longer known"))
        job = store.get_job(job.id)
        if str(state) != job.scheduler_state:
            job = store.update_job(job.id, scheduler_state=str(state))
        if job.status not in ("queued", "running") or not state.ended:
            continue
        cancelled = state.state == "CANCELLED" and stop_file(workspace, job.id).exists()
        if cancelled:
            status, message = "cancelled", f"cancelled in Slurm (job {job.scheduler_job_id})"
        else:
            status = "failed"
            message = (
                f"Slurm job {job.scheduler_job_id} ended {state} without a result; resume "
                f"with `tunelab jobs resume {job.id}`"
            )
        fields: dict[str, Any] = {"status": status, "finished_at": _now()}
        if status == "failed":
            fields["error"] = message
        if store.transition_job(job.id, ["queued", "running"], (status, message), **fields):
            ended.append(store.get_job(job.id))
            if job.kind == EVAL_KIND:
                settle_eval_run(store, job, job_dir(workspace, job.id))
    return ended


def _final(scheduler_state: str) -> bool:
    return scheduler_state.split(" ")[0] in ENDED_STATES | {"ENDED"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")

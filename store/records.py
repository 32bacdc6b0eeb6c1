"""Dataclasses the store returns; callers never see sqlite rows or tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class Prompt:
    id: int
    name: str
    description: str
    created_at: str
    latest_version: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    """Label name to version number."""


@dataclass(frozen=True)
class PromptVersion:
    """One immutable version of a prompt: what the model sees and how it generates."""

    id: int
    prompt_id: int
    prompt_name: str
    version: int
    template: str
    system: str = ""
    examples: list[JSONDict] = field(default_factory=list)
    mode: str = "chat"
    reasoning: str = "none"
    settings: JSONDict = field(default_factory=dict)
    parent_version_id: int | None = None
    message: str = ""
    content_hash: str = ""
    created_at: str = ""
    labels: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.prompt_name}@{self.version}"


@dataclass(frozen=True)
class PromptContent:
    """The editable content of a prompt version, before it is saved."""

    template: str
    system: str = ""
    examples: list[JSONDict] = field(default_factory=list)
    mode: str = "chat"
    reasoning: str = "none"
    settings: JSONDict = field(default_factory=dict)


@dataclass(frozen=True)
class SaveResult:
    version: PromptVersion
    created: bool
    """False when the content was identical to an existing version (nothing written)."""


@dataclass(frozen=True)
class LabelEvent:
    label: str
    version: int | None
    previous_version: int | None
    moved_at: str


@dataclass(frozen=True)
class Split:
    id: int
    dataset_id: int
    name: str
    row_count: int
    fingerprint: str


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str
    source: str
    fingerprint: str
    task: str
    input_columns: list[str]
    reference_column: str | None
    labels: list[str]
    metrics: list[str]
    card: str
    created_at: str
    splits: list[Split] = field(default_factory=list)
    answer_rule: str | None = None
    """How to read the final answer out of a reference (e.g. `gsm8k`); None: the whole one."""

    @property
    def split_names(self) -> list[str]:
        return [s.name for s in self.splits]

    def split(self, name: str) -> Split:
        from .errors import NotFoundError

        for s in self.splits:
            if s.name == name:
                return s
        raise NotFoundError(f"split of dataset {self.name!r}", name, self.split_names)


@dataclass(frozen=True)
class DatasetRow:
    id: int
    idx: int
    data: JSONDict


@dataclass(frozen=True)
class Model:
    id: int
    name: str
    kind: str
    source: str
    path: str
    base_model_id: int | None = None
    method: str | None = None
    training_dataset_id: int | None = None
    training_dataset_fingerprint: str | None = None
    prompt_version_id: int | None = None
    training_config: JSONDict = field(default_factory=dict)
    job_id: int | None = None
    step: int | None = None
    metrics: JSONDict = field(default_factory=dict)
    is_best: bool = False
    size_bytes: int | None = None
    fingerprint: str = ""
    created_at: str = ""


@dataclass(frozen=True)
class Run:
    id: int
    prompt_version_id: int
    model_id: int
    dataset_id: int
    split: str
    row_limit: int | None
    sample_seed: int | None
    settings: JSONDict
    scoring: str
    metric_names: list[str]
    status: str
    rows_total: int
    metrics: JSONDict
    error: str | None
    started_at: str
    finished_at: str | None
    rows_done: int = 0
    cached_rows: int = 0
    prompt_ref: str = ""
    model_name: str = ""
    dataset_name: str = ""
    pid: int | None = None
    """The process evaluating the run (while running), with its host and start time in
    clock ticks since boot, so a reused pid is not mistaken for it."""
    host: str | None = None
    pid_start: int | None = None
    samples: int = 1
    """Outputs generated per row: above 1, a self-consistency run whose first sample is each
    row's output (`run_outputs`) and the rest are in `run_samples`."""
    device: str | None = None
    """The device the model ran on (cpu, cuda, mps); None for endpoint models and older runs."""


@dataclass(frozen=True)
class RunOutput:
    id: int
    run_id: int
    row_idx: int
    row_id: int | None
    rendered_prompt: str
    output: str
    prediction: str | None
    reference: str | None
    scores: JSONDict
    latency_ms: float
    tokens_in: int
    tokens_out: int
    cached: bool
    created_at: str
    rating: int | None = None
    batch_ms: float | None = None
    """Wall time of the batch this row was generated in; None when cached or not recorded."""
    batch_rows: int | None = None
    """Rows in that batch; `latency_ms` is `batch_ms / batch_rows`, a share, not a latency."""
    reference_answer: str | None = None
    """The final answer extracted from the reference; None when no answer rule applied."""
    answer_found: bool | None = None
    """Whether the answer rule found an answer in the output (`prediction` holds it); None
    when no rule applied."""


@dataclass(frozen=True)
class NewRunOutput:
    """A scored example, as the evaluation engine hands it to the store."""

    row_idx: int
    rendered_prompt: str
    output: str
    prediction: str | None = None
    reference: str | None = None
    scores: JSONDict = field(default_factory=dict)
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cached: bool = False
    row_id: int | None = None
    batch_ms: float | None = None
    """Wall time of the batch the row was generated in (None when cached)."""
    batch_rows: int | None = None
    """Rows in that batch."""
    reference_answer: str | None = None
    """The reference's extracted final answer (None without an answer rule)."""
    answer_found: bool | None = None
    """Whether the output's answer was found (None without an answer rule)."""


@dataclass(frozen=True)
class ProbeRequest:
    """One request of a run's latency probe: a row generated alone, at batch size 1."""

    seq: int
    """Order of the request within the probe (0 first, after the warm-up)."""
    row_idx: int
    total_ms: float
    """Wall time from the call to the last token."""
    ttft_ms: float | None = None
    """Time to the first token; None for likelihood scoring (no tokens are generated)."""
    tokens_in: int = 0
    tokens_out: int = 0


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    status: str
    method: str
    base_model_id: int | None
    dataset_id: int | None
    prompt_version_id: int | None
    config: JSONDict
    progress: JSONDict
    pid: int | None
    host: str | None
    gpus: int
    output_dir: str
    log_path: str
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None
    scheduler: str = "local"
    """`local` (a detached worker on this machine) or `slurm`."""
    scheduler_job_id: str | None = None
    """The scheduler's own id for the job (Slurm's job id), once submitted."""
    scheduler_state: str = ""
    """The scheduler's last seen state and reason, e.g. `RUNNING` or `PENDING (Resources)`."""


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: int
    at: str
    kind: str
    message: str


@dataclass(frozen=True)
class MetricPoint:
    step: int
    name: str
    value: float
    at: str


@dataclass(frozen=True)
class CachedResponse:
    output: str
    tokens_in: int
    tokens_out: int

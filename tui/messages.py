"""Cross-cutting app messages: things that happened, posted by workers, handled by screens.

Workers never touch widgets; they post one of these and an `@on` handler updates state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from textual.screen import Screen

    from tunelab.engine.api.types import (
        Activity,
        BiasEntry,
        Comparison,
        EvalOutcome,
        EvalProgress,
        ExampleDetail,
        JobDetail,
        RenderedPrompt,
        RunDetail,
        RunStability,
        SweepDetail,
        TrainingField,
        WordDiffSegment,
    )
    from tunelab.store import (
        Dataset,
        DatasetRow,
        Job,
        Judgement,
        MetricPoint,
        Model,
        Prompt,
        PromptVersion,
        Run,
    )
    from tunelab.store.feedback import Correction
    from tunelab.store.records import RunOutput


@dataclass
class HomeLoaded(Message):
    """The Home screen's data arrived from the store."""

    runs: list[Run]
    jobs: list[Job]
    best_prompts: dict[str, str]
    best_checkpoints: dict[str, str]
    main_metrics: dict[int, str]


@dataclass
class DatabaseChecked(Message):
    """The app's watch read the database's change counter (`Store.data_version`)."""

    version: int


@dataclass
class RunChosen(Message):
    """The user picked a run to open (the app shows it in the Runs screen)."""

    run_id: int


@dataclass
class RunsChosenForCompare(Message):
    """The user marked runs in the Runs screen and asked to compare them."""

    run_ids: list[int]


@dataclass
class VersionChosenForPlayground(Message):
    """The user asked to try a prompt version in the Playground."""

    prompt_ref: str


@dataclass
class PromptsLoaded(Message):
    prompts: list[Prompt]


@dataclass
class VersionsLoaded(Message):
    prompt_name: str
    versions: list[PromptVersion]


@dataclass
class VersionSaved(Message):
    """A prompt version was saved; `created` is False when the content was unchanged."""

    version: PromptVersion
    created: bool


@dataclass
class LabelMoved(Message):
    version: PromptVersion
    label: str
    previous_version: int | None


@dataclass
class VersionsDiffed(Message):
    ref_a: str
    ref_b: str
    lines: list[str]


@dataclass
class PlaygroundChoicesLoaded(Message):
    versions: list[PromptVersion]
    models: list[Model]
    datasets: list[Dataset]


@dataclass
class RowsLoaded(Message):
    dataset: str
    split: str
    rows: list[DatasetRow]


@dataclass
class PreviewRendered(Message):
    preview: RenderedPrompt


@dataclass
class GenerationStarted(Message):
    pass


@dataclass
class TokensReceived(Message):
    text: str
    elapsed_s: float


@dataclass
class GenerationFinished(Message):
    text: str
    elapsed_s: float
    first_token_s: float | None
    stopped: bool


@dataclass
class BiasTokenized(Message):
    tokens: list[BiasEntry]


@dataclass
class RunsLoaded(Message):
    runs: list[Run]


@dataclass
class RunOutputsLoaded(Message):
    run: Run
    outputs: list[RunOutput]
    judgements: dict[int, Judgement] = field(default_factory=dict)
    """Output id → the newest judge score of that output (none when never judged)."""


@dataclass
class RunStabilityLoaded(Message):
    stability: RunStability


@dataclass
class OutputRated(Message):
    output_id: int
    rating: int


@dataclass
class CorrectionsLoaded(Message):
    """An output's corrections arrived, oldest first: the editor starts from the newest."""

    output: RunOutput
    history: list[Correction]


@dataclass
class OutputCorrected(Message):
    """A correction was saved (a new version beside the original output)."""

    correction: Correction


@dataclass
class EvalChoicesLoaded(Message):
    prompt_refs: list[str]
    models: list[str]
    datasets: dict[str, list[str]]
    default_ref: str | None = None
    """Preselected: the version the user was looking at, else the last one evaluated."""
    default_model: str | None = None
    default_split: str | None = None
    """`dataset/split`; never one whose rows lack a variable of `default_ref`."""
    default_limit: str = ""


@dataclass
class PromptVersionViewed(Message):
    """A prompt version was opened in the Prompts editor or chosen in the Playground (the New
    evaluation form preselects it)."""

    prompt_ref: str


@dataclass
class SettingsChanged(Message):
    """A screen changed the user settings it was given (remembered choices): save them."""


@dataclass
class EvaluationStarted(Message):
    """An evaluation's run was created and its detached worker process started."""

    run_id: int


@dataclass
class ScreenShown(Message):
    """A main screen was mounted or shown again: it wants its tab bar and status line."""

    screen: Screen[None]


@dataclass
class ActivityChecked(Message):
    """What runs in the workspace (any session) was counted from the store."""

    activity: Activity


@dataclass
class EvalProgressed(Message):
    progress: EvalProgress


@dataclass
class EvalFinished(Message):
    outcome: EvalOutcome


@dataclass
class RunsCompared(Message):
    comparison: Comparison
    robustness: tuple[str, ...] = ()
    """Both sides' robustness drops, one engine sentence per shared perturbation."""


@dataclass
class OutputsDiffed(Message):
    row_idx: int
    segments: list[WordDiffSegment]


@dataclass
class JobsPolled(Message):
    """A fresh read of the job table and, for the selected job, its curves, events and log."""

    jobs: list[Job]
    selected_job_id: int | None = None
    metrics: list[MetricPoint] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    """`model:ID` and `dataset:ID` to names, for the job table."""
    read_number: int = 0
    """Which read this answers: the screen drops an answer a newer read superseded."""


@dataclass
class JobLogRead(Message):
    """A job's whole log (traceback included) was read, to show in a viewer."""

    job_id: int
    text: str


@dataclass
class JobLaunched(Message):
    job_id: int


@dataclass
class SweepsLoaded(Message):
    sweeps: list[SweepDetail]


@dataclass
class JobCancelled(Message):
    job_id: int


@dataclass
class CatalogLoaded(Message):
    """Models and datasets for the Models and Datasets screens."""

    models: list[Model]
    datasets: list[Dataset]


@dataclass
class DatasetPreviewLoaded(Message):
    dataset: str
    split: str
    rows: list[dict[str, Any]]


@dataclass
class TrainingFieldsLoaded(Message):
    """The engine's training settings, to build the fine-tuning form from."""

    fields: list[TrainingField]


@dataclass
class JobDetailLoaded(Message):
    """A job read in full, for its detail view."""

    detail: JobDetail


@dataclass
class RunDetailLoaded(Message):
    """A run read in full, for its detail view, opened at one output (None: the first)."""

    detail: RunDetail
    output_id: int | None = None


@dataclass
class ExampleDetailLoaded(Message):
    """One compared row read in full (input, both outputs, their word diff)."""

    detail: ExampleDetail

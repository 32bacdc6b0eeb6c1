"""The workspace store: SQLite through sqlite-utils, behind one typed facade.

This package imports neither torch nor textual (an import-linter contract enforces it).
"""

from __future__ import annotations

from ._fast_import import import_sqlite_utils

import_sqlite_utils()

from .backup import Backup
from .connection import DatabaseGuard
from .curves import Curve, CurveEntry, NewCurve, NewCurveEntry
from .datasets import NewDataset, NewSplit
from .errors import (
    ConflictError,
    CorruptDatabaseError,
    DatabaseIOError,
    DiskFullError,
    NotFoundError,
    ReadOnlyDatabaseError,
    RunClaimedError,
    SchemaTooNewError,
    StoreError,
)
from .feedback import Correction, Preference
from .judgements import (
    Judgement,
    JudgeRun,
    JudgeRunContents,
    NewJudgement,
    NewPairVerdict,
    PairVerdict,
)
from .models import NewModel
from .prompts import content_hash, parse_prompt_ref
from .records import (
    CachedResponse,
    Dataset,
    DatasetRow,
    Job,
    JobEvent,
    LabelEvent,
    MetricPoint,
    Model,
    NewRunOutput,
    ProbeRequest,
    Prompt,
    PromptContent,
    PromptVersion,
    Run,
    RunOutput,
    SaveResult,
    Split,
)
from .robustness import NewRobustnessItem, RobustnessItem, RobustnessSuite
from .samples import NewRunSample, RunSample
from .store import Store
from .sweeps import NewSweep, Sweep, SweepTrial
from .workspace import Workspace, find_workspace, init_workspace

__all__ = [
    "Backup",
    "CachedResponse",
    "ConflictError",
    "Correction",
    "CorruptDatabaseError",
    "Curve",
    "CurveEntry",
    "DatabaseGuard",
    "DatabaseIOError",
    "Dataset",
    "DatasetRow",
    "DiskFullError",
    "Job",
    "JobEvent",
    "JudgeRun",
    "JudgeRunContents",
    "Judgement",
    "LabelEvent",
    "MetricPoint",
    "Model",
    "NewCurve",
    "NewCurveEntry",
    "NewDataset",
    "NewJudgement",
    "NewModel",
    "NewPairVerdict",
    "NewRobustnessItem",
    "NewRunOutput",
    "NewRunSample",
    "NewSplit",
    "NewSweep",
    "NotFoundError",
    "PairVerdict",
    "Preference",
    "ProbeRequest",
    "Prompt",
    "PromptContent",
    "PromptVersion",
    "ReadOnlyDatabaseError",
    "RobustnessItem",
    "RobustnessSuite",
    "Run",
    "RunClaimedError",
    "RunOutput",
    "RunSample",
    "SaveResult",
    "SchemaTooNewError",
    "Split",
    "Store",
    "StoreError",
    "Sweep",
    "SweepTrial",
    "Workspace",
    "content_hash",
    "find_workspace",
    "init_workspace",
    "parse_prompt_ref",
]

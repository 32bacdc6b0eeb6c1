"""The search space of a prompt optimization, and a candidate as the prompt it becomes.

A candidate is a point in the space: which training rows are its demonstrations (in order)
or how many are retrieved per row (BM25 over the training split), which instruction replaces
the seed's system message, how it is scored, and how its label scores are calibrated.
Demonstrations come from the training split only, so a search never sees the rows it is
judged on; calibration priors come from unlabelled inputs only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.request import SCORING_MODES
from tunelab.engine.prompts import calibration, retrieval
from tunelab.engine.prompts.templates import OUTPUT_KEY, FewShotConfig, variables_of
from tunelab.store import Dataset, DatasetRow, PromptContent, PromptVersion

MAX_K = 64
CALIBRATIONS = ("none", "contextual", "batch")
"""Calibration choices: none (the seed's own), contextual (content-free prior measured per
candidate), batch (each run's prior is the mean over the rows it scores)."""
SELECTIONS = ("fixed", "bm25")
"""How demonstrations are chosen: a fixed set from the pool, or retrieved per row."""


def parse_choices(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """`none,batch` as ("none", "batch"), each checked against `allowed`."""
    choices = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [c for c in choices if c not in allowed]
    if not choices or unknown:
        raise BadInputError(f"{what} {text!r}: choose from {', '.join(allowed)}, comma-separated")
    return choices


def parse_k_range(text: str) -> tuple[int, int]:
    """`2..8` (or a single `4`) as (low, high)."""
    low, sep, high = text.partition("..")
    try:
        k_min, k_max = (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError:
        raise BadInputError(f"k range {text!r}: write LOW..HIGH, e.g. 0..8") from None
    return k_min, k_max


@dataclass(frozen=True)
class SearchSpace:
    """What a search may change in the seed prompt."""

    k_min: int = field(default=0, metadata={"help": "Fewest demonstrations in a candidate."})
    k_max: int = field(default=8, metadata={"help": "Most demonstrations in a candidate."})
    pool_size: int = field(
        default=16,
        metadata={"help": "Training rows (drawn with the seed) demonstrations are chosen from."},
    )
    instructions: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Instruction variants; each replaces the seed's system message."},
    )
    scorings: tuple[str, ...] = field(
        default=("generate",),
        metadata={"help": f"Scoring modes to try: {', '.join(SCORING_MODES)}."},
    )
    proposed: int = field(
        default=0,
        metadata={
            "help": "How many of the last instructions a model proposed (the rest: the user's)."
        },
    )
    proposer: str = field(default="", metadata={"help": "The model that proposed them."})
    calibrations: tuple[str, ...] = field(
        default=("none",),
        metadata={"help": f"Calibrations to try (likelihood): {', '.join(CALIBRATIONS)}."},
    )
    selections: tuple[str, ...] = field(
        default=("fixed",),
        metadata={"help": f"How demonstrations are chosen: {', '.join(SELECTIONS)}."},
    )

    def __post_init__(self) -> None:
        if not 0 <= self.k_min <= self.k_max <= MAX_K:
            raise BadInputError(
                f"k range {self.k_min}..{self.k_max}: need 0 <= LOW <= HIGH <= {MAX_K}"
            )
        if self.pool_size < 1:
            raise BadInputError(f"pool size must be at least 1, got {self.pool_size}")
        if not self.scorings or any(s not in SCORING_MODES for s in self.scorings):
            raise BadInputError(
                f"scoring modes must be among {', '.join(SCORING_MODES)}, got {self.scorings}"
            )
        if any(not text.strip() for text in self.instructions):
            raise BadInputError("an instruction variant is empty; remove the blank entry")
        if not 0 <= self.proposed <= len(self.instructions):
            raise BadInputError(
                f"{self.proposed} proposed of {len(self.instructions)} instructions"
            )
        parse_choices(",".join(self.calibrations), CALIBRATIONS, "calibrations")
        parse_choices(",".join(self.selections), SELECTIONS, "demonstration selections")
        if set(self.calibrations) - {"none"} and "likelihood" not in self.scorings:
            raise BadInputError(
                "calibration applies to likelihood scoring; add --scoring likelihood or use "
                "--calibration none"
            )
        if "bm25" in self.selections and self.k_max < 1:
            raise BadInputError(
                "retrieved demonstrations need k >= 1; widen --k-range or drop bm25"
            )

    @property
    def searches_demonstrations(self) -> bool:
        return self.k_max > 0


@dataclass(frozen=True)
class Candidate:
    """One point of the space. `demos` are positions in the pool, in the order shown;
    `instruction` indexes `SearchSpace.instructions` (None: the seed's own)."""

    demos: tuple[int, ...]
    instruction: int | None
    scoring: str
    calibration: str = "none"
    """none, contextual or batch (see `CALIBRATIONS`); only with likelihood scoring."""
    retrieved: int = 0
    """Demonstrations retrieved per row by BM25 from the training split; 0: `demos`."""

    def describe(self, pool: list[DatasetRow], space: SearchSpace) -> str:
        """What the search changed, for the version's commit message."""
        if self.retrieved:
            parts = [f"{self.retrieved} bm25-retrieved demos per row (from train)"]
        else:
            rows = ", ".join(str(pool[i].idx) for i in self.demos)
            parts = [f"{len(self.demos)} demos (train rows {rows or 'none'})"]
        if self.instruction is not None:
            text = space.instructions[self.instruction].strip().splitlines()[0]
            origin = ""
            if self.instruction >= len(space.instructions) - space.proposed:
                origin = f" (proposed by {space.proposer})"
            parts.append(f"instruction {self.instruction + 1}{origin}: {text[:60]!r}")
        parts.append(f"scoring {self.scoring}")
        if self.calibration != "none":
            parts.append(f"{self.calibration} calibration")
        return "; ".join(parts)


def check_seed(seed: PromptVersion, dataset: Dataset, space: SearchSpace) -> None:
    """Refuse a seed the space cannot change: demonstrations need a slot to go in."""
    if not space.searches_demonstrations:
        return
    if not dataset.reference_column:
        raise BadInputError(
            f"dataset {dataset.name!r} has no reference column to take demonstrations' "
            "answers from; use --k-range 0..0"
        )
    if FewShotConfig.from_settings(seed.settings).k:
        raise BadInputError(
            f"prompt {seed.ref} draws its own few-shot examples (settings.fewshot), which "
            "would replace the searched demonstrations; remove fewshot or use --k-range 0..0"
        )
    # A demonstration is the template rendered on a training row: a template that reads no
    # input column shows every demonstration as the same text, so it has no slot for them.
    if not set(variables_of(seed.template)) & set(dataset.input_columns):
        raise BadInputError(
            f"prompt {seed.ref} reads none of the input columns "
            f"({', '.join(dataset.input_columns)}), so it has no slot for demonstrations; "
            "use --k-range 0..0"
        )


def candidate_content(
    seed: PromptVersion,
    candidate: Candidate,
    pool: list[DatasetRow],
    dataset: Dataset,
    space: SearchSpace,
    train_split: str = "train",
) -> PromptContent:
    """The prompt a candidate is: the seed with its demonstrations, instruction and (batch)
    calibration. A contextual calibration's prior needs the model: the scorer measures it."""
    examples: list[dict[str, Any]] = list(seed.examples)
    settings = dict(seed.settings)
    if space.searches_demonstrations:
        column = dataset.reference_column or OUTPUT_KEY
        examples = [
            {**pool[i].data, OUTPUT_KEY: pool[i].data.get(column, "")} for i in candidate.demos
        ]
        settings.pop(retrieval.SETTING, None)
    if candidate.retrieved:
        examples = []
        config = retrieval.RetrievalConfig(k=candidate.retrieved, split=train_split)
        settings[retrieval.SETTING] = config.to_dict()
    if candidate.calibration == "batch":
        per_run = calibration.Calibration("batch", "scored_rows", tuple(dataset.labels))
        settings[calibration.SETTING] = per_run.to_dict()
    system = seed.system
    if candidate.instruction is not None:
        system = space.instructions[candidate.instruction]
    return PromptContent(
        template=seed.template,
        system=system,
        examples=examples,
        mode=seed.mode,
        reasoning=seed.reasoning,
        settings=settings,
    )

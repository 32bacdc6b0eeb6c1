"""The search space of a prompt optimization, and a candidate as the prompt it becomes.

A candidate is a point in the space: which training rows are its demonstrations (in order),
which instruction replaces the seed's system message, and how it is scored. Demonstrations
come from the training split only, so a search never sees the rows it is judged on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.request import SCORING_MODES
from tunelab.engine.prompts.templates import OUTPUT_KEY, FewShotConfig, variables_of
from tunelab.store import Dataset, DatasetRow, PromptContent, PromptVersion

MAX_K = 64


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

    def describe(self, pool: list[DatasetRow], space: SearchSpace) -> str:
        """What the search changed, for the version's commit message."""
        rows = ", ".join(str(pool[i].idx) for i in self.demos)
        parts = [f"{len(self.demos)} demos (train rows {rows or 'none'})"]
        if self.instruction is not None:
            text = space.instructions[self.instruction].strip().splitlines()[0]
            parts.append(f"instruction {self.instruction + 1}: {text[:60]!r}")
        parts.append(f"scoring {self.scoring}")
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
) -> PromptContent:
    """The prompt a candidate is: the seed with its demonstrations and instruction."""
    examples: list[dict[str, Any]] = list(seed.examples)
    if space.searches_demonstrations:
        column = dataset.reference_column or OUTPUT_KEY
        examples = [
            {**pool[i].data, OUTPUT_KEY: pool[i].data.get(column, "")} for i in candidate.demos
        ]
    system = seed.system
    if candidate.instruction is not None:
        system = space.instructions[candidate.instruction]
    return PromptContent(
        template=seed.template,
        system=system,
        examples=examples,
        mode=seed.mode,
        reasoning=seed.reasoning,
        settings=dict(seed.settings),
    )

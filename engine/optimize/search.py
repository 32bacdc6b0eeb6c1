"""`optimize`: search the seed prompt's space on the validation split and label the best.

Candidates are scored on the first rows of the validation split and only the promising ones
on more (successive halving: rungs of `first_rung`, twice that, ... up to the whole split).
Demonstrations come from the training split; the search reads no other split, and refuses
one named `test`, so the test rows stay unseen until the optimized prompt is judged on them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.plan import resolve_model_arg
from tunelab.engine.evaluation.request import SCORING_MODES, StopCheck
from tunelab.engine.optimize.proposals import MAX_PROPOSALS, propose_instructions
from tunelab.engine.optimize.scorer import CandidateScorer, Evaluation
from tunelab.engine.optimize.space import SearchSpace, check_seed
from tunelab.engine.optimize.strategies import STRATEGIES, Trial, check_strategy, run_strategy
from tunelab.store import Dataset, DatasetRow, PromptVersion, Store

OPTIMIZED_LABEL = "optimized"
FORBIDDEN_SPLITS = ("test",)


@dataclass(frozen=True)
class OptimizeRequest:
    """A prompt search: which prompt, which data, how much to spend and how to search."""

    prompt: str = field(default="", metadata={"help": "The seed prompt version, NAME@V."})
    dataset: str = field(default="", metadata={"help": "The dataset in the workspace."})
    model: str = field(default="builtin", metadata={"help": "The model candidates run on."})
    train_split: str = field(default="train", metadata={"help": "Where demonstrations come from."})
    val_split: str = field(
        default="validation", metadata={"help": "What candidates are scored on."}
    )
    budget: int = field(default=16, metadata={"help": "Candidates to evaluate."})
    strategy: str = field(
        default="random", metadata={"help": f"Search strategy: {', '.join(STRATEGIES)}."}
    )
    space: SearchSpace = field(default_factory=SearchSpace)
    seed: int = field(default=0, metadata={"help": "Seeds the pool and the strategy."})
    first_rung: int = field(
        default=8, metadata={"help": "Validation rows every candidate is scored on first."}
    )
    metric: str | None = field(
        default=None, metadata={"help": "Metric to maximise; the dataset's first by default."}
    )
    batch_size: int = field(default=8, metadata={"help": "Rows evaluated together."})
    propose_instructions: int = field(
        default=0,
        metadata={"help": "Instructions a model writes from training examples, added to the list."},
    )
    proposer: str = field(default="builtin", metadata={"help": "The model that proposes them."})

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise BadInputError(f"budget must be at least 1 candidate, got {self.budget}")
        check_strategy(self.strategy)
        if not 0 <= self.propose_instructions <= MAX_PROPOSALS:
            raise BadInputError(
                f"--propose-instructions must be from 0 to {MAX_PROPOSALS}, "
                f"got {self.propose_instructions}"
            )
        if self.first_rung < 1:
            raise BadInputError(f"first rung must be at least 1 row, got {self.first_rung}")
        if self.train_split == self.val_split and self.space.searches_demonstrations:
            raise BadInputError(
                f"demonstrations and scoring both use split {self.val_split!r}; choose "
                "another --train-split or --val-split"
            )
        for split in (self.train_split, self.val_split):
            if split in FORBIDDEN_SPLITS:
                raise BadInputError(
                    f"a prompt search never uses the {split!r} split; search on train and "
                    "validation splits and evaluate the result on test afterwards"
                )


@dataclass(frozen=True)
class OptimizeProgress:
    """After each evaluation: how far the search is."""

    evaluation: Evaluation
    evaluations: int
    candidates: int
    budget: int
    best_score: float | None


@dataclass(frozen=True)
class CandidateResult:
    version_ref: str
    description: str
    scoring: str
    scores: dict[int, float]
    """Score by the number of validation rows it was measured on."""
    full: bool
    """Scored on the whole validation split (survived every halving rung)."""


@dataclass(frozen=True)
class OptimizeResult:
    seed_ref: str
    metric: str
    seed_score: float | None
    candidates: list[CandidateResult]
    best_ref: str | None
    best_score: float | None
    evaluations: int
    reused_evaluations: int
    rows_scored: int
    """Validation rows scored over all evaluations (the seed's included)."""
    rows_without_halving: int
    """Rows every candidate on the whole split would have cost."""
    generated_rows: int
    """Rows the model actually scored (neither cached nor reused)."""
    interrupted: bool
    rung_rows: list[int]
    splits_read: list[str]
    proposed_instructions: list[str] = field(default_factory=list)
    """Instructions the proposer model wrote that joined the search."""


def rung_sizes(first: int, total: int) -> list[int]:
    """first, 2·first, 4·first, ... then the whole split."""
    sizes = []
    size = first
    while size < total:
        sizes.append(size)
        size *= 2
    return [*sizes, total]


def _pool(store: Store, dataset: Dataset, split: str, size: int, seed: int) -> list[DatasetRow]:
    """Training rows demonstrations are picked from, drawn once with the seed."""
    count = dataset.split(split).row_count
    if count == 0:
        raise BadInputError(f"split {split!r} of dataset {dataset.name!r} has no rows")
    chosen = random.Random(seed).sample(range(count), min(size, count))
    by_idx = {r.idx: r for r in store.dataset_rows(dataset.name, split, indices=chosen)}
    return [by_idx[i] for i in chosen]


def check_request(
    store: Store, request: OptimizeRequest
) -> tuple[PromptVersion, Dataset, str, list[str], int]:
    """Everything about a search that can be refused before it starts (a front end calls it
    before detaching): returns the seed, the dataset, the metric, the metrics the runs
    compute and the validation split's size."""
    seed = store.get_prompt_version(request.prompt)
    dataset = store.get_dataset(request.dataset)
    space = request.space
    if "likelihood" in space.scorings and (dataset.task != "classification" or not dataset.labels):
        raise BadInputError(
            f"likelihood scoring needs a classification dataset with labels; "
            f"{dataset.name!r} is a {dataset.task} dataset"
        )
    check_seed(seed, dataset, space)
    if space.searches_demonstrations:
        dataset.split(request.train_split)  # an unknown split is refused with the known ones
    val_rows = dataset.split(request.val_split).row_count
    if val_rows < request.first_rung:
        raise BadInputError(
            f"validation split {request.val_split!r} has {val_rows} rows, fewer than the "
            f"first halving rung of {request.first_rung}; lower --first-rung or use a larger "
            "split"
        )
    metric = request.metric or (dataset.metrics[0] if dataset.metrics else "")
    if not metric:
        raise BadInputError(f"dataset {dataset.name!r} has no metric; name one with --metric")
    metrics = list(dataset.metrics) if metric in dataset.metrics else [metric]
    return seed, dataset, metric, metrics, val_rows


def optimize(
    store: Store,
    request: OptimizeRequest,
    on_progress: Callable[[OptimizeProgress], None] | None = None,
    should_stop: StopCheck | None = None,
) -> OptimizeResult:
    """Search, make every candidate a version (a child of the seed), label the best
    `optimized`. A stopped search keeps its scored candidates; re-running it with the same
    seed repeats the same candidates and reuses their finished runs."""
    seed, dataset, metric, metrics, val_rows = check_request(store, request)
    model = resolve_model_arg(store, request.model)  # fails before any version is saved
    space = with_proposals(store, request, dataset)
    pool = (
        _pool(store, dataset, request.train_split, space.pool_size, request.seed)
        if space.searches_demonstrations
        else []
    )
    rungs = rung_sizes(request.first_rung, val_rows)
    best: list[float] = []

    def progress(evaluation: Evaluation) -> None:
        if evaluation.rung == len(rungs) - 1 and evaluation.version_ref != seed.ref:
            best.append(evaluation.score)
        if on_progress is not None:
            on_progress(
                OptimizeProgress(
                    evaluation,
                    len(scorer.evaluations),
                    len(scorer.versions),
                    request.budget,
                    max(best) if best else None,
                )
            )

    scorer = CandidateScorer(
        store=store,
        seed=seed,
        dataset=dataset,
        pool=pool,
        space=space,
        model=request.model,
        model_id=model.id,
        val_split=request.val_split,
        rung_rows=rungs,
        metric=metric,
        metrics=metrics,
        batch_size=request.batch_size,
        train_split=request.train_split,
        should_stop=should_stop,
        on_evaluation=progress,
    )
    # The seed on the whole split is the baseline every candidate is measured against.
    baseline = scorer.score_version(seed, space.scorings[0], len(rungs) - 1)
    trials: list[Trial] = []
    if baseline is not None:
        trials = run_strategy(
            request.strategy, space, max(len(pool), 1), request.budget, request.seed,
            len(rungs), scorer,
        )  # fmt: skip
    return _finish(store, request, seed.ref, metric, baseline, trials, scorer, rungs, pool)


def with_proposals(store: Store, request: OptimizeRequest, dataset: Dataset) -> SearchSpace:
    """The request's space with the proposer's instructions after the user's (none asked:
    the space as it is). A proposal equal to one of the user's is not added twice."""
    space = request.space
    if not request.propose_instructions:
        return space
    proposals = propose_instructions(
        store,
        dataset,
        request.train_split,
        request.proposer,
        request.propose_instructions,
        request.seed,
    )
    new = tuple(p for p in proposals.instructions if p not in space.instructions)
    return dataclasses.replace(
        space,
        instructions=space.instructions + new,
        proposed=len(new),
        proposer=proposals.proposer,
    )


def _finish(
    store: Store,
    request: OptimizeRequest,
    seed_ref: str,
    metric: str,
    baseline: Evaluation | None,
    trials: list[Trial],
    scorer: CandidateScorer,
    rungs: list[int],
    pool: list[DatasetRow],
) -> OptimizeResult:
    last = len(rungs) - 1
    results = [
        CandidateResult(
            scorer.versions[t.candidate].ref,
            t.candidate.describe(pool, scorer.space),
            t.candidate.scoring,
            {rungs[r]: s for r, s in t.scores.items()},
            last in t.scores,
        )
        for t in trials
        if t.scores
    ]
    finished = [t for t in trials if last in t.scores]
    best_ref: str | None = None
    best_score: float | None = None
    if finished:
        top = max(finished, key=lambda t: t.scores[last])  # the earliest of equals
        best_ref, best_score = scorer.versions[top.candidate].ref, top.scores[last]
        store.set_label(best_ref, OPTIMIZED_LABEL)
    evaluations = scorer.evaluations
    splits = [request.val_split] + ([request.train_split] if pool else [])
    return OptimizeResult(
        seed_ref=seed_ref,
        metric=metric,
        seed_score=baseline.score if baseline is not None else None,
        candidates=results,
        best_ref=best_ref,
        best_score=best_score,
        evaluations=len(evaluations),
        reused_evaluations=sum(1 for e in evaluations if e.reused),
        rows_scored=sum(e.rows for e in evaluations),
        rows_without_halving=(len(results) + 1) * rungs[-1],
        generated_rows=sum(e.generated_rows for e in evaluations),
        interrupted=scorer.stopped,
        rung_rows=rungs,
        splits_read=sorted(set(splits)),
        proposed_instructions=list(
            scorer.space.instructions[len(scorer.space.instructions) - scorer.space.proposed :]
        ),
    )


__all__ = ["SCORING_MODES", "OptimizeRequest", "OptimizeResult", "optimize"]

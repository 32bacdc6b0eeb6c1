"""A search read back from the store: each candidate's validation scores in the order the
search measured them, the best, and its validation/test gap once it is evaluated on test.

Nothing is recorded for this beyond what the search already writes: the candidates are the
seed's children whose commit message is a search note (`prompts.search_note`) naming the
seed, and their scores are their finished runs on the note's split. So `tunelab optimize
show` and the TUI's search view read the same record, for a search run by either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunelab.engine.optimize.search import OPTIMIZED_LABEL
from tunelab.engine.prompts.search_note import parse_note
from tunelab.store import PromptVersion, Run, Store


@dataclass(frozen=True)
class SearchPoint:
    """One evaluation of the search: a candidate on some validation rows."""

    order: int
    """1 for the search's first evaluation, 2 for the next, ..."""
    version_ref: str
    rows: int
    score: float
    run_id: int
    seed: bool = False
    """The seed's own baseline evaluation."""


@dataclass(frozen=True)
class SearchCandidate:
    version_ref: str
    change: str
    """What the search changed, from the version's commit message."""
    best_score: float | None
    """Its score on the most validation rows it reached."""
    rows: int


@dataclass(frozen=True)
class SearchHistory:
    """What a search from `seed_ref` found, for both front ends."""

    seed_ref: str
    dataset: str
    split: str
    """The split that selected the candidates (a validation split)."""
    metric: str
    points: list[SearchPoint] = field(default_factory=list)
    candidates: list[SearchCandidate] = field(default_factory=list)
    best_ref: str | None = None
    best_validation: float | None = None
    best_test: float | None = None
    """The best candidate's latest finished score on the `test` split, if evaluated there."""
    seed_validation: float | None = None
    seed_test: float | None = None

    @property
    def gap(self) -> float | None:
        """Validation minus test score of the best: how much the selection overfitted."""
        if self.best_validation is None or self.best_test is None:
            return None
        return self.best_validation - self.best_test


def _score(run: Run, metric: str) -> float | None:
    value = run.metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if run.status != "succeeded" or run.rows_done < run.rows_total:
        return None
    return float(value)


def search_history(store: Store, seed_ref: str) -> SearchHistory:
    """The search from version `seed_ref`; an empty history when none ran from it yet."""
    seed = store.get_prompt_version(seed_ref)
    notes = {
        v.id: (v, note)
        for v in store.list_prompt_versions(seed.prompt_name)
        if (note := parse_note(v.message)) is not None and note.seed_ref == seed.ref
    }
    scored = [note for _, note in notes.values() if note.split is not None]
    if not scored:
        return SearchHistory(seed.ref, "", "", "")
    dataset, split, metric = scored[0].dataset or "", scored[0].split or "", scored[0].metric or ""
    versions: dict[int, PromptVersion] = {seed.id: seed, **{i: v for i, (v, _) in notes.items()}}
    runs = sorted(
        (
            r
            for r in store.list_runs(prompt_id=seed.prompt_id)
            if r.prompt_version_id in versions and r.dataset_name == dataset
        ),
        key=lambda r: r.id,
    )
    points: list[SearchPoint] = []
    reached: dict[int, tuple[int, float]] = {}
    tests: dict[int, float] = {}
    for run in runs:
        score = _score(run, metric)
        if score is None:
            continue
        if run.split == split:
            points.append(
                SearchPoint(
                    len(points) + 1,
                    versions[run.prompt_version_id].ref,
                    run.rows_done,
                    score,
                    run.id,
                    run.prompt_version_id == seed.id,
                )
            )
            if run.rows_done >= reached.get(run.prompt_version_id, (0, 0.0))[0]:
                reached[run.prompt_version_id] = (run.rows_done, score)
        elif run.split == "test":
            tests[run.prompt_version_id] = score  # the latest wins: runs are in id order
    candidates = [
        SearchCandidate(
            v.ref,
            note.change,
            reached.get(i, (0, None))[1],
            reached.get(i, (0, None))[0],
        )
        for i, (v, note) in sorted(notes.items())
    ]
    best = next((v for v in versions.values() if OPTIMIZED_LABEL in v.labels), None)
    return SearchHistory(
        seed.ref,
        dataset,
        split,
        metric,
        points,
        candidates,
        best.ref if best is not None else None,
        reached[best.id][1] if best is not None and best.id in reached else None,
        tests.get(best.id) if best is not None else None,
        reached[seed.id][1] if seed.id in reached else None,
        tests.get(seed.id),
    )

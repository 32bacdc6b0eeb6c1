"""Retrieved demonstrations: for each row, the k training examples most like it (BM25).

Stored in a version's `settings["retrieval"]` (`{"k": 4, "split": "train", "method": "bm25",
"pool_size": 0, "seed": 0}`), so every evaluation of the version retrieves the same way. The
index is `bm25s` over the input columns of the pool split's rows; the query is the row's
input columns only, never its reference, and the pool is the named split only, so a
retrieving prompt reads no label but the training pool's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from tunelab.store import Dataset, DatasetRow, Store

SETTING = "retrieval"
"""The key of a version's settings that holds its retrieval."""
METHODS = ("bm25",)
MAX_K = 64


@dataclass(frozen=True)
class RetrievalConfig:
    """How a version picks its demonstrations per row.

    Args:
        k: demonstrations per row (1 to 64).
        split: the pool split demonstrations are retrieved from, e.g. "train".
        method: the index; bm25 (`bm25s`).
        pool_size: rows of the split in the pool, drawn with `seed`; 0: the whole split.
        seed: draws the pool when `pool_size` is set.
    """

    k: int
    split: str = "train"
    method: str = "bm25"
    pool_size: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("k", "pool_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadInputError(f"retrieval.{name} must be a whole number, got {value!r}")
        if not 1 <= self.k <= MAX_K:
            raise BadInputError(f"retrieval.k must be from 1 to {MAX_K}, got {self.k}")
        if self.pool_size < 0:
            raise BadInputError(
                f"retrieval.pool_size must be 0 (whole split) or more, got {self.pool_size}"
            )
        if not isinstance(self.split, str) or not self.split:
            raise BadInputError(f"retrieval.split must be a split name, got {self.split!r}")
        if self.split == "test":
            raise BadInputError("retrieval never reads the test split; retrieve from train")
        if self.method not in METHODS:
            raise BadInputError(
                f"retrieval.method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> RetrievalConfig | None:
        """The retrieval in a version's settings; None when it has none."""
        data = (settings or {}).get(SETTING)
        if data is None:
            return None
        if not isinstance(data, dict):
            raise BadInputError(
                "settings.retrieval must be a mapping like {'k': 4, 'split': 'train'}"
            )
        known = {"k", "split", "method", "pool_size", "seed"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInputError(
                f"unknown retrieval setting(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(known))}"
            )
        if "k" not in data:
            raise BadInputError("settings.retrieval needs k, the demonstrations per row")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "split": self.split,
            "method": self.method,
            "pool_size": self.pool_size,
            "seed": self.seed,
        }

    def describe(self) -> str:
        pool = (
            f"{self.pool_size} rows of {self.split}" if self.pool_size else f"all of {self.split}"
        )
        return f"{self.k} {self.method} nearest demos per row from {pool}"


def query_text(data: dict[str, Any], columns: list[str]) -> str:
    """The text a row is indexed or looked up by: its input columns, never its reference."""
    return "\n".join(str(data.get(column, "")) for column in columns)


class RetrievalSampler:
    """The k pool rows nearest each row (`RowRenderer` shows them as few-shot examples).

    The pool is read once from the pool split; ties (e.g. a query sharing no word with any
    pool row) go to the earlier pool row, so a render is the same every time.
    """

    def __init__(
        self, store: Store, dataset: Dataset, config: RetrievalConfig, eval_split: str | None
    ) -> None:
        if not dataset.reference_column:
            raise BadInputError(
                f"dataset {dataset.name!r} has no reference column for demonstrations' answers"
            )
        self.config = config
        self.eval_split = eval_split
        self.columns = list(dataset.input_columns)
        self.reference_column = dataset.reference_column
        self.pool = pool_rows(store, dataset, config)
        import bm25s  # deferred: numpy and scipy load only when a version retrieves

        self._tokenize = bm25s.tokenize
        self._index = bm25s.BM25()
        corpus = [query_text(r.data, self.columns) for r in self.pool]
        self._index.index(self._tokens(corpus), show_progress=False)

    def _tokens(self, texts: list[str]) -> Any:
        return self._tokenize(texts, stopwords="en", show_progress=False)

    def nearest(self, data: dict[str, Any], row_idx: int | None = None) -> list[DatasetRow]:
        """The k nearest pool rows, nearest first; a row never retrieves itself."""
        query = self._tokenize(
            [query_text(data, self.columns)], stopwords="en", show_progress=False, return_ids=False
        )[0]
        scores = self._index.get_scores(query) if query else [0.0] * len(self.pool)
        same_split = self.eval_split == self.config.split
        ranked = sorted(range(len(self.pool)), key=lambda i: (-float(scores[i]), i))
        chosen = [
            self.pool[i]
            for i in ranked
            if not (same_split and row_idx is not None and self.pool[i].idx == row_idx)
        ]
        return chosen[: self.config.k]


def pool_rows(store: Store, dataset: Dataset, config: RetrievalConfig) -> list[DatasetRow]:
    """The pool split's rows a version retrieves from: all, or `pool_size` drawn with `seed`."""
    split = dataset.split(config.split)
    if split.row_count == 0:
        raise BadInputError(f"retrieval split {config.split!r} of {dataset.name!r} has no rows")
    if not config.pool_size or config.pool_size >= split.row_count:
        return store.dataset_rows(dataset.name, split.name)
    chosen = random.Random(config.seed).sample(range(split.row_count), config.pool_size)
    rows = {r.idx: r for r in store.dataset_rows(dataset.name, split.name, indices=chosen)}
    return [rows[i] for i in sorted(chosen)]

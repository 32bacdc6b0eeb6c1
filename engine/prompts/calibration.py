"""Calibration of label-likelihood scores, stored in a version's `settings["calibration"]`.

Both methods divide each row's label distribution by a prior vector and take the argmax:
contextual calibration (Zhao et al. 2021, "Calibrate Before Use") uses the distribution the
prompt gives content-free inputs ("N/A", "", "[MASK]"); batch calibration (Zhou et al. 2023)
uses the mean distribution over unlabelled inputs, either a split's inputs measured once
(the vector is stored) or the rows each run scores (the run computes it and records it).
No label is ever read: only inputs, so a calibration cannot leak the answers it is judged on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.engine.errors import BadInputError

SETTING = "calibration"
"""The key of a version's settings that holds its calibration."""
METHODS = ("contextual", "batch")
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")
SOURCES = ("content_free", "split", "scored_rows")
"""Where the prior comes from: content-free inputs (contextual), a split's unlabelled inputs
measured once, or the rows a run scores (batch, computed by each run)."""


@dataclass(frozen=True)
class Calibration:
    """A version's calibration: the method, where its prior came from, and the prior.

    Args:
        method: contextual or batch.
        source: content_free, split or scored_rows (see `SOURCES`).
        labels: the label order of `vector`.
        vector: the prior label distribution divided out; empty for `scored_rows`, whose
            prior each run computes from its own rows.
        inputs: the content-free inputs (contextual).
        dataset: the dataset whose split the prior was measured on (`split` source).
        split: that split.
        rows: how many of its rows' inputs were averaged.
        model: the model the prior was measured with.
    """

    method: str
    source: str
    labels: tuple[str, ...]
    vector: tuple[float, ...] = ()
    inputs: tuple[str, ...] = ()
    dataset: str = ""
    split: str = ""
    rows: int = 0
    model: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BadInputError(
                f"calibration method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        if self.source not in SOURCES:
            raise BadInputError(
                f"calibration source must be one of {', '.join(SOURCES)}, got {self.source!r}"
            )
        if (self.method == "contextual") != (self.source == "content_free"):
            raise BadInputError(
                "contextual calibration comes from content-free inputs and batch calibration "
                f"from unlabelled rows; {self.method} from {self.source} is neither"
            )
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise BadInputError(f"calibration needs two or more distinct labels, got {self.labels}")
        if self.source == "scored_rows":
            if self.vector:
                raise BadInputError("a per-run batch calibration stores no vector; remove it")
            return
        if len(self.vector) != len(self.labels):
            raise BadInputError(
                f"calibration vector has {len(self.vector)} entries for {len(self.labels)} labels"
            )
        if any(not math.isfinite(p) or p <= 0 for p in self.vector):
            raise BadInputError(f"calibration vector entries must be > 0, got {self.vector}")

    @property
    def per_run(self) -> bool:
        """The prior is each run's own (batch calibration over the rows scored)."""
        return self.source == "scored_rows"

    def describe(self) -> str:
        """One line: the method and its inputs, for commit messages and run records."""
        if self.source == "content_free":
            shown = ", ".join(repr(s) for s in self.inputs)
            where = f"content-free inputs {shown}"
        elif self.source == "split":
            where = f"the inputs of {self.rows} rows of {self.dataset}/{self.split}"
        else:
            where = "the inputs of the rows each run scores"
        prior = ""
        if self.vector:
            prior = (
                " (prior "
                + ", ".join(
                    f"{label} {p:.3f}" for label, p in zip(self.labels, self.vector, strict=True)
                )
                + ")"
            )
        return f"{self.method} calibration from {where}{prior}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "method": self.method,
            "source": self.source,
            "labels": list(self.labels),
        }
        if self.vector:
            data["vector"] = [round(p, 6) for p in self.vector]
        if self.inputs or self.source == "content_free":
            data["inputs"] = list(self.inputs)
        if self.source == "split":
            data.update(dataset=self.dataset, split=self.split, rows=self.rows)
        if self.model:
            data["model"] = self.model
        return data

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> Calibration | None:
        """The calibration in a version's settings; None when it has none."""
        data = (settings or {}).get(SETTING)
        if data is None:
            return None
        if not isinstance(data, dict):
            raise BadInputError(
                "settings.calibration must be a mapping like "
                "{'method': 'batch', 'source': 'scored_rows', 'labels': [...]}"
            )
        known = {"method", "source", "labels", "vector", "inputs", "dataset", "split", "rows"}
        unknown = sorted(set(data) - known - {"model"})
        if unknown:
            raise BadInputError(
                f"unknown calibration setting(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(known | {'model'}))}"
            )
        try:
            return cls(
                method=str(data.get("method", "")),
                source=str(data.get("source", "")),
                labels=tuple(str(x) for x in data.get("labels", ())),
                vector=tuple(float(x) for x in data.get("vector", ())),
                inputs=tuple(str(x) for x in data.get("inputs", ())),
                dataset=str(data.get("dataset", "")),
                split=str(data.get("split", "")),
                rows=int(data.get("rows", 0)),
                model=str(data.get("model", "")),
            )
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"settings.calibration is malformed: {exc}") from None

    def check_labels(self, labels: Sequence[str]) -> None:
        """Refuse a dataset whose labels are not the ones the prior was measured over."""
        if tuple(labels) != self.labels:
            raise BadInputError(
                f"the prompt's calibration is over labels {', '.join(self.labels)}, the "
                f"dataset's are {', '.join(labels)}; calibrate the prompt on this dataset"
            )


def label_distribution(scores: Mapping[str, float], labels: Sequence[str]) -> list[float]:
    """Label log-likelihoods → probabilities over the label set (a softmax)."""
    top = max(scores[label] for label in labels)
    weights = [math.exp(scores[label] - top) for label in labels]
    total = sum(weights)
    return [w / total for w in weights]


def mean_distribution(distributions: Sequence[Sequence[float]]) -> list[float]:
    """The mean of label distributions: the prior batch and contextual calibration divide out."""
    if not distributions:
        raise BadInputError("calibration needs at least one unlabelled input")
    count = len(distributions)
    return [sum(d[i] for d in distributions) / count for i in range(len(distributions[0]))]


def calibrated_scores(
    scores: Mapping[str, float], labels: Sequence[str], prior: Sequence[float]
) -> dict[str, float]:
    """Log of each label's probability divided by its prior, renormalised over the labels."""
    probabilities = label_distribution(scores, labels)
    ratios = [p / q for p, q in zip(probabilities, prior, strict=True)]
    total = sum(ratios)
    # A probability that underflowed to 0 stays the least likely label, not a math error.
    return {
        label: math.log(r / total) if r > 0 else -math.inf
        for label, r in zip(labels, ratios, strict=True)
    }


def calibrated_prediction(
    scores: Mapping[str, float], labels: Sequence[str], prior: Sequence[float]
) -> str:
    """The label with the highest calibrated score (the first of equals, in label order)."""
    calibrated = calibrated_scores(scores, labels, prior)
    return max(labels, key=lambda label: calibrated[label])

"""What differs between two models: descriptive fields, training configuration, metrics, lineage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.engine.text_diff import ValueChange, dict_diff
from tunelab.store import Model, Store, StoreError


@dataclass(frozen=True)
class ModelDiff:
    a_name: str
    b_name: str
    changes: list[ValueChange]
    """Kind, source, method, base, training data, step and other descriptive fields."""
    config_changes: list[ValueChange]
    """The training configurations, key by key."""
    metric_changes: list[ValueChange]
    lineage_a: list[str]
    """The model, then its base, then the base's base ..."""
    lineage_b: list[str]
    common_ancestor: str | None


def lineage(store: Store, model: Model) -> list[str]:
    """The model's name followed by each base model's name, up to a model with no base."""
    chain = [model.name]
    seen = {model.id}
    current = model
    while current.base_model_id is not None and current.base_model_id not in seen:
        current = store.get_model_by_id(current.base_model_id)
        seen.add(current.id)
        chain.append(current.name)
    return chain


def _model(store: Store, ref: str) -> Model:
    try:
        return store.get_model(ref)
    except StoreError:
        if ref.isdigit():
            return store.get_model_by_id(int(ref))
        raise


def _describe_model(store: Store, m: Model) -> dict[str, Any]:
    def name_of(model_id: int | None) -> str | None:
        return None if model_id is None else store.get_model_by_id(model_id).name

    def prompt_of(version_id: int | None) -> str | None:
        return None if version_id is None else store.get_prompt_version_by_id(version_id).ref

    def dataset_of(dataset_id: int | None) -> str | None:
        return None if dataset_id is None else store.get_dataset_by_id(dataset_id).name

    return {
        "kind": m.kind, "source": m.source, "path": m.path, "method": m.method,
        "base_model": name_of(m.base_model_id),
        "training_dataset": dataset_of(m.training_dataset_id),
        "training_dataset_fingerprint": m.training_dataset_fingerprint,
        "prompt": prompt_of(m.prompt_version_id), "job_id": m.job_id, "step": m.step,
        "is_best": m.is_best, "size_bytes": m.size_bytes, "fingerprint": m.fingerprint,
    }  # fmt: skip


def diff_models(store: Store, ref_a: str, ref_b: str) -> ModelDiff:
    """Descriptive fields, training configuration, metrics and lineage of two models."""
    a, b = _model(store, ref_a), _model(store, ref_b)
    lineage_a, lineage_b = lineage(store, a), lineage(store, b)
    common = next((name for name in lineage_a if name in lineage_b), None)
    return ModelDiff(
        a.name, b.name,
        dict_diff(_describe_model(store, a), _describe_model(store, b)),
        dict_diff(a.training_config, b.training_config),
        dict_diff(a.metrics, b.metrics),
        lineage_a, lineage_b, common,
    )  # fmt: skip

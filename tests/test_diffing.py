"""Diffs of words, prompt versions, models and runs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests import compare_helpers as h
from tunelab.engine.compare.run_diff import diff_runs
from tunelab.engine.models.diff import diff_models
from tunelab.engine.prompts.diff import diff_prompts
from tunelab.engine.text_diff import dict_diff, word_diff
from tunelab.store import Store

words = st.lists(st.sampled_from(["a", "b", "cat", "dog", " ", "  ", "\n", "x."]), max_size=30)


@settings(max_examples=200, deadline=None)
@given(words, words)
def test_word_diff_segments_rebuild_both_texts(a_parts: list[str], b_parts: list[str]) -> None:
    a, b = "".join(a_parts), "".join(b_parts)
    segments = word_diff(a, b)
    assert "".join(s.text for s in segments if s.op != "insert") == a
    assert "".join(s.text for s in segments if s.op != "delete") == b
    assert all(s.op in ("equal", "delete", "insert") for s in segments)
    if a == b:
        assert all(s.op == "equal" for s in segments)


def test_word_diff_marks_changed_words() -> None:
    segments = word_diff("the cat sat on the mat", "the dog sat on the mat")
    assert [(s.op, s.text) for s in segments] == [
        ("equal", "the "),
        ("delete", "cat"),
        ("insert", "dog"),
        ("equal", " sat on the mat"),
    ]


def test_dict_diff_flattens_nested_keys() -> None:
    changes = dict_diff(
        {"lora": {"r": 8, "alpha": 16}, "lr": 1e-4, "old": 1},
        {"lora": {"r": 16, "alpha": 16}, "lr": 1e-4, "new": 2},
    )
    assert [(c.key, c.a, c.b, c.change) for c in changes] == [
        ("lora.r", 8, 16, "changed"),
        ("new", None, 2, "added"),
        ("old", 1, None, "removed"),
    ]


def test_prompt_diff_shows_template_system_examples_and_settings(store: Store) -> None:
    h.prompt(store, "p", "Classify: {{ text }}", system="Be brief.", settings={"temperature": 0.0})
    h.prompt(
        store,
        "p",
        "Classify the review: {{ text }}",
        system="Be brief.",
        examples=[{"text": "great", "label": "pos"}],
        settings={"temperature": 0.7},
    )
    store.set_label("p@2", "production")
    diff = diff_prompts(store, "p@1", "p:production")
    assert diff.changed and (diff.a_ref, diff.b_ref) == ("p@1", "p@2")
    texts = {t.name: t for t in diff.texts}
    assert texts["template"].changed and not texts["system"].changed
    assert "-Classify: {{ text }}" in texts["template"].unified
    assert "+Classify the review: {{ text }}" in texts["template"].unified
    assert [(r.tag, r.left, r.right) for r in texts["template"].side_by_side] == [
        ("replace", "Classify: {{ text }}", "Classify the review: {{ text }}")
    ]
    assert texts["examples"].b == '{"label": "pos", "text": "great"}'
    assert [(c.key, c.a, c.b) for c in diff.changes] == [("settings.temperature", 0.0, 0.7)]
    assert not diff_prompts(store, "p@2", "p@2").changed


def test_model_diff_shows_config_and_lineage(store: Store) -> None:
    base = h.base_model(store)
    a = h.finetuned_model(store, base, "ft-a", config={"lora": {"r": 8}, "epochs": 1})
    b = h.finetuned_model(store, base, "ft-b", config={"lora": {"r": 16}, "epochs": 1}, step=50)
    diff = diff_models(store, "ft-a", "ft-b")
    assert diff.lineage_a == ["ft-a", "base"] and diff.lineage_b == ["ft-b", "base"]
    assert diff.common_ancestor == "base"
    assert [(c.key, c.a, c.b) for c in diff.config_changes] == [("lora.r", 8, 16)]
    keys = {c.key for c in diff.changes}
    assert {"path", "step", "job_id"} <= keys and "base_model" not in keys
    by_id = diff_models(store, str(a.id), str(b.id))
    assert by_id.a_name == "ft-a"
    assert diff_models(store, "base", "ft-a").common_ancestor == "base"


def test_run_diff_includes_prompt_model_settings_and_comparison(store: Store) -> None:
    base = h.base_model(store)
    ft = h.finetuned_model(store, base)
    ds = h.dataset(store, n=4)
    other = h.dataset(store, "other", n=4)
    v1, v2 = h.prompt(store, "p", "{{ text }}"), h.prompt(store, "p", "Label: {{ text }}")
    a = h.classification_run(store, v1, base, ds, [1, 0, 0, 1])
    b = h.classification_run(store, v2, ft, ds, [1, 1, 0, 1])
    diff = diff_runs(store, a.id, b.id)
    keys = {c.key for c in diff.changes}
    assert {"prompt", "model"} <= keys and "dataset" not in keys
    assert diff.prompt is not None and diff.prompt.changed
    assert diff.model is not None and diff.model.lineage_b == ["ft", "base"]
    assert diff.comparison is not None and diff.comparison_error is None
    assert [(c.key, c.a, c.b) for c in diff.metric_changes] == [("accuracy", 0.5, 0.75)]
    c = h.classification_run(store, v1, base, other, [1, 1, 1, 1])
    across = diff_runs(store, a.id, c.id)
    assert across.prompt is None and across.model is None and across.comparison is None
    assert across.comparison_error is not None and "same dataset" in across.comparison_error

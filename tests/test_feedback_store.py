"""Corrections and blind A/B preferences in the store: versioned, checked, never mixed up."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.compare_helpers import base_model, classification_run, dataset, prompt
from tunelab.store import NewDataset, NewSplit, NotFoundError, Run, Store, StoreError


def _two_runs(store: Store, split: str = "train") -> tuple[Run, Run]:
    pv = prompt(store, mode="plain")
    model = base_model(store)
    ds = dataset(store, n=3, splits=("train", "test"))
    return (
        classification_run(store, pv, model, ds, [1, 0, 1], split=split),
        classification_run(store, pv, model, ds, [0, 1, 1], split=split),
    )


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(min_size=1).filter(str.strip), min_size=1, max_size=4))
def test_corrections_are_versioned_and_the_newest_wins(texts: list[str]) -> None:
    with Store.memory() as store:
        run, _ = _two_runs(store)
        output = store.run_outputs(run.id)[1]
        for text in texts:
            store.correct_output(output.id, text, author="ann")
        history = store.corrections(output.id)
        assert [c.text for c in history] == texts
        assert [c.version for c in history] == list(range(1, len(texts) + 1))
        assert {c.author for c in history} == {"ann"}
        latest = store.latest_corrections(run.id)
        assert set(latest) == {output.id}
        assert latest[output.id].text == texts[-1]
        # The original output is kept as it was.
        assert store.run_outputs(run.id)[1].output == output.output


def test_a_correction_needs_text_and_a_real_output(store: Store) -> None:
    run, _ = _two_runs(store)
    output = store.run_outputs(run.id)[0]
    with pytest.raises(StoreError, match="needs text"):
        store.correct_output(output.id, "   ")
    with pytest.raises(NotFoundError, match="run output"):
        store.correct_output(9999, "x")
    assert store.corrections(output.id) == []
    assert store.correct_output(output.id, "fixed").author  # the login name by default


def test_preferences_compare_two_runs_on_one_row(store: Store) -> None:
    run_a, run_b = _two_runs(store)
    a, b = store.run_outputs(run_a.id), store.run_outputs(run_b.id)
    first = store.add_preference(a[0].id, b[0].id, "a", author="ann")
    second = store.add_preference(b[2].id, a[2].id, "tie")
    assert (first.run_a_id, first.run_b_id, first.row_idx, first.split) == (
        run_a.id,
        run_b.id,
        0,
        "train",
    )
    assert [p.id for p in store.preferences((run_b.id, run_a.id))] == [first.id, second.id]
    assert [p.id for p in store.preferences()] == [first.id, second.id]
    with pytest.raises(StoreError, match="different dataset rows"):
        store.add_preference(a[0].id, b[1].id, "a")
    with pytest.raises(StoreError, match="two different runs"):
        store.add_preference(a[0].id, a[0].id, "a")
    with pytest.raises(StoreError, match="a, b, tie"):
        store.add_preference(a[1].id, b[1].id, "both")
    assert len(store.preferences()) == 2


def test_preferences_refuse_rows_of_different_datasets(store: Store) -> None:
    run_a, _ = _two_runs(store)
    other = store.add_dataset(
        NewDataset("other", "t", "o", [NewSplit("train", [{"text": "x", "label": "pos"}], "o")])
    )
    pv = prompt(store, mode="plain")
    run_c = classification_run(store, pv, base_model(store), other, [1], split="train")
    with pytest.raises(StoreError, match="different dataset rows"):
        store.add_preference(
            store.run_outputs(run_a.id)[0].id, store.run_outputs(run_c.id)[0].id, "a"
        )


def test_exported_dataset_and_lineage_are_stored_together(store: Store) -> None:
    new = NewDataset("exp", "export", "f", [NewSplit("train", [{"prompt": "p"}], "f")])
    dataset = store.add_exported_dataset(new, {"kind": "sft", "runs": [1]})
    assert store.dataset_lineage(dataset.id) == {"kind": "sft", "runs": [1]}
    with pytest.raises(StoreError, match="already exists"):
        store.add_exported_dataset(new, {"kind": "again"})
    assert store.dataset_lineage(dataset.id) == {"kind": "sft", "runs": [1]}
    plain = store.add_dataset(NewDataset("plain", "file", "g", []))
    assert store.dataset_lineage(plain.id) is None


def test_feedback_authors_default_to_tunelab_user_then_the_login_name(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    first, second = _two_runs(store)
    a, b = store.run_outputs(first.id)[0], store.run_outputs(second.id)[0]
    monkeypatch.setenv("TUNELAB_USER", "reviewer-7")
    store.rate_output(a.id, 4)
    assert store.correct_output(a.id, "fixed").author == "reviewer-7"
    assert store.add_preference(a.id, b.id, "a").author == "reviewer-7"
    store.rate_output(b.id, 2, author="ann")  # --by wins over the environment
    monkeypatch.delenv("TUNELAB_USER")
    monkeypatch.setattr(getpass, "getuser", lambda: "login-name")
    store.rate_output(a.id, 5)
    assert store.rating_authors(first.id) == {a.id: "login-name"}  # the newest rating's
    assert store.rating_authors(second.id) == {b.id: "ann"}
    ratings = store.db.execute("SELECT author, created_at FROM ratings ORDER BY id").fetchall()
    assert [r[0] for r in ratings] == ["reviewer-7", "ann", "login-name"]
    assert all(r[1] for r in ratings)  # and when

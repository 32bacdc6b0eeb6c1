"""The store: versions, labels, datasets, runs and jobs round-trip; migrations are safe."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.store import (
    CorruptDatabaseError,
    NewDataset,
    NewModel,
    NewRunOutput,
    NewSplit,
    NotFoundError,
    PromptContent,
    SchemaTooNewError,
    Store,
    StoreError,
    init_workspace,
    parse_prompt_ref,
)
from tunelab.store.connection import migrate
from tunelab.store.migrations import migrations

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
json_objects = st.dictionaries(st.text(min_size=1, max_size=10), json_scalars, max_size=4)
contents = st.builds(
    PromptContent,
    template=st.text(min_size=1, max_size=200).filter(lambda t: t.strip() != ""),
    system=st.text(max_size=50),
    examples=st.lists(json_objects, max_size=3),
    mode=st.sampled_from(["plain", "chat"]),
    reasoning=st.sampled_from(["none", "cot"]),
    settings=json_objects,
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=contents)
def test_prompt_version_round_trips(content: PromptContent) -> None:
    with Store.memory() as store:
        saved = store.save_prompt_version("p", content, message="m").version
        loaded = store.get_prompt_version("p@1")
        assert loaded == saved
        assert loaded.template == content.template
        assert loaded.system == content.system
        assert loaded.examples == content.examples
        assert loaded.settings == content.settings
        assert (loaded.mode, loaded.reasoning) == (content.mode, content.reasoning)


def test_identical_save_is_a_no_op_that_says_so(store: Store) -> None:
    first = store.save_prompt_version("p", PromptContent(template="a {{x}}"))
    again = store.save_prompt_version("p", PromptContent(template="a {{x}}"))
    assert first.created and not again.created
    assert again.version.version == 1
    second = store.save_prompt_version("p", PromptContent(template="b {{x}}"))
    assert second.version.version == 2
    assert second.version.parent_version_id == first.version.id


def test_versions_are_immutable_and_refs_resolve(store: Store) -> None:
    for text in ("one", "two", "three"):
        store.save_prompt_version("p", PromptContent(template=text))
    assert store.get_prompt_version("p").version == 3
    assert store.get_prompt_version("p@2").template == "two"
    store.set_label("p@2", "production")
    assert store.get_prompt_version("p:production").template == "two"
    _, previous = store.set_label("p@3", "production")
    assert previous == 2
    store.remove_label("p", "production")
    history = [(e.label, e.version, e.previous_version) for e in store.label_history("p")]
    assert history == [("production", 2, None), ("production", 3, 2), ("production", None, 3)]
    assert store.get_prompt_version("p@1").template == "one"


def test_unknown_names_suggest_close_ones(store: Store) -> None:
    store.save_prompt_version("sentiment", PromptContent(template="x"))
    with pytest.raises(NotFoundError, match="Did you mean 'sentiment'"):
        store.get_prompt_version("sentimnt@1")
    with pytest.raises(NotFoundError, match="version"):
        store.get_prompt_version("sentiment@9")
    with pytest.raises(NotFoundError, match="label"):
        store.get_prompt_version("sentiment:prod")


@given(ref=st.from_regex(r"[a-z][a-z0-9_-]{0,10}(@[1-9][0-9]{0,2}|:[a-z]{1,8})?", fullmatch=True))
def test_prompt_refs_parse(ref: str) -> None:
    name, version, label = parse_prompt_ref(ref)
    rebuilt = name + (f"@{version}" if version is not None else "") + (f":{label}" if label else "")
    assert rebuilt == ref


def test_bad_content_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="mode"):
        store.save_prompt_version("p", PromptContent(template="x", mode="fancy"))
    with pytest.raises(StoreError, match="empty"):
        store.save_prompt_version("p", PromptContent(template="   "))
    with pytest.raises(StoreError, match="prompt name"):
        store.save_prompt_version("bad name!", PromptContent(template="x"))
    assert store.list_prompts() == []


def _dataset(store: Store, name: str = "d", rows: int = 5) -> None:
    data = [{"text": f"row {i}", "label": "a" if i % 2 else "b"} for i in range(rows)]
    store.add_dataset(
        NewDataset(
            name=name, source="test", fingerprint="f",
            splits=[NewSplit("test", data, "fs")], task="classification",
            input_columns=["text"], reference_column="label", labels=["a", "b"],
        )
    )  # fmt: skip


def test_run_outputs_never_duplicate_and_metrics_are_queryable(store: Store) -> None:
    _dataset(store)
    version = store.save_prompt_version("p", PromptContent(template="{{text}}")).version
    model = store.add_model(NewModel(name="m", kind="base", source="builtin", path="x"))
    dataset = store.get_dataset("d")
    run = store.create_run(version.id, model.id, dataset.id, "test", 5, {"temperature": 0})
    outputs = [NewRunOutput(row_idx=i, rendered_prompt="p", output="a") for i in range(3)]
    assert store.add_run_outputs(run.id, outputs) == 3
    assert store.add_run_outputs(run.id, outputs[1:]) == 0  # resume: already stored
    assert store.done_row_indices(run.id) == {0, 1, 2}
    finished = store.finish_run(run.id, "succeeded", {"accuracy": 0.5, "note": "x"})
    assert finished.rows_done == 3 and finished.metrics["accuracy"] == 0.5
    value = store.db.execute("select value from run_metrics where name='accuracy'").fetchone()
    assert value[0] == 0.5
    output_id = store.run_outputs(run.id)[0].id
    store.rate_output(output_id, 4)
    assert store.run_outputs(run.id)[0].rating == 4
    with pytest.raises(StoreError):
        store.rate_output(output_id, 6)


def test_dataset_rows_round_trip(store: Store) -> None:
    _dataset(store, rows=12)
    rows = store.dataset_rows("d", "test")
    assert [r.idx for r in rows] == list(range(12))
    assert store.dataset_rows("d", "test", indices=[3, 1])[0].data["text"] == "row 1"
    with pytest.raises(NotFoundError, match="split"):
        store.get_dataset("d").split("train")


def test_job_lifecycle_and_metrics(store: Store) -> None:
    job = store.create_job("lora", {"lr": 1e-4}, None, None, None)
    assert job.status == "queued"
    assert store.transition_job(job.id, ["queued"], ("started", "go"), status="running", pid=1)
    assert not store.transition_job(job.id, ["queued"], ("started", "again"), status="running")
    store.add_job_metrics(job.id, 10, {"train_loss": 1.5, "lr": 1e-4})
    assert [p.value for p in store.job_metrics(job.id, "train_loss")] == [1.5]
    assert [e.kind for e in store.job_events(job.id)] == ["queued", "started"]


def test_the_job_queue_is_first_in_first_out(store: Store) -> None:
    first = store.create_job("lora", {}, None, None, None)
    second = store.create_job("lora", {}, None, None, None)
    assert store.claim_job(second.id, 2, "h", {}) is None  # the older job goes first
    assert store.claim_job(first.id, 1, "h", {}) is not None
    assert store.claim_job(second.id, 2, "h", {}) is None  # one job at a time
    store.update_job(first.id, status="succeeded")
    claimed = store.claim_job(second.id, 2, "h", {})
    assert claimed is not None and claimed.status == "running"


def test_migrations_applied_twice_are_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    Store(path).close()
    with Store(path) as store:
        before = store.db.execute("select count(*) from _sqlite_migrations").fetchone()[0]
        migrate(store.db, path)
        migrate(store.db, path)
        after = store.db.execute("select count(*) from _sqlite_migrations").fetchone()[0]
        assert before == after == len(migrations._migrations)
        assert store.db.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("pragma foreign_keys").fetchone()[0] == 1


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "insert into _sqlite_migrations (migration_set, name, applied_at) "
        "values ('tunelab', 'm999_from_the_future', '2030-01-01')"
    )
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNewError, match="newer tunelab"):
        Store(path)
    assert path.read_bytes() == before


def test_corrupt_database_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(CorruptDatabaseError, match="not a readable"):
        Store(path)
    assert path.read_bytes() == before


def test_threads_get_their_own_connections_and_nothing_is_lost(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    store = ws.open_store()
    job = store.create_job("lora", {}, None, None, None)
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for step in range(50):
                store.add_job_metrics(job.id, offset + step, {"loss": float(step)})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i * 1000,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.job_metrics(job.id)) == 200


def test_workspace_is_private_to_its_owner(tmp_path: Path) -> None:
    ws, created = init_workspace(tmp_path / "ws")
    assert created
    assert (ws.dir.stat().st_mode & 0o777) == 0o700
    assert (ws.db_path.stat().st_mode & 0o777) == 0o600
    _, created_again = init_workspace(tmp_path / "ws")
    assert not created_again


def test_no_workspace_here_but_one_below_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.store import find_workspace, init_workspace
    from tunelab.store.workspace import NoWorkspaceError

    monkeypatch.delenv("TUNELAB_WORKSPACE", raising=False)
    with pytest.raises(NoWorkspaceError, match="run `tunelab init` here"):
        find_workspace(start=tmp_path)
    init_workspace(tmp_path / "tunelab-demo")
    with pytest.raises(NoWorkspaceError, match="pass --workspace tunelab-demo"):
        find_workspace(start=tmp_path)
    assert find_workspace(start=tmp_path / "tunelab-demo").root == tmp_path / "tunelab-demo"
